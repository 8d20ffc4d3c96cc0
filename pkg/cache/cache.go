// Package cache keeps the hosts and regulations of a ledger in memory, so
// that filterd answers Nova's webhook without a ledger round trip.
//
// The cache is filled at start (every host, page by page) and kept current by
// the ledger's event stream, which it resumes after a break from the block of
// the last event it applied, reconnecting with backoff. While that stream is
// up, the cache holds every host, and a host it has no entry for is one the
// ledger has no record of: no lookup, no entry, so that requests naming
// unknown hosts cost no memory. Regulations cannot be
// listed, so a subject is learnt on its first use: a miss is one batched
// ledger.Lookup for every missing subject and host of a request, and
// concurrent requests that miss the same keys share that one lookup. The
// cache keeps negative entries too ("this subject has no regulation", "this
// host has no record"); events replace them like any other entry.
//
// Every entry carries the ledger height it was read at, so that a lookup
// answered before a change can never overwrite the change's event.
//
// When the ledger cannot be reached, cached entries keep serving for at most
// MaxStaleness after the event stream broke; past it no entry is trusted and
// every resolution asks the ledger itself. A request that needs a missing
// entry, or any entry once the cache is stale, gets an error matching
// ledger.ErrUnavailable when the ledger does not answer before the request's
// deadline, and its caller fails closed.
//
// Negative host entries are bounded (MaxAbsentHosts), so that requests naming
// many unknown hosts cannot grow the cache without bound.
package cache

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
)

// Source is what the cache reads from a ledger; every ledger.Ledger is one.
type Source interface {
	ListHosts(ctx context.Context, after string, limit int) (ledger.HostPage, error)
	Lookup(ctx context.Context, subjects []filter.Subject, hosts []string) (ledger.Lookup, error)
	Height(ctx context.Context) (uint64, error)
	Watch(ctx context.Context, after uint64) (<-chan ledger.Event, error)
}

// registrySource is a Source that reads the registry (every ledger.Ledger);
// without it, the cache learns the registry's setting from lookups and
// events only.
type registrySource interface {
	Registry(ctx context.Context) (ledger.RegistryRecord, error)
}

// Defaults of Config.
const (
	DefaultPageSize = 500
	// DefaultMaxRegulations bounds the regulation entries, positive and
	// negative (about 200 bytes each).
	DefaultMaxRegulations = 200_000
	// DefaultMaxAbsentHosts bounds the "no such host" entries: ten times
	// the hosts of a large cloud, about 10 MiB.
	DefaultMaxAbsentHosts = 100_000
	DefaultMinBackoff     = 200 * time.Millisecond
	DefaultMaxBackoff     = 30 * time.Second
	// DefaultMaxStaleness is how long cached entries are trusted after the
	// event stream broke: two of the remote stream's heartbeats, and the
	// time the reconnect backoff needs to reach its 30 s ceiling once.
	// Past it, decisions cost a ledger lookup each, and fail closed if the
	// ledger does not answer.
	DefaultMaxStaleness = 30 * time.Second
)

// Config tunes a Cache. Zero values take the defaults.
type Config struct {
	// PageSize is the number of hosts per ListHosts call when filling.
	PageSize int
	// MaxRegulations bounds the regulation entries kept, positive and
	// negative; beyond it, arbitrary entries are dropped (and looked up
	// again when next needed).
	MaxRegulations int
	// MaxAbsentHosts bounds the entries of hosts the ledger has no record
	// of; beyond it, the oldest are dropped (and looked up again when next
	// needed).
	MaxAbsentHosts int
	// MaxStaleness is how long after the event stream broke the cache's
	// entries are still trusted (0: DefaultMaxStaleness).
	MaxStaleness time.Duration
	// MinBackoff and MaxBackoff bound the wait between reconnects.
	MinBackoff, MaxBackoff time.Duration
	// OnEvent, when set, is called with every ledger event the cache
	// applies, in order (for publishing; it must not block).
	OnEvent func(ledger.Event)
	// Clock is time.Now by default.
	Clock func() time.Time
}

func (c *Config) defaults() error {
	if c.PageSize < 0 || c.MaxRegulations < 0 || c.MaxAbsentHosts < 0 || c.MaxStaleness < 0 || c.MinBackoff < 0 || c.MaxBackoff < 0 {
		return errors.New("cache: negative config value")
	}
	if c.PageSize == 0 {
		c.PageSize = DefaultPageSize
	}
	if c.MaxRegulations == 0 {
		c.MaxRegulations = DefaultMaxRegulations
	}
	if c.MaxAbsentHosts == 0 {
		c.MaxAbsentHosts = DefaultMaxAbsentHosts
	}
	if c.MaxStaleness == 0 {
		c.MaxStaleness = DefaultMaxStaleness
	}
	if c.MinBackoff == 0 {
		c.MinBackoff = DefaultMinBackoff
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = DefaultMaxBackoff
	}
	if c.MaxBackoff < c.MinBackoff {
		c.MaxBackoff = c.MinBackoff
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	return nil
}

// hostEntry is a cached host; host is nil when the ledger has no record.
// block is the ledger height the entry was read at. An invalid entry is one
// to read again from the ledger (after a write made through the API).
type hostEntry struct {
	host     *filter.Host
	block    uint64
	invalid  bool
	attested bool // the record's facts are attested (ledger.HostRecord.Attested)
}

// regEntry is a cached regulation; reg is nil when the subject has none.
type regEntry struct {
	reg   *filter.Regulation
	block uint64
}

// flight is a lookup in progress; its keys are filled when done is closed.
type flight struct {
	done chan struct{}
	err  error
}

// Cache is the in-memory view of a ledger. It is safe for concurrent use.
type Cache struct {
	src Source
	log *zap.Logger
	cfg Config
	m   *metrics

	mu          sync.RWMutex
	hosts       map[string]hostEntry
	regs        map[filter.Subject]regEntry
	hostFlights map[string]*flight
	regFlights  map[filter.Subject]*flight
	height      uint64 // the highest height of any entry
	counts      [5]int // hosts present/absent, regulations present/absent, hosts present but unattested

	// requireAttested is the registry's cloud-wide setting, as of
	// registryBlock.
	requireAttested bool
	registryBlock   uint64

	// streamBlock is the block of the last event applied (or the height the
	// stream was opened at): the point to resume from. Only Run writes it.
	streamBlock uint64

	warm       atomic.Bool
	streamUp   atomic.Bool
	staleSince atomic.Int64 // unix nanoseconds since the stream has been down

	// joined, when set (by tests), is called when a request waits for
	// another request's lookup.
	joined func()
}

// New returns an empty cache over src; Run fills it and keeps it current.
func New(src Source, log *zap.Logger, reg prometheus.Registerer, cfg Config) (*Cache, error) {
	if src == nil {
		return nil, errors.New("cache: nil source")
	}
	if log == nil {
		log = zap.NewNop()
	}
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	c := &Cache{
		src:         src,
		log:         log,
		cfg:         cfg,
		hosts:       make(map[string]hostEntry),
		regs:        make(map[filter.Subject]regEntry),
		hostFlights: make(map[string]*flight),
		regFlights:  make(map[filter.Subject]*flight),
	}
	c.staleSince.Store(cfg.Clock().UnixNano())
	m, err := newMetrics(reg, c)
	if err != nil {
		return nil, err
	}
	c.m = m
	return c, nil
}

// Ready reports whether the cache has been filled and has heard from the
// ledger at least once.
func (c *Cache) Ready() bool { return c.warm.Load() }

// Stale reports whether the event stream has been down for longer than
// MaxStaleness, so that no entry is trusted.
func (c *Cache) Stale() bool { return c.age() > c.cfg.MaxStaleness.Seconds() }

// Height returns the highest ledger height the cache has seen.
func (c *Cache) Height() uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.height
}

// Query is one resolution: the regulations of some subjects and the records
// of some candidate hosts. The caller owns it and may reuse it.
type Query struct {
	// Subjects whose regulations apply (a VM's and its project's).
	Subjects []filter.Subject
	// Candidates: Name is input; Host is set by Resolve (nil for a host
	// without a record). Hosts are only resolved when a regulation applies,
	// since an unregulated VM's decision does not depend on them.
	Candidates []filter.Candidate
	// Regulations is set by Resolve: the regulations found, in the order of
	// Subjects.
	Regulations []filter.Regulation
	// Height is set by Resolve: the ledger height of the cache's view.
	Height uint64
	// Missed is set by Resolve: whether the ledger had to be asked.
	Missed bool
	// RequireAttested is set by Resolve: the registry's cloud-wide setting.
	RequireAttested bool
}

// maxAttempts bounds how often Resolve retries after waiting for another
// request's lookup.
const maxAttempts = 4

// Resolve fills q from the cache, asking the ledger once for whatever is
// missing. It honours ctx (the request's), which reaches the ledger query.
// An error means the cache cannot answer for q: it matches
// ledger.ErrUnavailable, or is ctx's error.
func (c *Cache) Resolve(ctx context.Context, q *Query) error {
	q.Missed = false
	if c.Stale() {
		c.m.requests.stale.Inc()
		q.Missed = true
		return c.direct(ctx, q)
	}
	for attempt := 0; attempt < maxAttempts; attempt++ {
		if c.fromCache(q) {
			if attempt == 0 {
				c.m.requests.hit.Inc()
			}
			return nil
		}
		if attempt == 0 {
			c.m.requests.miss.Inc()
		}
		q.Missed = true
		if err := c.fetch(ctx, q); err != nil {
			return err
		}
	}
	return ledger.Errorf(ledger.ErrUnavailable, nil, "cache: entries kept disappearing")
}

// fromCache fills q from the cache and reports whether it had everything.
func (c *Cache) fromCache(q *Query) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	q.Regulations = q.Regulations[:0]
	q.Height = c.height
	q.RequireAttested = c.requireAttested
	complete := true
	for _, s := range q.Subjects {
		e, ok := c.regs[s]
		if !ok {
			complete = false
			continue
		}
		if e.reg != nil {
			q.Regulations = append(q.Regulations, *e.reg)
		}
	}
	if complete && len(q.Regulations) == 0 {
		return true
	}
	listed := c.streamUp.Load()
	for i := range q.Candidates {
		e, ok := c.hosts[q.Candidates[i].Name]
		q.Candidates[i].Host, q.Candidates[i].Attested = e.host, e.attested
		if ok && e.invalid || !ok && !listed {
			complete = false
		}
	}
	return complete
}

// needsLookup reports whether the ledger must be asked for host name: its
// entry was invalidated, or it has none and the cache does not hold every
// host (the event stream is down); c.mu is held.
func (c *Cache) needsLookup(name string) bool {
	e, ok := c.hosts[name]
	return ok && e.invalid || !ok && !c.streamUp.Load()
}

// direct fills q from one ledger lookup of all it asks, without the cache.
func (c *Cache) direct(ctx context.Context, q *Query) error {
	hosts := make([]string, len(q.Candidates))
	for i := range q.Candidates {
		hosts[i] = q.Candidates[i].Name
	}
	lk, err := c.lookup(ctx, q.Subjects, hosts)
	if err != nil {
		return err
	}
	q.Regulations = q.Regulations[:0]
	for _, s := range q.Subjects {
		if rec, ok := lk.Regulations[s]; ok {
			q.Regulations = append(q.Regulations, rec.Regulation)
		}
	}
	for i := range q.Candidates {
		q.Candidates[i].Host, q.Candidates[i].Attested = nil, false
		if rec, ok := lk.Hosts[q.Candidates[i].Name]; ok {
			h := rec.Host
			q.Candidates[i].Host, q.Candidates[i].Attested = &h, rec.Attested()
		}
	}
	q.Height = lk.Height
	q.RequireAttested = lk.RequireAttested
	return nil
}

// fetch looks up what q misses, or waits for the lookups of other requests
// that already ask for it.
func (c *Cache) fetch(ctx context.Context, q *Query) error {
	var (
		subjects []filter.Subject
		hosts    []string
		waits    []*flight
		mine     *flight
	)
	join := func(f *flight) {
		for _, w := range waits {
			if w == f {
				return
			}
		}
		waits = append(waits, f)
	}
	c.mu.Lock()
	for _, s := range q.Subjects {
		if _, ok := c.regs[s]; ok {
			continue
		}
		if f, ok := c.regFlights[s]; ok {
			join(f)
			continue
		}
		if mine == nil {
			mine = &flight{done: make(chan struct{})}
		}
		c.regFlights[s] = mine
		subjects = append(subjects, s)
	}
	for i := range q.Candidates {
		name := q.Candidates[i].Name
		if !c.needsLookup(name) {
			continue
		}
		if f, ok := c.hostFlights[name]; ok {
			join(f)
			continue
		}
		if mine == nil {
			mine = &flight{done: make(chan struct{})}
		}
		c.hostFlights[name] = mine
		hosts = append(hosts, name)
	}
	c.mu.Unlock()

	if mine != nil {
		var lk ledger.Lookup
		err := ctx.Err()
		if err == nil {
			lk, err = c.lookup(ctx, subjects, hosts)
		}
		c.mu.Lock()
		if err == nil {
			c.storeLookup(lk, subjects, hosts)
		}
		for _, s := range subjects {
			delete(c.regFlights, s)
		}
		for _, h := range hosts {
			delete(c.hostFlights, h)
		}
		c.mu.Unlock()
		mine.err = err
		close(mine.done)
		if err != nil {
			return err
		}
	}
	if len(waits) > 0 && c.joined != nil {
		c.joined()
	}
	for _, f := range waits {
		select {
		case <-f.done:
		case <-ctx.Done():
			return fmt.Errorf("cache: waiting for a lookup: %w", ctx.Err())
		}
	}
	return nil
}

// lookup asks the ledger, timed and counted. It returns when ctx ends even
// if the ledger has not answered (a backend may be slow to notice), so
// that a decision never outlasts its deadline.
func (c *Cache) lookup(ctx context.Context, subjects []filter.Subject, hosts []string) (ledger.Lookup, error) {
	start := c.cfg.Clock()
	type answer struct {
		lk  ledger.Lookup
		err error
	}
	done := make(chan answer, 1)
	go func() {
		lk, err := c.src.Lookup(ctx, subjects, hosts)
		done <- answer{lk, err}
	}()
	var a answer
	select {
	case a = <-done:
	case <-ctx.Done():
		a.err = fmt.Errorf("lookup did not answer before the deadline: %w", ctx.Err())
	}
	lk, err := a.lk, a.err
	c.observe(ctx, callLookup, start, err)
	if err != nil {
		c.log.Warn("ledger lookup failed", zap.Int("subjects", len(subjects)), zap.Int("hosts", len(hosts)), zap.Error(err))
		return lk, unavailable("lookup", err)
	}
	return lk, nil
}

// unavailable wraps err so that it matches ledger.ErrUnavailable, keeping a
// context error visible to errors.Is.
func unavailable(what string, err error) error {
	if errors.Is(err, ledger.ErrUnavailable) {
		return fmt.Errorf("cache: %s: %w", what, err)
	}
	return ledger.Errorf(ledger.ErrUnavailable, err, "cache: "+what+" failed")
}

// observe records a ledger call's duration and the ledger's reachability. A
// call ended by its caller's context says nothing about the ledger.
func (c *Cache) observe(ctx context.Context, call int, start time.Time, err error) {
	c.m.query[call].Observe(c.cfg.Clock().Sub(start).Seconds())
	switch {
	case err == nil:
		c.m.up.Set(1)
	case ctx.Err() != nil:
	case errors.Is(err, ledger.ErrInvalid), errors.Is(err, ledger.ErrNotFound), errors.Is(err, ledger.ErrForbidden):
		// The ledger answered, with a refusal.
		c.m.queryErrors[call].Inc()
		c.m.up.Set(1)
	default:
		c.m.queryErrors[call].Inc()
		c.m.up.Set(0)
	}
}

// storeLookup writes a lookup's answer; c.mu is held.
func (c *Cache) storeLookup(lk ledger.Lookup, subjects []filter.Subject, hosts []string) {
	for _, s := range subjects {
		var reg *filter.Regulation
		if rec, ok := lk.Regulations[s]; ok {
			r := rec.Regulation
			reg = &r
		}
		c.putReg(s, regEntry{reg: reg, block: lk.Height})
	}
	c.boundAbsent(len(hosts) - len(lk.Hosts))
	for _, name := range hosts {
		e := hostEntry{block: lk.Height}
		if rec, ok := lk.Hosts[name]; ok {
			hh := rec.Host
			e.host, e.attested = &hh, rec.Attested()
		}
		c.putHost(name, e)
	}
	c.setRegistry(lk.RequireAttested, lk.Height)
	if lk.Height > c.height {
		c.height = lk.Height
	}
	c.bound()
}

// boundAbsent makes room for n more absent-host entries, dropping older
// ones in the map's arbitrary order, so that a request's own entries are
// never the ones dropped; c.mu is held. A request with more unknown hosts
// than the bound is stored whole, and shrunk by the next one.
func (c *Cache) boundAbsent(n int) {
	over := c.counts[hostsAbsent] + n - c.cfg.MaxAbsentHosts
	if over <= 0 {
		return
	}
	dropped := false
	for name, e := range c.hosts {
		if over <= 0 {
			break
		}
		if e.host == nil && !e.invalid {
			delete(c.hosts, name)
			c.counts[hostsAbsent]--
			over--
			dropped = true
		}
	}
	if dropped {
		c.m.absentDropped.Inc()
	}
}

// putHost stores e unless the cache holds a newer entry; c.mu is held.
func (c *Cache) putHost(name string, e hostEntry) {
	old, ok := c.hosts[name]
	if ok && old.block > e.block {
		return
	}
	if ok {
		c.count(old, -1)
	}
	c.count(e, 1)
	c.hosts[name] = e
}

// count adds d to the counts of e's kind; c.mu is held.
func (c *Cache) count(e hostEntry, d int) {
	c.counts[hostIndex(e.host)] += d
	if e.host != nil && !e.attested {
		c.counts[hostsUnattested] += d
	}
}

// setRegistry records the registry's cloud-wide setting as read at block,
// unless the cache knows a newer one; c.mu is held.
func (c *Cache) setRegistry(requireAttested bool, block uint64) {
	if block < c.registryBlock {
		return
	}
	c.requireAttested, c.registryBlock = requireAttested, block
}

// putReg stores e unless the cache holds a newer entry; c.mu is held.
func (c *Cache) putReg(s filter.Subject, e regEntry) {
	old, ok := c.regs[s]
	if ok && old.block > e.block {
		return
	}
	if ok {
		c.counts[regIndex(old.reg)]--
	}
	c.counts[regIndex(e.reg)]++
	c.regs[s] = e
}

func (c *Cache) dropReg(s filter.Subject) {
	if old, ok := c.regs[s]; ok {
		c.counts[regIndex(old.reg)]--
		delete(c.regs, s)
	}
}

// bound drops regulation entries beyond MaxRegulations (to 90% of it), in
// the map's arbitrary order; c.mu is held.
func (c *Cache) bound() {
	if len(c.regs) <= c.cfg.MaxRegulations {
		return
	}
	keep := c.cfg.MaxRegulations - c.cfg.MaxRegulations/10
	for s := range c.regs {
		if len(c.regs) <= keep {
			break
		}
		c.dropReg(s)
	}
	c.m.evictions.Inc()
}

const (
	hostsPresent = iota
	hostsAbsent
	regsPresent
	regsAbsent
	hostsUnattested
)

func hostIndex(h *filter.Host) int {
	if h == nil {
		return hostsAbsent
	}
	return hostsPresent
}

func regIndex(r *filter.Regulation) int {
	if r == nil {
		return regsAbsent
	}
	return regsPresent
}

// Invalidate forgets what the cache holds of a record, so that the next
// request reads it from the ledger. filterd calls it after a write it made,
// so that its own answers see the write before its event arrives.
func (c *Cache) Invalidate(kind ledger.Kind, key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch kind {
	case ledger.KindHost:
		// Kept as an invalid entry rather than deleted: while the event
		// stream is up, a host the cache has no entry for is one the
		// ledger has no record of.
		old, ok := c.hosts[key]
		if ok {
			c.count(old, -1)
		}
		c.counts[hostsAbsent]++
		c.hosts[key] = hostEntry{block: old.block, invalid: true}
	case ledger.KindRegulation:
		c.dropReg(filter.Subject(key))
	}
}

// apply applies one event; events older than an entry are ignored.
func (c *Cache) apply(ev ledger.Event) {
	c.mu.Lock()
	switch ev.Kind {
	case ledger.KindHost:
		e := hostEntry{block: ev.Block}
		if ev.Op != ledger.OpDelete && ev.Host != nil {
			hh := ev.Host.Host
			e.host, e.attested = &hh, ev.Host.Attested()
		}
		c.putHost(ev.Key, e)
	case ledger.KindRegulation:
		var r *filter.Regulation
		if ev.Op == ledger.OpPut && ev.Regulation != nil {
			rr := ev.Regulation.Regulation
			r = &rr
		}
		c.putReg(filter.Subject(ev.Key), regEntry{reg: r, block: ev.Block})
		c.bound()
	case ledger.KindRegistry:
		if ev.Registry != nil {
			c.setRegistry(ev.Registry.RequireAttested, ev.Block)
		}
	case ledger.KindProposal, ledger.KindBinding, ledger.KindPlacement:
		// Not a fact of any decision.
	default:
		c.log.Warn("ledger event of unknown kind ignored", zap.String("kind", string(ev.Kind)), zap.Uint64("block", ev.Block))
	}
	if ev.Block > c.height {
		c.height = ev.Block
	}
	c.mu.Unlock()
	if ev.Block > c.streamBlock {
		c.streamBlock = ev.Block
	}
	c.m.streamBlock.Set(float64(c.streamBlock))
	if !ev.Time.IsZero() {
		c.m.lag.Set(c.cfg.Clock().Sub(ev.Time).Seconds())
	}
	c.m.events.Inc()
	if c.cfg.OnEvent != nil {
		c.cfg.OnEvent(ev)
	}
}

// Run fills the cache and keeps it current until ctx ends; it returns nil
// then. Breaks of the event stream are retried with backoff; meanwhile the
// cache keeps serving what it holds.
func (c *Cache) Run(ctx context.Context) error {
	backoff := c.cfg.MinBackoff
	for {
		progressed, err := c.session(ctx)
		c.setStream(false)
		if ctx.Err() != nil {
			return nil
		}
		if progressed {
			backoff = c.cfg.MinBackoff
		}
		c.m.reconnects.Inc()
		c.log.Warn("ledger event stream broke; reconnecting", zap.Duration("backoff", backoff),
			zap.Uint64("resume_after", c.streamBlock), zap.Error(err))
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		backoff = min(backoff*2, c.cfg.MaxBackoff)
	}
}

// session opens the event stream (filling the cache first if it is not
// warm, or if the ledger cannot resume from the last block applied) and
// applies events until the stream ends. progressed reports whether the
// stream was opened.
func (c *Cache) session(ctx context.Context) (progressed bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var events <-chan ledger.Event
	if c.warm.Load() {
		events, err = c.resume(ctx)
	} else {
		events, err = c.fill(ctx)
	}
	if err != nil {
		return false, err
	}
	c.setStream(true)
	for {
		select {
		case <-ctx.Done():
			return true, ctx.Err()
		case ev, ok := <-events:
			if !ok {
				return true, errors.New("event stream closed")
			}
			c.apply(ev)
		}
	}
}

// resume reopens the event stream after the last block applied. A ledger
// now lower than that block was replaced: the cache is emptied and filled
// again. So it is when the ledger refuses to resume for any reason other
// than being unavailable.
func (c *Cache) resume(ctx context.Context) (<-chan ledger.Event, error) {
	start := c.cfg.Clock()
	h, err := c.src.Height(ctx)
	c.observe(ctx, callHeight, start, err)
	if err != nil {
		return nil, fmt.Errorf("height: %w", err)
	}
	if h < c.streamBlock {
		c.log.Warn("ledger is lower than the cache's last block; refilling", zap.Uint64("height", h), zap.Uint64("cache_block", c.streamBlock))
		c.reset()
		return c.fill(ctx)
	}
	events, err := c.watch(ctx, c.streamBlock)
	if err != nil && !errors.Is(err, ledger.ErrUnavailable) && ctx.Err() == nil {
		c.log.Warn("ledger cannot resume the event stream; refilling", zap.Uint64("after", c.streamBlock), zap.Error(err))
		c.reset()
		return c.fill(ctx)
	}
	return events, err
}

// reset empties the cache.
func (c *Cache) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.hosts)
	clear(c.regs)
	c.counts = [5]int{}
	c.requireAttested, c.registryBlock = false, 0
	c.height = 0
	c.streamBlock = 0
}

func (c *Cache) watch(ctx context.Context, after uint64) (<-chan ledger.Event, error) {
	start := c.cfg.Clock()
	events, err := c.src.Watch(ctx, after)
	c.observe(ctx, callWatch, start, err)
	if err != nil {
		return nil, fmt.Errorf("watch after block %d: %w", after, err)
	}
	return events, nil
}

// fill opens the event stream at the ledger's height, then reads every host.
// Events committed while listing are applied after it; being newer, they
// win over what the listing read. The stream ends with ctx.
func (c *Cache) fill(ctx context.Context) (<-chan ledger.Event, error) {
	start := c.cfg.Clock()
	h, err := c.src.Height(ctx)
	c.observe(ctx, callHeight, start, err)
	if err != nil {
		return nil, fmt.Errorf("height: %w", err)
	}
	events, err := c.watch(ctx, h)
	if err != nil {
		return nil, err
	}
	// The registry's cloud-wide setting, read after the stream opened so
	// that no change of it is missed.
	if r, ok := c.src.(registrySource); ok {
		start := c.cfg.Clock()
		reg, err := r.Registry(ctx)
		if errors.Is(err, ledger.ErrNotFound) {
			err = nil
		}
		c.observe(ctx, callLookup, start, err)
		if err != nil {
			return nil, fmt.Errorf("registry: %w", err)
		}
		c.mu.Lock()
		c.setRegistry(reg.RequireAttested, h)
		c.mu.Unlock()
	}
	n := 0
	after := ""
	for {
		start := c.cfg.Clock()
		page, err := c.src.ListHosts(ctx, after, c.cfg.PageSize)
		c.observe(ctx, callListHosts, start, err)
		if err != nil {
			return nil, fmt.Errorf("list hosts after %q: %w", after, err)
		}
		c.mu.Lock()
		for i := range page.Hosts {
			hh := page.Hosts[i].Host
			c.putHost(hh.Name, hostEntry{host: &hh, block: h, attested: page.Hosts[i].Attested()})
		}
		if h > c.height {
			c.height = h
		}
		c.mu.Unlock()
		n += len(page.Hosts)
		if page.Next == "" || len(page.Hosts) == 0 {
			break
		}
		after = page.Next
	}
	c.streamBlock = h
	c.m.streamBlock.Set(float64(h))
	c.warm.Store(true)
	c.log.Info("cache filled", zap.Int("hosts", n), zap.Uint64("height", h))
	return events, nil
}

func (c *Cache) setStream(up bool) {
	if c.streamUp.Swap(up) == up {
		return
	}
	if up {
		c.m.streamUp.Set(1)
	} else {
		c.m.streamUp.Set(0)
		c.staleSince.Store(c.cfg.Clock().UnixNano())
	}
}

// age is how stale the cache may be: 0 while the event stream is up, else
// the time since it went down (or since start, before the first fill).
func (c *Cache) age() float64 {
	if c.streamUp.Load() {
		return 0
	}
	return c.cfg.Clock().Sub(time.Unix(0, c.staleSince.Load())).Seconds()
}

// sizes returns the entry counts.
func (c *Cache) sizes() [5]int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.counts
}
