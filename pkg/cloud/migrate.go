package cloud

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// Migration kinds.
const (
	Live = "live"
	Cold = "cold"
)

// Progress is one observed step of a migration.
type Progress struct {
	Server    Server
	Migration *Migration // nil until Nova has recorded one
}

// Outcome is how a migration ended.
type Outcome struct {
	Server    Server
	Migration *Migration
	// OK is true when the migration completed (and, for a cold one, was
	// confirmed) and the server is on another host than before.
	OK       bool
	FromHost string
	ToHost   string
	Elapsed  time.Duration
	// Cause is Nova's word on a failure, when it has one (see NoValidHost).
	Cause string
}

// FollowOptions tune Migrate.
type FollowOptions struct {
	// Every is the polling interval (default 2s).
	Every time.Duration
	// Progress is called whenever the server's status, task state or host,
	// or the migration's status, changes. May be nil.
	Progress func(Progress)
	// Wait follows the migration to its end; without it Migrate returns
	// once Nova has accepted the request.
	Wait bool
	// After is time.After in a program (for tests).
	After func(time.Duration) <-chan time.Time
}

// Migrate asks Nova for a live or cold migration of server id (to target,
// or to a host Nova's scheduler picks when target is empty) and, with
// Wait, follows it to the end, confirming a cold migration when it reaches
// VERIFY_RESIZE. A request Nova refuses returns ErrConflict with Nova's
// reason; a migration that fails returns an Outcome with OK false and no
// error.
func (c *Client) Migrate(ctx context.Context, id, kind, target string, fo FollowOptions) (Outcome, error) {
	if fo.Every <= 0 {
		fo.Every = 2 * time.Second
	}
	if fo.After == nil {
		fo.After = time.After
	}
	start := time.Now()
	before, err := c.GetServer(ctx, id)
	if err != nil {
		return Outcome{}, err
	}
	known, err := c.Migrations(ctx, id)
	if err != nil {
		return Outcome{}, err
	}
	lastID := 0
	if len(known) > 0 {
		lastID = known[0].ID
	}
	switch kind {
	case Live:
		err = c.LiveMigrate(ctx, id, target)
	case Cold:
		err = c.ColdMigrate(ctx, id, target)
	default:
		return Outcome{}, fmt.Errorf("migration kind %q: want live or cold", kind)
	}
	if err != nil {
		return Outcome{}, err
	}
	out := Outcome{Server: before, FromHost: before.Host}
	if !fo.Wait {
		return out, nil
	}
	var seen string
	confirmed := false
	idle := 0
	for {
		select {
		case <-ctx.Done():
			return out, fmt.Errorf("%w: following the migration of %s: %v", ErrUnavailable, id, ctx.Err())
		case <-fo.After(fo.Every):
		}
		srv, err := c.GetServer(ctx, id)
		if err != nil {
			return out, err
		}
		ms, err := c.Migrations(ctx, id)
		if err != nil {
			return out, err
		}
		var m *Migration
		if len(ms) > 0 && ms[0].ID > lastID {
			m = &ms[0]
		}
		out.Server, out.Migration, out.ToHost = srv, m, srv.Host
		state := srv.Status + "/" + srv.TaskState + "/" + srv.Host
		if m != nil {
			state += "/" + m.Status
		}
		if state != seen && fo.Progress != nil {
			fo.Progress(Progress{Server: srv, Migration: m})
		}
		seen = state
		if m == nil {
			// Nova records the migration soon after accepting it; if the
			// server is idle and none appears, Nova gave up before.
			if srv.TaskState == "" {
				if idle++; idle >= 15 {
					return c.ended(ctx, id, out, start), nil
				}
			}
			continue
		}
		if kind == Cold && srv.Status == "VERIFY_RESIZE" && !confirmed {
			if err := c.ConfirmResize(ctx, id); err != nil {
				return out, err
			}
			confirmed = true
			continue
		}
		if done, ok := m.Done(); done && srv.TaskState == "" && srv.Status != "VERIFY_RESIZE" {
			out.OK = ok && srv.Host != before.Host
			return c.ended(ctx, id, out, start), nil
		}
		if srv.Status == "ERROR" {
			return c.ended(ctx, id, out, start), nil
		}
	}
}

func (c *Client) ended(ctx context.Context, id string, out Outcome, start time.Time) Outcome {
	out.Elapsed = time.Since(start)
	if !out.OK {
		out.Cause = first(out.Server.Fault, c.actionError(ctx, id))
	}
	return out
}

// actionError returns why the newest migration action of a server failed,
// from its instance action events (compute API 2.84 adds each event's
// details): e.g. "No valid host was found. ..." when Nova's scheduler,
// ledgerfence's filter included, left no host. Empty when nothing says.
func (c *Client) actionError(ctx context.Context, id string) string {
	sc := *c.compute
	sc.Microversion = "2.84"
	var list struct {
		Actions []struct {
			Action    string `json:"action"`
			RequestID string `json:"request_id"`
			Message   string `json:"message"`
		} `json:"instanceActions"`
	}
	resp, err := sc.Get(ctx, sc.ServiceURL("servers", id, "os-instance-actions"), &list, nil)
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	if err != nil {
		return ""
	}
	for _, a := range list.Actions {
		if a.Action != "live-migration" && a.Action != "migrate" {
			continue
		}
		var one struct {
			Action struct {
				Message string `json:"message"`
				Events  []struct {
					Event   string `json:"event"`
					Result  string `json:"result"`
					Details string `json:"details"`
				} `json:"events"`
			} `json:"instanceAction"`
		}
		resp, err := sc.Get(ctx, sc.ServiceURL("servers", id, "os-instance-actions", a.RequestID), &one, nil)
		if resp != nil && resp.Body != nil {
			resp.Body.Close()
		}
		if err != nil {
			return oneLine(a.Message)
		}
		for _, e := range one.Action.Events {
			if e.Result == "Error" && e.Details != "" {
				return oneLine(e.Details)
			}
		}
		return oneLine(first(one.Action.Message, a.Message))
	}
	return ""
}

// NoValidHost reports whether a failure cause is Nova's scheduler finding
// no host that passes its filters.
func NoValidHost(cause string) bool {
	return strings.Contains(cause, "No valid host") || strings.Contains(cause, "NoValidHost")
}
