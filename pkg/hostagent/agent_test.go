package hostagent

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/ledgerfence/ledgerfence/pkg/cloud"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
)

type fakeServices struct {
	hosts map[string]bool
	err   error
}

func (f fakeServices) ComputeServiceExists(ctx context.Context, host string) (bool, error) {
	return f.hosts[host], f.err
}

func TestConfirmName(t *testing.T) {
	tests := []struct {
		name string
		svc  ComputeServices
		want string
		log  string
	}{
		{"confirmed", fakeServices{hosts: map[string]bool{"compute-a": true}}, NameConfirmed, "host name confirmed"},
		{"unknown", fakeServices{hosts: map[string]bool{"other": true}}, NameUnknown, "Nova has no nova-compute service"},
		{"nova down", fakeServices{err: cloud.ErrUnavailable}, NameUnconfirmed, "could not confirm"},
		{"no credentials", nil, NameNotChecked, "not confirmed with Nova"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			core, logs := observer.New(zap.InfoLevel)
			a := &Agent{Host: hostA, Services: tc.svc, Log: zap.New(core)}
			if got := a.ConfirmName(context.Background()); got != tc.want {
				t.Fatalf("ConfirmName = %q, want %q", got, tc.want)
			}
			if logs.FilterMessageSnippet(tc.log).Len() != 1 {
				t.Fatalf("no log line with %q: %v", tc.log, logs.All())
			}
		})
	}
}

// stopAfter ends the agent's context after n waits.
type stopAfter struct {
	*fakeClock
	n      int
	cancel context.CancelFunc
}

func (c *stopAfter) After(d time.Duration) <-chan time.Time {
	ch := c.fakeClock.After(d)
	if len(c.fakeClock.waits) > c.n {
		c.cancel()
		return make(chan time.Time) // never fires
	}
	return ch
}

func TestAgentRun(t *testing.T) {
	t.Run("once registers and returns", func(t *testing.T) {
		l := newFakeLedger()
		a := &Agent{Host: hostA, Registrar: newRegistrar(l, newFakeClock(), nil), Once: true, Clock: newFakeClock(), Log: zap.NewNop()}
		if err := a.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		if _, ok := l.hosts["compute-a"]; !ok {
			t.Fatal("host not registered")
		}
	})
	t.Run("once fails when the ledger refuses", func(t *testing.T) {
		l := newFakeLedger()
		l.failErr, l.failures = ledger.Errorf(ledger.ErrForbidden, nil, "not yours"), 10
		a := &Agent{Host: hostA, Registrar: newRegistrar(l, newFakeClock(), nil), Once: true, Clock: newFakeClock(), Log: zap.NewNop()}
		if err := a.Run(context.Background()); !errors.Is(err, ledger.ErrForbidden) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("daemon sweeps and re-asserts each interval", func(t *testing.T) {
		l := newFakeLedger()
		l.putRegulation(t, "vm:"+vm1, `{"allow":["GB.CompanyA"]}`)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		clock := &stopAfter{fakeClock: newFakeClock(), n: 2, cancel: cancel}
		core, logs := observer.New(zap.InfoLevel)
		a := &Agent{
			Host: hostA, Registrar: newRegistrar(l, clock, nil), Interval: time.Minute, Clock: clock, Log: zap.New(core),
			Sweeper: &Sweeper{Host: "compute-a", Servers: &fakeServers{byHost: map[string][]cloud.Server{"compute-a": {{ID: vm1, ProjectID: "p"}}}}, Ledger: l, Clock: clock, Log: zap.New(core)},
		}
		if err := a.Run(ctx); err != nil {
			t.Fatal(err)
		}
		if n := logs.FilterMessage("compliance sweep done").Len(); n != 3 {
			t.Errorf("%d sweeps, want 3", n)
		}
		if n := logs.FilterMessage("host record unchanged: nothing written").Len(); n != 2 {
			t.Errorf("%d re-assertions, want 2", n)
		}
		if l.puts != 1 {
			t.Errorf("%d writes, want 1", l.puts)
		}
		for _, e := range logs.FilterMessage("compliance sweep done").All() {
			if v := e.ContextMap()["violations"]; v != int64(1) {
				t.Errorf("violations = %v", v)
			}
		}
		if !strings.Contains(logs.FilterMessageSnippet("violation:").All()[0].ContextMap()["reason"].(string), "country_not_allowed") {
			t.Error("violation reason not logged")
		}
	})
}
