// Package hostagent is the logic of ledgerfence's host agent: its
// configuration, working out the host's name as Nova knows it, registering
// the host's facts in the ledger with backoff, and the compliance sweep that
// finds the VMs whose regulation the host breaks.
package hostagent

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/ledgerfence/ledgerfence/pkg/config"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/backend"
)

// Defaults. One place for each.
const (
	DefaultInterval       = 5 * time.Minute
	DefaultDeadline       = 10 * time.Minute
	DefaultAttemptTimeout = 15 * time.Second
	EnvPrefix             = "LEDGERFENCE_"
	// DefaultHeadStateFile is the head state's name in systemd's state
	// directory.
	DefaultHeadStateFile = "head.json"
)

// DefaultNovaConfs are read, in order (a later file wins, as with
// nova-compute's --config-file), when --nova-conf is not given. A missing
// default file is skipped; a missing named file is an error.
var DefaultNovaConfs = []string{"/etc/nova/nova.conf", "/etc/nova/nova-compute.conf"}

// ErrUsage marks a configuration error: bad flags, environment or file.
var ErrUsage = errors.New("usage")

// Config is the host agent's configuration.
type Config struct {
	ConfigFile    string
	Host          string
	Country       string
	Organizations []string
	Region        string
	// Settings name the ledger: the URL of a filterd serving the embedded
	// ledger (with the agent's own writer token, bound to its host), or fabric
	// (with the agent's own identity).
	backend.Settings
	// HeadState is the file in which the last signed head of a filterd's
	// ledger is remembered ("" or "none": only while the agent runs);
	// HeadKey the signer's public key (base64, PEM or a file), when given.
	HeadState string
	HeadKey   string
	// Once registers and exits.
	Once bool
	// Interval between re-assertions and sweeps in daemon mode.
	Interval time.Duration
	// Deadline bounds a registration while the ledger is unavailable; 0 waits forever.
	Deadline time.Duration
	// AttemptTimeout bounds one ledger call.
	AttemptTimeout time.Duration
	NovaConfs      []string
	// NovaConfsSet is true when NovaConfs was configured, not defaulted.
	NovaConfsSet  bool
	MetricsListen string
	// NATS is the URL of a NATS server for violation events; empty: none.
	NATS    string
	NoSweep bool
	// NoWitness: the sweep does not record the VMs it sees come and go.
	NoWitness       bool
	DenyUnregulated bool
	LogLevel        string
	LogFormat       string
}

// Defaults returns the configuration before any source is applied.
func Defaults() Config {
	return Config{
		Interval:       DefaultInterval,
		Deadline:       DefaultDeadline,
		AttemptTimeout: DefaultAttemptTimeout,
		NovaConfs:      append([]string(nil), DefaultNovaConfs...),
		LogLevel:       "info",
		LogFormat:      "json",
	}
}

// aliases are older names of settings, in the environment and the file.
var aliases = map[string]string{"organizations": "organization"}

// flags defines every setting of c as a flag of fs, each also read from
// the environment and the file (pkg/config).
func (c *Config) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.ConfigFile, config.FileFlag, "", "YAML configuration file (keys are the flag names)")
	fs.StringVar(&c.Host, "host", c.Host, "the compute host's name as Nova knows it (default: nova.conf [DEFAULT] host, else the hostname)")
	fs.StringVar(&c.Country, "country", c.Country, "ISO 3166-1 alpha-2 country the host is in")
	fs.Var(config.NewList(&c.Organizations), "organization", "an organisation operating the host (repeatable, or comma-separated)")
	fs.StringVar(&c.Region, "region", c.Region, "optional region label (Nova region, data centre)")
	c.Settings.Flags(fs, "", backend.Remote, backend.Fabric)
	fs.StringVar(&c.HeadState, "head-state", c.HeadState, "file remembering the last signed head of the filterd's ledger, to refuse a ledger that forked or went back (default: $STATE_DIRECTORY/head.json under systemd; none: kept only while the agent runs)")
	fs.StringVar(&c.HeadKey, "head-key", c.HeadKey, "public key of the filterd's head signer: base64, PEM or a file (default: the key of the first head seen)")
	fs.BoolVar(&c.Once, "once", c.Once, "register (or confirm the record) and exit: 0 when registered")
	fs.DurationVar(&c.Interval, "interval", c.Interval, "daemon: how often to re-assert the record and sweep")
	fs.DurationVar(&c.Deadline, "deadline", c.Deadline, "give up registering after this long while the ledger is unavailable (0: never)")
	fs.DurationVar(&c.AttemptTimeout, "attempt-timeout", c.AttemptTimeout, "timeout of one ledger call")
	fs.Var(&novaConfs{List: config.NewList(&c.NovaConfs), set: &c.NovaConfsSet}, "nova-conf", "nova.conf file to read [DEFAULT] host from (repeatable; a later file wins)")
	fs.StringVar(&c.MetricsListen, "metrics-listen", c.MetricsListen, "address for /metrics and /healthz (daemon), e.g. 127.0.0.1:9465; empty: none")
	fs.StringVar(&c.NATS, "nats", c.NATS, "NATS server URL for violation events (daemon); empty: none")
	fs.BoolVar(&c.NoSweep, "no-sweep", c.NoSweep, "daemon: only re-assert the record, do not sweep")
	fs.BoolVar(&c.NoWitness, "no-witness", c.NoWitness, "do not record, as the second witness of residency evidence, the VMs the sweep sees come and go")
	fs.BoolVar(&c.DenyUnregulated, "deny-unregulated", c.DenyUnregulated, "sweep: treat VMs without a regulation as violations (as filterd's option of that name)")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "debug, info, warn or error")
	fs.StringVar(&c.LogFormat, "log-format", c.LogFormat, "json or console")
}

// novaConfs is --nova-conf, which also records that it was given.
type novaConfs struct {
	*config.List
	set *bool
}

func (n *novaConfs) Set(v string) error { *n.set = true; return n.List.Set(v) }
func (n *novaConfs) Reset()             { *n.set = true; n.List.Reset() }

// Load builds the configuration from, in increasing precedence, the
// defaults, a YAML file (--config or LEDGERFENCE_CONFIG), the environment
// (LEDGERFENCE_HOST, LEDGERFENCE_ORGANIZATION=A,B, ...) and the flags, as
// every command does (pkg/config). A list given by a higher source replaces
// the lower one's. readFile is os.ReadFile in a program. Errors match
// ErrUsage; flag.ErrHelp is returned as it is after the usage is written
// to out.
func Load(args []string, getenv func(string) string, readFile func(string) ([]byte, error), out io.Writer) (Config, error) {
	c := Defaults()
	fs := flag.NewFlagSet("hostagent", flag.ContinueOnError)
	fs.SetOutput(out)
	c.flags(fs)
	fs.Usage = func() { config.Usage(fs, out, "usage: hostagent [flags]\n\n") }
	file, err := config.Load(fs, args, getenv, config.Options{Aliases: aliases, ReadFile: readFile})
	if errors.Is(err, flag.ErrHelp) {
		return c, err
	}
	if err != nil {
		return c, fmt.Errorf("%w: %v", ErrUsage, err)
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("%w: unexpected argument %q", ErrUsage, fs.Arg(0))
	}
	c.ConfigFile = file
	if c.Interval < 0 || c.Deadline < 0 || c.AttemptTimeout < 0 {
		return c, fmt.Errorf("%w: --interval, --deadline and --attempt-timeout may not be negative", ErrUsage)
	}
	if c.HeadState == "" {
		// systemd's StateDirectory= (one or more directories, colon-separated).
		if dir, _, _ := strings.Cut(getenv("STATE_DIRECTORY"), ":"); dir != "" {
			c.HeadState = filepath.Join(dir, DefaultHeadStateFile)
		}
	}
	if err := c.Validate(); err != nil {
		return c, err
	}
	return c, nil
}

// Validate checks what does not depend on the host's facts (those are
// checked by pkg/filter when the record is built). Errors match ErrUsage.
func (c *Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrUsage, fmt.Sprintf(format, args...))
	}
	if err := c.Settings.Validate(backend.Remote, backend.Fabric); err != nil {
		return bad("%v", err)
	}
	if !c.Once && c.Interval <= 0 {
		return bad("--interval must be positive")
	}
	if c.AttemptTimeout <= 0 {
		return bad("--attempt-timeout must be positive")
	}
	if c.Country == "" {
		return bad("--country is required (ISO 3166-1 alpha-2, e.g. JP)")
	}
	if len(c.Organizations) == 0 {
		return bad("at least one --organization is required")
	}
	switch c.LogFormat {
	case "json", "console":
	default:
		return bad("--log-format %q: want json or console", c.LogFormat)
	}
	return nil
}
