package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/ledgerfence/ledgerfence/pkg/cloud"
	"github.com/ledgerfence/ledgerfence/pkg/config"
	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/access"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/backend"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/head"
)

// Exit codes.
const (
	exitOK          = 0
	exitError       = 1
	exitUsage       = 2
	exitDenied      = 3
	exitUnavailable = 4
)

const usageText = `usage: ledgerctl COMMAND [flags]

commands:
  regulation set SUBJECT (--allow CC.ORG ... | --countries CC,... --organizations ORG,... | --file FILE)
                 [--require-attested] [--vm-project ID]
  regulation get|delete|history SUBJECT      SUBJECT is vm:<uuid> or project:<id> (or --vm / --project)
  host list | host get NAME | host history NAME
  host pending                               hosts whose facts no second organisation has attested
  host attest NAME --country CC --organizations ORG,...   attest the facts you verified (role attestor)
  registry show | registry history | registry propose --file FILE
  proposal list | proposal show|approve|history ID
  project bind ID | project show|history ID | project move ID --to MSP
  residency vm:<uuid>|project:<id> [--from T] [--to T] [-o table|json|html]   where the VMs ran, with evidence
  residency verify REPORT.json               re-read every claim of a report from the ledger
  check --vm UUID [--project ID] [--host H ...]
  migrate --vm UUID [--target HOST] [--live|--cold] [--wait]
  verify --data DIR [--expect-head HEIGHT:HASH] [--expect-head-file FILE [--head-key KEY]]
  adopt --data DIR --expect-head HEIGHT:HASH   write the head file of a ledger that has none
  head                                         the signed head of the filterd at --ledger URL
  token issue --data DIR --role ROLE [--host H] [--id NAME]   a writer token of the embedded ledger, shown once
  token revoke --data DIR ID | token list --data DIR

common flags: --ledger URL|fabric|embedded, --token T, --data DIR, --fabric-*, -o table|json, --timeout D
environment: LEDGERFENCE_LEDGER, LEDGERFENCE_TOKEN, LEDGERFENCE_DATA, LEDGERFENCE_FABRIC_*, OS_CLOUD or OS_*
exit codes: 0 ok, 1 error, 2 usage or invalid input, 3 denied or non-compliant, 4 unavailable
`

// usageError is a mistake in the command line; exit code 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

// deniedError is a check or a request that ledgerfence refuses; exit code 3.
type deniedError struct{ msg string }

func (e *deniedError) Error() string { return e.msg }

// nova is what ledgerctl asks of OpenStack.
type nova interface {
	GetServer(ctx context.Context, id string) (cloud.Server, error)
	Migrate(ctx context.Context, id, kind, target string, fo cloud.FollowOptions) (cloud.Outcome, error)
}

// ledgerOpts say which ledger to use.
type ledgerOpts struct {
	backend.Settings
	Writer string
	// HeadState is the file in which the last signed head of a filterd's
	// ledger is remembered ("none": not kept across runs); HeadKey the
	// signer's public key, when given.
	HeadState string
	HeadKey   string
}

type app struct {
	stdout, stderr io.Writer
	getenv         func(string) string
	openLedger     func(ctx context.Context, o ledgerOpts) (ledger.Ledger, error)
	openNova       func(ctx context.Context) (nova, error)
	followEvery    time.Duration
	now            func() time.Time
}

func newApp(stdout, stderr io.Writer, getenv func(string) string) *app {
	a := &app{stdout: stdout, stderr: stderr, getenv: getenv, followEvery: 2 * time.Second, now: time.Now}
	a.openLedger = openLedger
	a.openNova = func(ctx context.Context) (nova, error) {
		cr, err := cloud.CredentialsFromEnv(getenv)
		if err != nil {
			return nil, err
		}
		return cloud.Connect(ctx, cr)
	}
	return a
}

// common holds the flags every command takes.
type common struct {
	ledgerOpts
	output  string
	timeout time.Duration
	file    string
}

func (a *app) commonFlags(fs *flag.FlagSet) *common {
	c := &common{}
	c.Settings.Flags(fs, "", backend.Remote, backend.Fabric, backend.Embedded)
	fs.StringVar(&c.Writer, "as", a.getenv("USER"), "the operator's name recorded as the writer with --ledger embedded (the ledger's file itself); a filterd records its token's identity (also LEDGERFENCE_WRITER)")
	fs.StringVar(&c.HeadState, "head-state", "", "file remembering the last signed head of the filterd at --ledger URL; none: not kept (default: one per URL under $XDG_STATE_HOME/ledgerfence/heads)")
	fs.StringVar(&c.HeadKey, "head-key", "", "public key of the ledger's head signer: base64, PEM or a file (default: the key of the first head seen; for verify, DIR/"+head.PublicKeyFile+")")
	fs.StringVar(&c.output, "o", "table", "output: table or json (as --output)")
	fs.StringVar(&c.output, "output", "table", "output: table or json")
	fs.DurationVar(&c.timeout, "timeout", 30*time.Second, "timeout of each ledger or OpenStack call (migrate --wait follows longer)")
	fs.StringVar(&c.file, config.FileFlag, "", "YAML file of settings, keyed by flag name")
	return c
}

// settingAliases are other names of ledgerctl's settings in the
// environment and the file.
var settingAliases = map[string]string{"writer": "as"}

// isSetting tells ledgerctl's settings (the flags every command takes,
// read from the environment and the file too) from a command's operands
// (--vm, --host, ...: the command line only).
func isSetting(name string) bool {
	switch name {
	case "ledger", "token", "data", "as", "fabric-peer", "fabric-tls-ca", "fabric-server-name", "fabric-msp-id",
		"fabric-cert", "fabric-key", "fabric-channel", "fabric-chaincode", "head-state", "head-key", "output", "timeout":
		return true
	}
	return false
}

// parse parses flags and positional arguments in any order, then fills
// every flag not given from the environment or the --config file
// (pkg/config's one precedence rule).
func (a *app) parse(fs *flag.FlagSet, args []string) ([]string, error) {
	config.Describe(fs)
	pos, err := parse(fs, args)
	if err != nil {
		return nil, err
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	if given["o"] { // -o and --output are one setting, read as output
		given["output"] = true
	}
	if _, err := config.Apply(fs, given, a.getenv, config.Options{Aliases: settingAliases, ReadFile: os.ReadFile, Settings: isSetting}); err != nil {
		return nil, usagef("%v", err)
	}
	return pos, nil
}

// parse parses flags and positional arguments in any order.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// listFlag is a repeatable flag that also splits on commas.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error {
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*l = append(*l, p)
		}
	}
	return nil
}

func (a *app) run(ctx context.Context, args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(a.stderr, usageText)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	var err error
	switch args[0] {
	case "regulation", "regulations", "reg":
		err = a.regulation(ctx, args[1:])
	case "host", "hosts":
		err = a.host(ctx, args[1:])
	case "check":
		err = a.check(ctx, args[1:])
	case "migrate":
		err = a.migrate(ctx, args[1:])
	case "verify":
		err = a.verify(ctx, args[1:])
	case "adopt":
		err = a.adopt(ctx, args[1:])
	case "head":
		err = a.head(ctx, args[1:])
	case "token", "tokens":
		err = a.token(ctx, args[1:])
	case "registry":
		err = a.registry(ctx, args[1:])
	case "proposal", "proposals":
		err = a.proposal(ctx, args[1:])
	case "project", "projects":
		err = a.project(ctx, args[1:])
	case "residency":
		err = a.residency(ctx, args[1:])
	default:
		err = usagef("unknown command %q (regulation, host, check, migrate, verify, adopt, head, token, registry, proposal, project, residency)", args[0])
	}
	return a.exit(err)
}

// exit prints err on one line and maps it to an exit code.
func (a *app) exit(err error) int {
	if err == nil {
		return exitOK
	}
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	msg := strings.Join(strings.Fields(err.Error()), " ")
	fmt.Fprintln(a.stderr, "ledgerctl: "+msg)
	var ue *usageError
	var de *deniedError
	switch {
	case errors.As(err, &ue), errors.Is(err, ledger.ErrInvalid), errors.Is(err, cloud.ErrNoCredentials):
		return exitUsage
	case errors.As(err, &de), errors.Is(err, ledger.ErrForbidden), errors.Is(err, head.ErrRefused):
		return exitDenied
	case errors.Is(err, ledger.ErrUnavailable), errors.Is(err, cloud.ErrUnavailable):
		return exitUnavailable
	}
	return exitError
}

func (a *app) newFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet("ledgerctl "+name, flag.ContinueOnError)
	fs.SetOutput(a.stderr)
	fs.Usage = func() { config.Usage(fs, a.stderr, "usage: ledgerctl "+name+" [flags]\n\n", isSetting) }
	return fs
}

func flagErr(err error) error {
	if errors.Is(err, flag.ErrHelp) {
		return err
	}
	return &usageError{err.Error()}
}

// ledger opens the configured ledger, with the writer on the context.
func (a *app) ledger(ctx context.Context, c *common) (ledger.Ledger, context.Context, error) {
	if c.output != "table" && c.output != "json" {
		return nil, ctx, usagef("-o %q: want table or json", c.output)
	}
	if c.Ledger == "" {
		return nil, ctx, usagef("no ledger: give --ledger URL|fabric|embedded (or LEDGERFENCE_LEDGER)")
	}
	if c.HeadState == "" {
		c.HeadState = defaultHeadState(a.getenv, c.Ledger)
	}
	l, err := a.openLedger(ctx, c.ledgerOpts)
	if err != nil {
		return nil, ctx, err
	}
	if c.Writer != "" && c.Kind() == backend.Embedded {
		ctx = ledger.WithWriter(ctx, ledger.Writer{ID: c.Writer, Role: access.RoleOperator})
	}
	return l, ctx, nil
}

func (a *app) callCtx(ctx context.Context, c *common) (context.Context, context.CancelFunc) {
	if c.timeout > 0 {
		return context.WithTimeout(ctx, c.timeout)
	}
	return context.WithCancel(ctx)
}

func (a *app) json(v any) error {
	enc := json.NewEncoder(a.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// subjectArg takes a subject from a positional argument, --vm or --project.
func subjectArg(pos []string, vm, project string) (filter.Subject, error) {
	var raw string
	n := 0
	if len(pos) > 0 {
		raw, n = pos[0], n+1
	}
	if vm != "" {
		raw, n = string(filter.VMSubject(vm)), n+1
	}
	if project != "" {
		raw, n = string(filter.ProjectSubject(project)), n+1
	}
	switch {
	case n == 0:
		return "", usagef("a subject is required: vm:<uuid>, project:<id>, --vm UUID or --project ID")
	case n > 1 || len(pos) > 1:
		return "", usagef("give one subject")
	}
	s, err := filter.ParseSubject(raw)
	if err != nil {
		return "", usagef("%v", err)
	}
	return s, nil
}
