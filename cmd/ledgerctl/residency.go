package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/residency"
)

// settle is how far behind the present a report is made, so that every
// placement it holds has committed and `residency verify` reads it again.
const settle = 5 * time.Second

// maxReportFile bounds a report read by `residency verify`.
const maxReportFile = 256 << 20

// residency: a VM's or a project's residency report, or the verification of
// one against the ledger.
func (a *app) residency(ctx context.Context, args []string) error {
	if len(args) > 0 && args[0] == "verify" {
		return a.residencyVerify(ctx, args[1:])
	}
	fs := a.newFlags("residency")
	c := a.commonFlags(fs)
	var from, to, asOf string
	var bound time.Duration
	fs.StringVar(&from, "from", "", "start of the period (RFC 3339; default 30 days before --to)")
	fs.StringVar(&to, "to", "", "end of the period (RFC 3339; default now)")
	fs.StringVar(&asOf, "as-of", "", "leave out placements recorded after this time (RFC 3339; default 5 s ago)")
	fs.DurationVar(&bound, "bound", 0, "how far apart the two witnesses may be (default 15m)")
	pos, err := a.parse(fs, args)
	if err != nil {
		return flagErr(err)
	}
	if len(pos) != 1 {
		return usagef("residency vm:<uuid>|project:<id> [--from T] [--to T] [-o table|json|html], or residency verify REPORT.json")
	}
	subject, err := filter.ParseSubject(pos[0])
	if err != nil {
		return usagef("%v", err)
	}
	now := a.now().UTC()
	q := residency.Query{Subject: subject, To: now, Bound: bound}
	if q.To, err = timeFlag("--to", to, now); err != nil {
		return err
	}
	if q.From, err = timeFlag("--from", from, q.To.AddDate(0, 0, -30)); err != nil {
		return err
	}
	at, err := timeFlag("--as-of", asOf, now.Add(-settle))
	if err != nil {
		return err
	}
	if q, err = q.Normalize(); err != nil {
		return usagef("%v", err)
	}
	output := c.output
	if output == "html" {
		c.output = "table"
	}
	l, ctx, err := a.ledger(ctx, c)
	if err != nil {
		return err
	}
	defer l.Close()
	cctx, cancel := a.callCtx(ctx, c)
	defer cancel()
	rep, err := residency.Read(cctx, l, q, at)
	if err != nil {
		return fmt.Errorf("residency of %s: %w", subject, err)
	}
	switch output {
	case "json":
		return residency.WriteJSON(a.stdout, rep)
	case "html":
		return residency.WriteHTML(a.stdout, rep)
	}
	return residency.WriteTable(a.stdout, rep)
}

// residencyVerify reads a report (JSON) and checks every claim against the
// ledger; a mismatch is exit code 3.
func (a *app) residencyVerify(ctx context.Context, args []string) error {
	fs := a.newFlags("residency verify")
	c := a.commonFlags(fs)
	pos, err := a.parse(fs, args)
	if err != nil {
		return flagErr(err)
	}
	if len(pos) != 1 {
		return usagef("residency verify REPORT.json (- for standard input)")
	}
	f := os.Stdin
	if pos[0] != "-" {
		if f, err = os.Open(pos[0]); err != nil {
			return usagef("%v", err)
		}
		defer f.Close()
	}
	rep, err := residency.ReadJSON(&limited{f, maxReportFile})
	if err != nil {
		return usagef("%v", err)
	}
	l, ctx, err := a.ledger(ctx, c)
	if err != nil {
		return err
	}
	defer l.Close()
	cctx, cancel := a.callCtx(ctx, c)
	defer cancel()
	if err := residency.Verify(cctx, l, rep); err != nil {
		var m *residency.Mismatch
		if errors.As(err, &m) {
			return &deniedError{m.Error()}
		}
		return fmt.Errorf("verifying the report: %w", err)
	}
	if c.output == "json" {
		return a.json(map[string]any{"verified": true, "subject": rep.Subject, "intervals": len(rep.Intervals), "placements": rep.Placements})
	}
	fmt.Fprintf(a.stdout, "verified: %d intervals of %s from %d placements, as the ledger holds them\n", len(rep.Intervals), rep.Subject, rep.Placements)
	return nil
}

func timeFlag(name, v string, def time.Time) (time.Time, error) {
	if v == "" {
		return def, nil
	}
	t, err := time.Parse(time.RFC3339, strings.TrimSpace(v))
	if err != nil {
		return time.Time{}, usagef("%s: want an RFC 3339 time, like 2026-12-01T00:00:00Z", name)
	}
	return t, nil
}

// limited reads at most n bytes, then fails (rather than truncating).
type limited struct {
	f *os.File
	n int64
}

func (l *limited) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, fmt.Errorf("the report is larger than %d bytes", maxReportFile)
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.f.Read(p)
	l.n -= int64(n)
	return n, err
}
