package hostagent

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/ledgerfence/ledgerfence/pkg/cloud"
	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
)

// fakeClock advances by every wait at once and remembers the waits.
type fakeClock struct {
	mu    sync.Mutex
	now   time.Time
	waits []time.Duration
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.waits = append(c.waits, d)
	c.now = c.now.Add(d)
	ch := make(chan time.Time, 1)
	ch <- c.now
	return ch
}

// fakeLedger keeps hosts and regulations in maps and fails the first
// failures calls with failErr.
type fakeLedger struct {
	mu       sync.Mutex
	hosts    map[string]ledger.HostRecord
	regs     map[filter.Subject]ledger.RegulationRecord
	failErr  error
	failures int
	puts     int
	gets     int
	lookups  int
	height   uint64
}

func newFakeLedger() *fakeLedger {
	return &fakeLedger{hosts: map[string]ledger.HostRecord{}, regs: map[filter.Subject]ledger.RegulationRecord{}}
}

func (l *fakeLedger) fail() error {
	if l.failures > 0 {
		l.failures--
		return l.failErr
	}
	return nil
}

func (l *fakeLedger) GetHost(ctx context.Context, name string) (ledger.HostRecord, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.gets++
	if err := l.fail(); err != nil {
		return ledger.HostRecord{}, err
	}
	rec, ok := l.hosts[name]
	if !ok {
		return ledger.HostRecord{}, ledger.Errorf(ledger.ErrNotFound, nil, "host "+name)
	}
	return rec, nil
}

func (l *fakeLedger) PutHost(ctx context.Context, h filter.Host) (ledger.HostRecord, bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.fail(); err != nil {
		return ledger.HostRecord{}, false, err
	}
	n, err := filter.NormalizeHost(h)
	if err != nil {
		return ledger.HostRecord{}, false, ledger.Errorf(ledger.ErrInvalid, err, err.Error())
	}
	if cur, ok := l.hosts[n.Name]; ok && cur.Host.Equal(n) {
		return cur, false, nil
	}
	l.puts++
	l.height++
	rec := ledger.HostRecord{Host: n, TxID: "tx" + string(rune('0'+l.puts))}
	l.hosts[n.Name] = rec
	return rec, true, nil
}

func (l *fakeLedger) putRegulation(t interface{ Fatal(...any) }, subject string, body string) {
	sub, err := filter.ParseSubject(subject)
	if err != nil {
		t.Fatal(err)
	}
	terms, err := filter.ParseTerms([]byte(body))
	rules := terms.Allow
	if err != nil {
		t.Fatal(err)
	}
	l.regs[sub] = ledger.RegulationRecord{Regulation: filter.Regulation{Subject: sub, Allow: rules, Version: 1}}
}

func (l *fakeLedger) Lookup(ctx context.Context, subjects []filter.Subject, hosts []string) (ledger.Lookup, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lookups++
	if err := l.fail(); err != nil {
		return ledger.Lookup{}, err
	}
	lk := ledger.Lookup{Height: l.height, Regulations: map[filter.Subject]ledger.RegulationRecord{}, Hosts: map[string]ledger.HostRecord{}}
	for _, s := range subjects {
		if r, ok := l.regs[s]; ok {
			lk.Regulations[s] = r
		}
	}
	for _, h := range hosts {
		if r, ok := l.hosts[h]; ok {
			lk.Hosts[h] = r
		}
	}
	return lk, nil
}

// fakeServers is a Nova that knows which servers are on which host.
type fakeServers struct {
	byHost map[string][]cloud.Server
	err    error
}

func (f *fakeServers) ServersOnHost(ctx context.Context, host string) ([]cloud.Server, error) {
	if f.err != nil {
		return nil, f.err
	}
	return slices.Clone(f.byHost[host]), nil
}

type fakePublisher struct{ events []Violation }

func (p *fakePublisher) PublishViolation(v Violation) bool {
	p.events = append(p.events, v)
	return true
}
