package cache

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap/zaptest"

	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
)

// fakeSource is a hand-written ledger: records in maps, a height, an event
// channel the test feeds, and knobs to fail or hold lookups.
type fakeSource struct {
	mu      sync.Mutex
	height  uint64
	hosts   map[string]filter.Host
	regs    map[filter.Subject]filter.Regulation
	lookups [][]string // the keys of every Lookup call
	watches []uint64   // the after of every Watch call
	lookErr error
	// hold, when set, makes Lookup wait for it to close; entered is
	// signalled first.
	hold    chan struct{}
	entered chan struct{}
	// deaf makes a held Lookup ignore its context, as a backend stuck in
	// a storage call would.
	deaf    bool
	events  chan ledger.Event
	watchOK chan struct{} // signalled on every successful Watch
}

func newFake() *fakeSource {
	return &fakeSource{
		hosts:   map[string]filter.Host{},
		regs:    map[filter.Subject]filter.Regulation{},
		events:  make(chan ledger.Event, 16),
		watchOK: make(chan struct{}, 16),
	}
}

func (f *fakeSource) ListHosts(_ context.Context, after string, limit int) (ledger.HostPage, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var names []string
	for n := range f.hosts {
		if n > after {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	var p ledger.HostPage
	for i, n := range names {
		if i == limit {
			p.Next = names[i-1]
			break
		}
		p.Hosts = append(p.Hosts, ledger.HostRecord{Host: f.hosts[n]})
	}
	return p, nil
}

func (f *fakeSource) Lookup(ctx context.Context, subjects []filter.Subject, hosts []string) (ledger.Lookup, error) {
	f.mu.Lock()
	var keys []string
	for _, s := range subjects {
		keys = append(keys, string(s))
	}
	keys = append(keys, hosts...)
	f.lookups = append(f.lookups, keys)
	hold, entered, err, deaf := f.hold, f.entered, f.lookErr, f.deaf
	f.mu.Unlock()
	if entered != nil {
		entered <- struct{}{}
	}
	if hold != nil && deaf {
		<-hold
	} else if hold != nil {
		select {
		case <-hold:
		case <-ctx.Done():
			return ledger.Lookup{}, ctx.Err()
		}
	}
	if err != nil {
		return ledger.Lookup{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	lk := ledger.Lookup{Height: f.height, Regulations: map[filter.Subject]ledger.RegulationRecord{}, Hosts: map[string]ledger.HostRecord{}}
	for _, s := range subjects {
		if r, ok := f.regs[s]; ok {
			lk.Regulations[s] = ledger.RegulationRecord{Regulation: r}
		}
	}
	for _, h := range hosts {
		if r, ok := f.hosts[h]; ok {
			lk.Hosts[h] = ledger.HostRecord{Host: r}
		}
	}
	return lk, nil
}

func (f *fakeSource) Height(context.Context) (uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.height, nil
}

func (f *fakeSource) Watch(_ context.Context, after uint64) (<-chan ledger.Event, error) {
	f.mu.Lock()
	f.watches = append(f.watches, after)
	ch := f.events
	f.mu.Unlock()
	f.watchOK <- struct{}{}
	return ch, nil
}

func (f *fakeSource) lookupCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.lookups)
}

var (
	vm1  = filter.VMSubject("6f1c0d3e-1111-4a2b-9c3d-000000000001")
	prj1 = filter.ProjectSubject("p1")
)

func hostIn(name, country string, orgs ...string) filter.Host {
	return filter.Host{Name: name, Country: country, Organizations: orgs}
}

func table4Fake() *fakeSource {
	f := newFake()
	f.height = 6
	for _, h := range []filter.Host{
		hostIn("hm1", "JP", "CompanyA", "CompanyB"),
		hostIn("hm2", "JP", "CompanyA"),
		hostIn("hm3", "DE", "CompanyA"),
		hostIn("hm4", "GB", "CompanyC"),
		hostIn("hm5", "GB", "CompanyB"),
	} {
		f.hosts[h.Name] = h
	}
	f.regs[vm1] = filter.Regulation{Subject: vm1, Allow: []filter.Rule{{Country: "JP", Organization: "CompanyA"}}}
	return f
}

// started returns a cache over f, filled, with Run going until the test ends.
func started(t *testing.T, f *fakeSource, reg *prometheus.Registry) *Cache {
	t.Helper()
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	c, err := New(f, zaptest.NewLogger(t), reg, Config{PageSize: 2, MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	<-f.watchOK
	waitFor(t, "cache warm", c.Ready)
	return c
}

// waitFor polls cond until it holds, failing the test after a long deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func query(subjects []filter.Subject, hosts ...string) *Query {
	q := &Query{Subjects: subjects}
	for _, h := range hosts {
		q.Candidates = append(q.Candidates, filter.Candidate{Name: h})
	}
	return q
}

func registered(q *Query) []string {
	var out []string
	for _, c := range q.Candidates {
		if c.Host != nil {
			out = append(out, c.Name)
		}
	}
	return out
}

func TestFillThenOneLookupPerMiss(t *testing.T) {
	f := table4Fake()
	reg := prometheus.NewRegistry()
	c := started(t, f, reg)
	waitFor(t, "stream up", func() bool { return c.streamUp.Load() })

	q := query([]filter.Subject{vm1, prj1}, "hm1", "hm2", "hm3", "hm4", "hm5", "ghost")
	if err := c.Resolve(context.Background(), q); err != nil {
		t.Fatal(err)
	}
	if !q.Missed {
		t.Error("first resolve: Missed = false, want true")
	}
	// Listed hosts are cached, and while the stream is up an unlisted host
	// has no record: the subjects alone are one lookup.
	if got, want := f.lookups, [][]string{{string(vm1), string(prj1)}}; !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("lookups = %v, want %v", got, want)
	}
	if got, want := registered(q), []string{"hm1", "hm2", "hm3", "hm4", "hm5"}; !slices.Equal(got, want) {
		t.Errorf("registered = %v, want %v", got, want)
	}
	if len(q.Regulations) != 1 || q.Regulations[0].Subject != vm1 {
		t.Errorf("regulations = %+v, want vm1's", q.Regulations)
	}

	// Everything, negative entries included, now comes from the cache.
	q2 := query([]filter.Subject{vm1, prj1}, "hm1", "ghost")
	if err := c.Resolve(context.Background(), q2); err != nil {
		t.Fatal(err)
	}
	if q2.Missed || f.lookupCount() != 1 {
		t.Errorf("second resolve: Missed = %v, lookups = %d; want a hit", q2.Missed, f.lookupCount())
	}
	if got := registered(q2); !slices.Equal(got, []string{"hm1"}) {
		t.Errorf("registered = %v, want [hm1]", got)
	}
	if err := testutil.CollectAndCompare(reg, strings.NewReader(`
# HELP ledgerfence_cache_entries Entries in the cache by kind (host, regulation) and state (present: a record; absent: known to have none).
# TYPE ledgerfence_cache_entries gauge
ledgerfence_cache_entries{kind="host",state="absent"} 0
ledgerfence_cache_entries{kind="host",state="present"} 5
ledgerfence_cache_entries{kind="regulation",state="absent"} 1
ledgerfence_cache_entries{kind="regulation",state="present"} 1
# HELP ledgerfence_cache_requests_total Cache resolutions by result: hit (no ledger call), miss (one batched ledger lookup) or stale (the cache is not trusted: one lookup of everything).
# TYPE ledgerfence_cache_requests_total counter
ledgerfence_cache_requests_total{result="hit"} 1
ledgerfence_cache_requests_total{result="miss"} 1
ledgerfence_cache_requests_total{result="stale"} 0
`), "ledgerfence_cache_entries", "ledgerfence_cache_requests_total"); err != nil {
		t.Error(err)
	}
}

func TestUnregulatedNeedsNoHosts(t *testing.T) {
	f := table4Fake()
	c := started(t, f, nil)
	other := filter.VMSubject("6f1c0d3e-1111-4a2b-9c3d-000000000002")
	if err := c.Resolve(context.Background(), query([]filter.Subject{other})); err != nil {
		t.Fatal(err)
	}
	// Known to be unregulated: unknown hosts do not matter and cost no lookup.
	q := query([]filter.Subject{other}, "new1", "new2")
	if err := c.Resolve(context.Background(), q); err != nil {
		t.Fatal(err)
	}
	if q.Missed || f.lookupCount() != 1 || len(q.Regulations) != 0 {
		t.Errorf("Missed = %v, lookups = %d, regulations = %v; want a hit, 1 lookup, none", q.Missed, f.lookupCount(), q.Regulations)
	}
}

func TestEventsKeepCacheCurrent(t *testing.T) {
	f := table4Fake()
	c := started(t, f, nil)
	if err := c.Resolve(context.Background(), query([]filter.Subject{vm1})); err != nil {
		t.Fatal(err)
	}
	gb := filter.Regulation{Subject: vm1, Allow: []filter.Rule{{Country: "GB", Organization: "*"}}}
	f.events <- ledger.Event{Kind: ledger.KindRegulation, Key: string(vm1), Op: ledger.OpPut, Block: 7,
		Regulation: &ledger.RegulationRecord{Regulation: gb}, Time: time.Now()}
	f.events <- ledger.Event{Kind: ledger.KindHost, Key: "hm3", Op: ledger.OpPut, Block: 8,
		Host: &ledger.HostRecord{Host: hostIn("hm3", "GB", "CompanyZ")}}
	waitFor(t, "events applied", func() bool { return c.Height() == 8 })

	q := query([]filter.Subject{vm1}, "hm3")
	if err := c.Resolve(context.Background(), q); err != nil {
		t.Fatal(err)
	}
	if q.Missed {
		t.Error("resolve after events missed the cache")
	}
	if len(q.Regulations) != 1 || q.Regulations[0].Allow[0].Country != "GB" {
		t.Errorf("regulation = %+v, want the event's", q.Regulations)
	}
	if h := q.Candidates[0].Host; h == nil || h.Country != "GB" {
		t.Errorf("hm3 = %+v, want the event's record", h)
	}

	f.events <- ledger.Event{Kind: ledger.KindRegulation, Key: string(vm1), Op: ledger.OpDelete, Block: 9}
	waitFor(t, "delete applied", func() bool { return c.Height() == 9 })
	q = query([]filter.Subject{vm1}, "hm3")
	if err := c.Resolve(context.Background(), q); err != nil {
		t.Fatal(err)
	}
	if q.Missed || len(q.Regulations) != 0 {
		t.Errorf("after delete: Missed = %v, regulations = %v; want a hit with none", q.Missed, q.Regulations)
	}
}

func TestLookupOlderThanEventDoesNotWin(t *testing.T) {
	f := table4Fake()
	c := started(t, f, nil)
	f.mu.Lock()
	f.hold = make(chan struct{})
	f.entered = make(chan struct{}, 1)
	f.mu.Unlock()

	errc := make(chan error, 1)
	go func() { errc <- c.Resolve(context.Background(), query([]filter.Subject{vm1})) }()
	<-f.entered
	// While the lookup (as of height 6) is in flight, the regulation is
	// deleted at block 7.
	f.events <- ledger.Event{Kind: ledger.KindRegulation, Key: string(vm1), Op: ledger.OpDelete, Block: 7}
	waitFor(t, "event applied", func() bool { return c.Height() == 7 })
	close(f.hold)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	q := query([]filter.Subject{vm1})
	if err := c.Resolve(context.Background(), q); err != nil {
		t.Fatal(err)
	}
	if len(q.Regulations) != 0 {
		t.Errorf("regulations = %+v: the lookup's older answer overwrote the delete", q.Regulations)
	}
}

func TestConcurrentMissesShareOneLookup(t *testing.T) {
	f := table4Fake()
	c := started(t, f, nil)
	joined := make(chan struct{}, 8)
	c.joined = func() { joined <- struct{}{} }
	f.mu.Lock()
	f.hold = make(chan struct{})
	f.entered = make(chan struct{}, 8)
	f.mu.Unlock()

	const n = 5
	errc := make(chan error, n)
	resolve := func() { errc <- c.Resolve(context.Background(), query([]filter.Subject{vm1, prj1}, "hm1", "ghost")) }
	go resolve()
	<-f.entered
	for range n - 1 {
		go resolve()
	}
	for range n - 1 {
		<-joined
	}
	close(f.hold)
	for range n {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	if got := f.lookupCount(); got != 1 {
		t.Errorf("lookups = %d, want 1 shared by %d requests", got, n)
	}
}

func TestUnavailableLedger(t *testing.T) {
	f := table4Fake()
	reg := prometheus.NewRegistry()
	c := started(t, f, reg)
	if err := c.Resolve(context.Background(), query([]filter.Subject{vm1, prj1}, "hm1")); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.lookErr = ledger.Errorf(ledger.ErrUnavailable, errors.New("connection refused"), "peer down")
	f.mu.Unlock()

	// Cached: still served.
	q := query([]filter.Subject{vm1, prj1}, "hm1")
	if err := c.Resolve(context.Background(), q); err != nil {
		t.Fatalf("cached VM while the ledger is down: %v", err)
	}
	if len(q.Regulations) != 1 || q.Candidates[0].Host == nil {
		t.Errorf("cached answer lost: %+v", q)
	}
	// Not cached: an error that says unavailable.
	other := filter.VMSubject("6f1c0d3e-1111-4a2b-9c3d-000000000003")
	err := c.Resolve(context.Background(), query([]filter.Subject{other}, "hm1"))
	if !errors.Is(err, ledger.ErrUnavailable) {
		t.Errorf("unknown VM while the ledger is down: err = %v, want ErrUnavailable", err)
	}
	// A failure of another kind is reported as unavailable too.
	f.mu.Lock()
	f.lookErr = errors.New("boom")
	f.mu.Unlock()
	err = c.Resolve(context.Background(), query([]filter.Subject{other}))
	if !errors.Is(err, ledger.ErrUnavailable) {
		t.Errorf("err = %v, want ErrUnavailable", err)
	}
	if got := testutil.ToFloat64(c.m.up); got != 0 {
		t.Errorf("ledgerfence_ledger_up = %v, want 0", got)
	}
	if got := testutil.ToFloat64(c.m.queryErrors[callLookup]); got != 2 {
		t.Errorf("lookup errors = %v, want 2", got)
	}

	// A request that gives up is not the ledger's fault.
	f.mu.Lock()
	f.lookErr = nil
	f.hold = make(chan struct{})
	f.entered = make(chan struct{}, 1)
	f.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- c.Resolve(ctx, query([]filter.Subject{other})) }()
	<-f.entered
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled request: err = %v, want context.Canceled", err)
	}
	if got := testutil.ToFloat64(c.m.queryErrors[callLookup]); got != 2 {
		t.Errorf("lookup errors after a cancelled request = %v, want still 2", got)
	}
}

func TestResumeAfterBreak(t *testing.T) {
	f := table4Fake()
	reg := prometheus.NewRegistry()
	c := started(t, f, reg)
	f.events <- ledger.Event{Kind: ledger.KindHost, Key: "hm9", Op: ledger.OpPut, Block: 9,
		Host: &ledger.HostRecord{Host: hostIn("hm9", "JP", "CompanyA")}}
	waitFor(t, "event applied", func() bool { return c.Height() == 9 })
	f.mu.Lock()
	f.height = 9
	old := f.events
	f.events = make(chan ledger.Event, 16)
	f.mu.Unlock()
	close(old)
	<-f.watchOK
	f.mu.Lock()
	watches := slices.Clone(f.watches)
	f.mu.Unlock()
	if want := []uint64{6, 9}; !slices.Equal(watches, want) {
		t.Errorf("Watch calls after = %v, want %v (resume after the last block)", watches, want)
	}
	waitFor(t, "stream up", func() bool { return testutil.ToFloat64(c.m.streamUp) == 1 })
	if got := testutil.ToFloat64(c.m.reconnects); got != 1 {
		t.Errorf("reconnects = %v, want 1", got)
	}
	// Nothing cached was lost.
	q := query([]filter.Subject{}, "hm9")
	q.Subjects = []filter.Subject{vm1}
	if err := c.Resolve(context.Background(), q); err != nil {
		t.Fatal(err)
	}
	if q.Candidates[0].Host == nil {
		t.Error("hm9 lost across the reconnect")
	}
}

func TestRefillWhenLedgerReplaced(t *testing.T) {
	f := table4Fake()
	c := started(t, f, nil)
	f.mu.Lock()
	f.height = 2
	delete(f.hosts, "hm5")
	old := f.events
	f.events = make(chan ledger.Event, 16)
	f.mu.Unlock()
	close(old)
	<-f.watchOK
	f.mu.Lock()
	watches := slices.Clone(f.watches)
	f.mu.Unlock()
	if want := []uint64{6, 2}; !slices.Equal(watches, want) {
		t.Errorf("Watch calls after = %v, want %v (refill at the new height)", watches, want)
	}
	q := query([]filter.Subject{vm1}, "hm5")
	waitFor(t, "refilled", func() bool {
		return c.Resolve(context.Background(), q) == nil && q.Candidates[0].Host == nil
	})
}

func TestRegulationBound(t *testing.T) {
	f := newFake()
	c, err := New(f, zaptest.NewLogger(t), prometheus.NewRegistry(), Config{MaxRegulations: 10})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 30 {
		s := filter.ProjectSubject("p" + strings.Repeat("x", i))
		if err := c.Resolve(context.Background(), query([]filter.Subject{s})); err != nil {
			t.Fatal(err)
		}
		if n := len(c.regs); n > 10 {
			t.Fatalf("after %d subjects: %d entries, want <= 10", i+1, n)
		}
	}
	if testutil.ToFloat64(c.m.evictions) == 0 {
		t.Error("no eviction counted")
	}
}

// A lookup whose backend does not honour its context still ends the
// resolution at the context's deadline.
func TestLookupKeepsTheDeadline(t *testing.T) {
	f := table4Fake()
	c := started(t, f, nil)
	f.mu.Lock()
	f.hold = make(chan struct{})
	f.deaf = true
	f.mu.Unlock()
	defer close(f.hold)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- c.Resolve(ctx, query([]filter.Subject{vm1}, "hm1")) }()
	select {
	case err := <-errc:
		if !errors.Is(err, ledger.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("err = %v, want ErrUnavailable and the deadline", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Resolve outlived its deadline by 10 s with a backend that ignores it")
	}
}

// Past MaxStaleness without an event stream, no entry is trusted: every
// resolution asks the ledger, sees what changed, and fails when the ledger
// does not answer, cached or not.
func TestStaleCacheIsNotTrusted(t *testing.T) {
	f := table4Fake()
	var now atomic.Int64
	now.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	c, err := New(f, zaptest.NewLogger(t), prometheus.NewRegistry(), Config{
		MaxStaleness: time.Minute, MinBackoff: time.Hour, MaxBackoff: time.Hour, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- c.Run(ctx) }()
	defer func() { cancel(); <-done }()
	<-f.watchOK
	waitFor(t, "cache warm", c.Ready)

	q := query([]filter.Subject{vm1}, "hm1")
	if err := c.Resolve(context.Background(), q); err != nil {
		t.Fatal(err)
	}
	lookups := f.lookupCount()
	// The stream breaks and stays down (the reconnect waits an hour).
	close(f.events)
	waitFor(t, "stream down", func() bool { return testutil.ToFloat64(c.m.streamUp) == 0 })
	now.Add(int64(30 * time.Second))
	if c.Stale() {
		t.Fatal("stale 30 s after the break, want trusted for a minute")
	}
	if err := c.Resolve(context.Background(), q); err != nil || f.lookupCount() != lookups {
		t.Fatalf("within the bound: err %v, %d lookups, want a hit", err, f.lookupCount()-lookups)
	}
	now.Add(int64(31 * time.Second))
	if !c.Stale() {
		t.Fatal("not stale 61 s after the break")
	}
	// What changed meanwhile is seen: hm1 moved to Germany.
	f.mu.Lock()
	f.hosts["hm1"] = hostIn("hm1", "DE", "CompanyA")
	f.mu.Unlock()
	if err := c.Resolve(context.Background(), q); err != nil {
		t.Fatal(err)
	}
	if f.lookupCount() != lookups+1 || q.Candidates[0].Host == nil || q.Candidates[0].Host.Country != "DE" || len(q.Regulations) != 1 {
		t.Errorf("stale resolve: %d lookups, host %+v, regulations %d; want one lookup seeing DE", f.lookupCount()-lookups, q.Candidates[0].Host, len(q.Regulations))
	}
	// And a ledger that does not answer fails the resolution, cached or not.
	f.mu.Lock()
	f.lookErr = ledger.Errorf(ledger.ErrUnavailable, nil, "peer down")
	f.mu.Unlock()
	if err := c.Resolve(context.Background(), q); !errors.Is(err, ledger.ErrUnavailable) {
		t.Errorf("stale, ledger down: err = %v, want ErrUnavailable", err)
	}
	if got := testutil.ToFloat64(c.m.requests.stale); got != 2 {
		t.Errorf("stale resolutions counted %v, want 2", got)
	}
}

// Unknown hosts are remembered up to MaxAbsentHosts; known hosts are never
// dropped for them, and a request with more unknown hosts than the bound is
// still answered.
func TestAbsentHostsBound(t *testing.T) {
	f := table4Fake()
	reg := prometheus.NewRegistry()
	c, err := New(f, zaptest.NewLogger(t), reg, Config{MaxAbsentHosts: 100})
	if err != nil {
		t.Fatal(err)
	}
	for round := range 3 {
		names := []string{"hm1"}
		for i := range 150 {
			names = append(names, fmt.Sprintf("unknown-%d-%d", round, i))
		}
		q := query([]filter.Subject{vm1}, names...)
		if err := c.Resolve(context.Background(), q); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if got := registered(q); !slices.Equal(got, []string{"hm1"}) {
			t.Errorf("round %d: registered %v, want [hm1]", round, got)
		}
		if n := c.sizes()[hostsAbsent]; n > 150 {
			t.Errorf("round %d: %d absent entries, want <= 150 (the bound, or one request)", round, n)
		}
		if n := c.sizes()[hostsPresent]; n != 1 {
			t.Errorf("round %d: %d present entries, want hm1 kept", round, n)
		}
	}
	if testutil.ToFloat64(c.m.absentDropped) != 2 {
		t.Errorf("drops counted %v, want 2", testutil.ToFloat64(c.m.absentDropped))
	}
}

// While the event stream is up, a host the cache has no entry for has no
// record, without a lookup; a host invalidated after a write is looked up.
// (Without a stream, unlisted hosts are looked up: TestAbsentHostsBound.)
func TestUnlistedHostsWhileTheStreamIsUp(t *testing.T) {
	f := table4Fake()
	c := started(t, f, nil)
	waitFor(t, "stream up", func() bool { return c.streamUp.Load() })
	q := query([]filter.Subject{vm1}, "hm1", "ghost")
	if err := c.Resolve(context.Background(), q); err != nil {
		t.Fatal(err)
	}
	n := f.lookupCount()
	if err := c.Resolve(context.Background(), query([]filter.Subject{vm1}, "hm1", "ghost-2")); err != nil || f.lookupCount() != n {
		t.Errorf("an unlisted host while the stream is up: err %v, %d lookups, want none", err, f.lookupCount()-n)
	}
	// A write made through the API: hm1 is read again.
	f.mu.Lock()
	f.hosts["hm1"] = hostIn("hm1", "DE", "CompanyA")
	f.mu.Unlock()
	c.Invalidate(ledger.KindHost, "hm1")
	q = query([]filter.Subject{vm1}, "hm1")
	if err := c.Resolve(context.Background(), q); err != nil {
		t.Fatal(err)
	}
	if f.lookupCount() != n+1 || q.Candidates[0].Host == nil || q.Candidates[0].Host.Country != "DE" {
		t.Errorf("invalidated host: %d lookups, host %+v; want one lookup reading DE", f.lookupCount()-n, q.Candidates[0].Host)
	}
}
