package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ledgerfence/ledgerfence/pkg/cloud"
	"github.com/ledgerfence/ledgerfence/pkg/decide"
	"github.com/ledgerfence/ledgerfence/pkg/filter"
)

// migrateResult is what migrate reports.
type migrateResult struct {
	InstanceUUID string         `json:"instance_uuid"`
	Kind         string         `json:"kind"`
	Target       string         `json:"target,omitempty"`
	Check        *decide.Report `json:"check,omitempty"`
	Requested    bool           `json:"requested"`
	Waited       bool           `json:"waited"`
	OK           bool           `json:"ok"`
	FromHost     string         `json:"from_host"`
	ToHost       string         `json:"to_host,omitempty"`
	Migration    string         `json:"migration_status,omitempty"`
	Cause        string         `json:"cause,omitempty"`
	Seconds      float64        `json:"seconds,omitempty"`
}

func (a *app) migrate(ctx context.Context, args []string) error {
	fs := a.newFlags("migrate")
	c := a.commonFlags(fs)
	vm := fs.String("vm", "", "the server's instance UUID (required)")
	target := fs.String("target", "", "the host to move to (default: Nova's scheduler picks, ledgerfence's filter guards)")
	live := fs.Bool("live", false, "live migration (the default)")
	cold := fs.Bool("cold", false, "cold migration, confirmed when it reaches VERIFY_RESIZE")
	wait := fs.Bool("wait", false, "follow the migration to its end")
	deny := denyUnregulatedFlag(fs)
	waitTimeout := fs.Duration("wait-timeout", 30*time.Minute, "give up following after this long")
	pos, err := a.parse(fs, args)
	if err != nil {
		return flagErr(err)
	}
	if len(pos) > 0 {
		return usagef("migrate takes flags only: migrate --vm UUID [--target HOST] [--live|--cold] [--wait]")
	}
	uuid, err := vmArg(*vm)
	if err != nil {
		return err
	}
	if *live && *cold {
		return usagef("give --live or --cold, not both")
	}
	kind := cloud.Live
	if *cold {
		kind = cloud.Cold
	}
	if *target != "" {
		if err := filter.ValidateHostName(*target); err != nil {
			return usagef("--target: %v", err)
		}
	}
	if c.output != "table" && c.output != "json" {
		return usagef("-o %q: want table or json", c.output)
	}
	if !cloud.HasCredentials(a.getenv) {
		return fmt.Errorf("%w: migrate needs OpenStack credentials: set OS_CLOUD (clouds.yaml) or OS_AUTH_URL and the other OS_* variables", cloud.ErrNoCredentials)
	}
	cctx, cancel := a.callCtx(ctx, c)
	defer cancel()
	n, err := a.openNova(cctx)
	if err != nil {
		return err
	}
	srv, err := n.GetServer(cctx, uuid)
	if err != nil {
		return err
	}
	res := migrateResult{InstanceUUID: uuid, Kind: kind, Target: *target, FromHost: srv.Host}
	if *target != "" {
		if *target == srv.Host {
			return usagef("server %s is already on %s", uuid, srv.Host)
		}
		l, _, err := a.ledger(ctx, c)
		if err != nil {
			return fmt.Errorf("cannot check %s, so no migration was asked for: %w", *target, err)
		}
		opts, err := a.options(cctx, l, *deny)
		var chk decide.Report
		if err == nil {
			chk, err = decideFor(cctx, l, uuid, srv.ProjectID, []string{*target}, opts)
		}
		l.Close()
		if err != nil {
			return fmt.Errorf("cannot check %s, so no migration was asked for: %w", *target, err)
		}
		res.Check = &chk
		if d := chk.Denied(); len(d) > 0 {
			if c.output == "json" {
				if err := a.json(res); err != nil {
					return err
				}
			}
			return &deniedError{fmt.Sprintf("refused: %s may not go to %s: %s (%s); no migration was asked for", uuid, *target, d[0].Reason, d[0].Detail)}
		}
		a.progressf("check: %s may go to %s (%s)", uuid, *target, chk.Summary)
	} else {
		a.progressf("no target: Nova's scheduler picks a host, ledgerfence's filter keeps the move compliant")
		a.whatIf(cctx, c, uuid, srv, *deny)
	}
	a.progressf("asking Nova for a %s migration of %s from %s", kind, uuid, srv.Host)
	start := a.now()
	// Following a migration outlasts one call's timeout.
	fctx, fcancel := context.WithTimeout(ctx, *waitTimeout)
	defer fcancel()
	out, err := n.Migrate(fctx, uuid, kind, *target, cloud.FollowOptions{
		Wait:  *wait,
		Every: a.followEvery,
		Progress: func(p cloud.Progress) {
			line := fmt.Sprintf("[%5.1fs] server %s task=%s host=%s", a.now().Sub(start).Seconds(), p.Server.Status, dash(p.Server.TaskState), p.Server.Host)
			if p.Migration != nil {
				line += fmt.Sprintf(" migration=%s (%s -> %s)", p.Migration.Status, p.Migration.SourceHost, dash(p.Migration.DestHost))
			}
			a.progressf("%s", line)
		},
	})
	if err != nil {
		if errors.Is(err, cloud.ErrConflict) {
			return fmt.Errorf("Nova refused the migration: %w", err)
		}
		return err
	}
	res.Requested, res.Waited = true, *wait
	if !*wait {
		if kind == cloud.Cold {
			a.progressf("requested; a cold migration ends in VERIFY_RESIZE: confirm it (openstack server resize confirm %s) or run with --wait", uuid)
		} else {
			a.progressf("requested; follow it with openstack server migration list --server %s, or run with --wait", uuid)
		}
		return a.printMigrate(c, res)
	}
	res.OK, res.ToHost, res.Seconds, res.Cause = out.OK, out.ToHost, out.Elapsed.Seconds(), out.Cause
	if out.Migration != nil {
		res.Migration = out.Migration.Status
	}
	if err := a.printMigrate(c, res); err != nil {
		return err
	}
	if !out.OK {
		why := "Nova recorded no migration"
		if out.Migration != nil {
			why = "the migration ended in status " + out.Migration.Status
		}
		if cloud.NoValidHost(out.Cause) {
			return &deniedError{fmt.Sprintf("%s migration of %s refused by Nova's scheduler: no valid host (ledgerfence's filter allows no other host, or none has room): %s; the server stays on %s", kind, uuid, out.Cause, out.ToHost)}
		}
		if out.Cause != "" {
			why += ": " + out.Cause
		}
		return fmt.Errorf("%s migration of %s failed: %s; the server is on %s (see openstack server event list %s)", kind, uuid, why, out.ToHost, uuid)
	}
	return nil
}

// whatIf says which registered hosts the server may go to, for information
// only: Nova's scheduler and ledgerfence's filter decide.
func (a *app) whatIf(ctx context.Context, c *common, uuid string, srv cloud.Server, deny bool) {
	l, _, err := a.ledger(ctx, c)
	if err != nil {
		a.progressf("(cannot list the compliant hosts: %v)", err)
		return
	}
	defer l.Close()
	opts, err := a.options(ctx, l, deny)
	var chk decide.Report
	if err == nil {
		chk, err = decideFor(ctx, l, uuid, srv.ProjectID, nil, opts)
	}
	if err != nil {
		a.progressf("(cannot list the compliant hosts: %v)", err)
		return
	}
	var ok []string
	for _, r := range chk.Verdicts {
		if r.Allowed && r.Host != srv.Host {
			ok = append(ok, r.Host)
		}
	}
	if len(ok) == 0 {
		a.progressf("no other registered host is compliant for %s: expect Nova to find no valid host", uuid)
		return
	}
	a.progressf("compliant hosts besides %s: %s", srv.Host, strings.Join(ok, ", "))
}

func (a *app) progressf(format string, args ...any) {
	fmt.Fprintf(a.stderr, format+"\n", args...)
}

func (a *app) printMigrate(c *common, res migrateResult) error {
	if c.output == "json" {
		return a.json(res)
	}
	switch {
	case !res.Waited:
		fmt.Fprintf(a.stdout, "%s migration of %s from %s requested\n", res.Kind, res.InstanceUUID, res.FromHost)
	case res.OK:
		fmt.Fprintf(a.stdout, "%s migration of %s done: %s -> %s in %.1fs\n", res.Kind, res.InstanceUUID, res.FromHost, res.ToHost, res.Seconds)
	default:
		fmt.Fprintf(a.stdout, "%s migration of %s failed: still on %s (migration %s)\n", res.Kind, res.InstanceUUID, res.ToHost, dash(res.Migration))
	}
	return nil
}
