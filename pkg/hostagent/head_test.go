package hostagent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/ledgerfence/ledgerfence/pkg/ledger"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/head"
)

// fakeHeads answers CheckHead with errs in turn, then nil.
type fakeHeads struct {
	errs   []error
	checks int
}

func (f *fakeHeads) CheckHead(context.Context) error {
	f.checks++
	if len(f.errs) == 0 {
		return nil
	}
	err := f.errs[0]
	f.errs = f.errs[1:]
	return err
}

var forked = fmt.Errorf("%w: %w: the ledger holds another entry", head.ErrRefused, head.ErrFork)

func TestRegisterChecksTheHeadFirst(t *testing.T) {
	t.Run("a refused ledger is never written to", func(t *testing.T) {
		l := newFakeLedger()
		r := newRegistrar(l, newFakeClock(), nil)
		r.Heads = &fakeHeads{errs: []error{forked}}
		got, err := r.Register(context.Background(), hostA)
		if !errors.Is(err, head.ErrFork) || got.Attempts != 1 {
			t.Fatalf("Register = %+v, %v; want the fork at once", got, err)
		}
		if l.gets != 0 || l.puts != 0 {
			t.Errorf("%d reads and %d writes of a refused ledger", l.gets, l.puts)
		}
	})
	t.Run("an unreachable head is retried", func(t *testing.T) {
		l := newFakeLedger()
		r := newRegistrar(l, newFakeClock(), nil)
		heads := &fakeHeads{errs: []error{ledger.Errorf(ledger.ErrUnavailable, nil, "connection refused")}}
		r.Heads = heads
		got, err := r.Register(context.Background(), hostA)
		if err != nil || got.Attempts != 2 || heads.checks != 2 || l.puts != 1 {
			t.Fatalf("Register = %+v, %v after %d checks and %d writes", got, err, heads.checks, l.puts)
		}
	})
	t.Run("the daemon stops on a refused ledger", func(t *testing.T) {
		l := newFakeLedger()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		clock := &stopAfter{fakeClock: newFakeClock(), n: 5, cancel: cancel}
		r := newRegistrar(l, clock, nil)
		r.Heads = &fakeHeads{errs: []error{nil, forked}}
		a := &Agent{Host: hostA, Registrar: r, Interval: time.Minute, Clock: clock, Log: zap.NewNop()}
		if err := a.Run(ctx); !errors.Is(err, head.ErrFork) {
			t.Fatalf("Run = %v, want the fork", err)
		}
		if l.puts != 1 {
			t.Errorf("%d writes, want the first registration only", l.puts)
		}
	})
}

func TestHeadStateDefault(t *testing.T) {
	args := []string{"--ledger", "http://filterd:8787", "--country", "JP", "--organization", "A"}
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"none outside systemd", nil, nil, ""},
		{"systemd's state directory", nil, map[string]string{"STATE_DIRECTORY": "/var/lib/ledgerfence/hostagent:/other"}, "/var/lib/ledgerfence/hostagent/head.json"},
		{"the flag wins", []string{"--head-state", "/tmp/h.json"}, map[string]string{"STATE_DIRECTORY": "/var/lib/x"}, "/tmp/h.json"},
		{"the variable", nil, map[string]string{"LEDGERFENCE_HEAD_STATE": "none"}, "none"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Load(append(args, tc.args...), func(k string) string { return tc.env[k] }, nil, io.Discard)
			if err != nil || c.HeadState != tc.want {
				t.Errorf("HeadState = %q, %v; want %q", c.HeadState, err, tc.want)
			}
		})
	}
}
