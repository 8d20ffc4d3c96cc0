package hostagent

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
)

func TestBackoffDelay(t *testing.T) {
	tests := []struct {
		name string
		b    Backoff
		want []time.Duration
	}{
		{
			name: "no jitter doubles up to max",
			b:    Backoff{Initial: 100 * time.Millisecond, Max: time.Second, Multiplier: 2},
			want: []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond, time.Second, time.Second},
		},
		{
			name: "jitter low end",
			b:    Backoff{Initial: 100 * time.Millisecond, Max: time.Second, Multiplier: 2, Jitter: 0.5, Rand: func() float64 { return 0 }},
			want: []time.Duration{50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 500 * time.Millisecond},
		},
		{
			name: "jitter high end is capped by max",
			b:    Backoff{Initial: 100 * time.Millisecond, Max: time.Second, Multiplier: 2, Jitter: 0.5, Rand: func() float64 { return 0.999999 }},
			want: []time.Duration{149999900, 299999800, 599999600, time.Second, time.Second},
		},
		{
			name: "multiplier below one is one",
			b:    Backoff{Initial: time.Second, Multiplier: 0.5},
			want: []time.Duration{time.Second, time.Second, time.Second},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []time.Duration
			for i := range tc.want {
				got = append(got, tc.b.Delay(i))
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("delays = %v, want %v", got, tc.want)
			}
		})
	}
}

var hostA = filter.Host{Name: "compute-a", Country: "jp", Organizations: []string{"CompanyB", "CompanyA", "CompanyA"}, Region: "r1"}

func newRegistrar(l HostStore, clock Clock, m *Metrics) *Registrar {
	return &Registrar{
		Ledger:         l,
		Backoff:        Backoff{Initial: 100 * time.Millisecond, Max: 800 * time.Millisecond, Multiplier: 2},
		Clock:          clock,
		AttemptTimeout: time.Second,
		Metrics:        m,
	}
}

func TestRegisterRetriesWhileUnavailable(t *testing.T) {
	l := newFakeLedger()
	l.failErr = ledger.Errorf(ledger.ErrUnavailable, nil, "connection refused")
	l.failures = 5
	clock := newFakeClock()
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	r := newRegistrar(l, clock, m)

	got, err := r.Register(context.Background(), hostA)
	if err != nil {
		t.Fatalf("Register: %v", err)
	}
	if !got.Changed || got.Attempts != 6 {
		t.Fatalf("got changed=%v attempts=%d, want true and 6", got.Changed, got.Attempts)
	}
	wantWaits := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond, 800 * time.Millisecond}
	if !slices.Equal(clock.waits, wantWaits) {
		t.Fatalf("waits = %v, want %v", clock.waits, wantWaits)
	}
	if got.Record.Country != "JP" || !slices.Equal(got.Record.Organizations, []string{"CompanyA", "CompanyB"}) {
		t.Fatalf("record not normalised: %+v", got.Record.Host)
	}
	if n := testutil.ToFloat64(m.registrations.WithLabelValues("unavailable")); n != 5 {
		t.Errorf("unavailable attempts counted %v, want 5", n)
	}
	if n := testutil.ToFloat64(m.registered); n != 1 {
		t.Errorf("registered gauge %v, want 1", n)
	}
}

func TestRegisterIdempotent(t *testing.T) {
	l := newFakeLedger()
	r := newRegistrar(l, newFakeClock(), nil)
	for boot := 0; boot < 5; boot++ {
		got, err := r.Register(context.Background(), hostA)
		if err != nil {
			t.Fatal(err)
		}
		if got.Changed != (boot == 0) {
			t.Fatalf("boot %d: changed = %v", boot, got.Changed)
		}
	}
	if l.puts != 1 {
		t.Fatalf("%d writes for five boots with the same facts, want 1", l.puts)
	}
	// Changed facts are written.
	moved := hostA
	moved.Country = "GB"
	got, err := r.Register(context.Background(), moved)
	if err != nil || !got.Changed || l.puts != 2 {
		t.Fatalf("changed facts: changed=%v puts=%d err=%v", got.Changed, l.puts, err)
	}
}

func TestRegisterDoesNotRetry(t *testing.T) {
	tests := []struct {
		name    string
		failErr error
		host    filter.Host
		want    error
	}{
		{"forbidden", ledger.Errorf(ledger.ErrForbidden, nil, "host compute-a belongs to Org2MSP"), hostA, ledger.ErrForbidden},
		{"invalid from ledger", ledger.Errorf(ledger.ErrInvalid, nil, "bad"), hostA, ledger.ErrInvalid},
		{"unknown error", errors.New("something else"), hostA, nil},
		{"invalid country caught locally", nil, filter.Host{Name: "h", Country: "XX", Organizations: []string{"A"}}, ledger.ErrInvalid},
		{"no organisation caught locally", nil, filter.Host{Name: "h", Country: "JP"}, ledger.ErrInvalid},
		{"wildcard organisation caught locally", nil, filter.Host{Name: "h", Country: "JP", Organizations: []string{"*"}}, ledger.ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := newFakeLedger()
			if tc.failErr != nil {
				l.failErr, l.failures = tc.failErr, 100
			}
			clock := newFakeClock()
			_, err := newRegistrar(l, clock, nil).Register(context.Background(), tc.host)
			if err == nil {
				t.Fatal("no error")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if len(clock.waits) != 0 {
				t.Fatalf("retried %d times", len(clock.waits))
			}
			if l.puts != 0 {
				t.Fatalf("wrote %d records", l.puts)
			}
			if tc.failErr == nil && l.gets != 0 {
				t.Fatal("invalid input reached the ledger")
			}
		})
	}
}

// deadlineClock cancels the context after n waits, as a deadline would.
type deadlineClock struct {
	*fakeClock
	n      int
	cancel context.CancelFunc
}

func (c *deadlineClock) After(d time.Duration) <-chan time.Time {
	ch := c.fakeClock.After(d)
	if len(c.fakeClock.waits) >= c.n {
		c.cancel()
		return make(chan time.Time) // never fires
	}
	return ch
}

func TestRegisterGivesUpAtDeadline(t *testing.T) {
	l := newFakeLedger()
	l.failErr, l.failures = ledger.Errorf(ledger.ErrUnavailable, nil, "dial tcp 127.0.0.1:1: connection refused"), 1000
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	clock := &deadlineClock{fakeClock: newFakeClock(), n: 4, cancel: cancel}
	_, err := newRegistrar(l, clock, nil).Register(ctx, hostA)
	if !errors.Is(err, ledger.ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
	for _, s := range []string{"compute-a not registered", "4 attempts", "connection refused", "1.5s"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not say %q", err, s)
		}
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("error is not one line: %q", err)
	}
}

// slowLedger times out its first calls, as a hung ledger would.
type slowLedger struct {
	*fakeLedger
	hangs int
}

func (s *slowLedger) GetHost(ctx context.Context, name string) (ledger.HostRecord, error) {
	if s.hangs > 0 {
		s.hangs--
		<-ctx.Done()
		return ledger.HostRecord{}, fmt.Errorf("get host: %w", ctx.Err())
	}
	return s.fakeLedger.GetHost(ctx, name)
}

func TestRegisterRetriesAfterAttemptTimeout(t *testing.T) {
	l := &slowLedger{fakeLedger: newFakeLedger(), hangs: 2}
	r := newRegistrar(l, newFakeClock(), nil)
	r.AttemptTimeout = time.Millisecond
	got, err := r.Register(context.Background(), hostA)
	if err != nil || got.Attempts != 3 {
		t.Fatalf("attempts=%d err=%v, want 3 and nil", got.Attempts, err)
	}
}
