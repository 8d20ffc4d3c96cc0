package main

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/ledgerfence/ledgerfence/pkg/cloud"
	"github.com/ledgerfence/ledgerfence/pkg/decide"
	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
)

// decideFor is the one decision (package decide) for a VM and its project
// over hosts (every host in the ledger when none), read from the ledger in
// one lookup, with opts.
func decideFor(ctx context.Context, l ledger.Ledger, vm, project string, hosts []string, opts filter.Options) (decide.Report, error) {
	if len(hosts) == 0 {
		recs, err := listHosts(ctx, l)
		if err != nil {
			return decide.Report{}, err
		}
		for _, r := range recs {
			hosts = append(hosts, r.Name)
		}
	}
	cands := decide.Candidates(hosts)
	d, err := decide.Decide(ctx, decide.Ledger(l), nil, vm, project, cands, opts)
	if err != nil {
		return decide.Report{}, fmt.Errorf("reading the ledger: %w", err)
	}
	return d.Report(cands), nil
}

// optioner is a ledger that knows the options of the decisions made on
// it: a filterd's (remote.Client).
type optioner interface {
	Options(ctx context.Context) (filter.Options, error)
}

// options returns the options of the one decision: those of the filterd
// ledgerctl talks to, or, on a ledger it opens itself, --deny-unregulated.
func (a *app) options(ctx context.Context, l ledger.Ledger, denyUnregulated bool) (filter.Options, error) {
	if o, ok := l.(optioner); ok {
		opts, err := o.Options(ctx)
		if err != nil {
			return filter.Options{}, fmt.Errorf("asking filterd for its decision options: %w", err)
		}
		if denyUnregulated && !opts.DenyUnregulated {
			fmt.Fprintln(a.stderr, "note: --deny-unregulated ignored: the filterd at --ledger decides without it, and so does this check")
		}
		return opts, nil
	}
	return filter.Options{DenyUnregulated: denyUnregulated}, nil
}

func (a *app) check(ctx context.Context, args []string) error {
	fs := a.newFlags("check")
	c := a.commonFlags(fs)
	vm := fs.String("vm", "", "the VM's instance UUID (required)")
	project := fs.String("project", "", "the VM's project id (default: asked of Nova when OpenStack credentials are set)")
	var hosts listFlag
	fs.Var(&hosts, "host", "a host to check (repeatable; default: every host in the ledger)")
	deny := denyUnregulatedFlag(fs)
	pos, err := a.parse(fs, args)
	if err != nil {
		return flagErr(err)
	}
	if len(pos) > 0 {
		return usagef("check takes flags only: check --vm UUID [--project ID] [--host H ...]")
	}
	uuid, err := vmArg(*vm)
	if err != nil {
		return err
	}
	if _, err := decide.Subjects("", *project); err != nil {
		return usagef("--project: %v", err)
	}
	for _, h := range hosts {
		if err := filter.ValidateHostName(h); err != nil {
			return usagef("--host: %v", err)
		}
	}
	cctx, cancel := a.callCtx(ctx, c)
	defer cancel()
	if *project == "" {
		if cloud.HasCredentials(a.getenv) {
			n, err := a.openNova(cctx)
			if err != nil {
				return err
			}
			srv, err := n.GetServer(cctx, uuid)
			if err != nil {
				return err
			}
			*project = srv.ProjectID
		} else {
			fmt.Fprintln(a.stderr, "note: no --project and no OpenStack credentials: only the VM's own regulation is checked")
		}
	}
	l, _, err := a.ledger(ctx, c)
	if err != nil {
		return err
	}
	defer l.Close()
	opts, err := a.options(cctx, l, *deny)
	if err != nil {
		return err
	}
	res, err := decideFor(cctx, l, uuid, *project, hosts, opts)
	if err != nil {
		return err
	}
	if err := a.printCheck(c, res); err != nil {
		return err
	}
	if d := res.Denied(); len(d) > 0 {
		return &deniedError{fmt.Sprintf("%s: %s", uuid, res.Summary)}
	}
	return nil
}

func vmArg(vm string) (string, error) {
	if vm == "" {
		return "", usagef("--vm UUID is required")
	}
	u, err := filter.NormalizeUUID(vm)
	if err != nil {
		return "", usagef("--vm: %v", err)
	}
	return u, nil
}

// denyUnregulatedFlag defines --deny-unregulated, for decisions on a
// ledger ledgerctl opens itself.
func denyUnregulatedFlag(fs *flag.FlagSet) *bool {
	return fs.Bool("deny-unregulated", false, "decide as a filterd with --deny-unregulated does (on an embedded or Fabric ledger; with a filterd URL, its own options apply)")
}

func (a *app) printCheck(c *common, res decide.Report) error {
	if c.output == "json" {
		return a.json(res)
	}
	regs := "none (unregulated)"
	if len(res.Regulations) > 0 {
		s := make([]string, len(res.Regulations))
		for i, r := range res.Regulations {
			s[i] = string(r)
		}
		regs = strings.Join(s, ", ")
	}
	fmt.Fprintf(a.stdout, "VM %s, regulations: %s, ledger height %d\n", res.InstanceUUID, regs, res.LedgerHeight)
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tCOUNTRY\tORGANIZATIONS\tVERDICT\tREASON\tDETAIL")
	for _, r := range res.Verdicts {
		verdict, detail := "allowed", r.Detail
		if !r.Allowed {
			verdict = "denied"
		} else if detail == "" {
			detail = "allowed"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Host, dash(r.Country), dash(strings.Join(r.Organizations, ",")), verdict, dash(string(r.Reason)), detail)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(a.stdout, res.Summary)
	return nil
}
