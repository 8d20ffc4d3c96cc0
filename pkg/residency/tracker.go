package residency

import (
	"sync"
	"time"

	"github.com/ledgerfence/ledgerfence/pkg/ledger"
)

// Discrepancy is a placement one witness recorded and the other did not
// confirm within the bound.
type Discrepancy struct {
	// Kind is NotConfirmed (Nova's word alone) or HostAgentOnly.
	Kind      string
	Placement ledger.PlacementRecord
}

// Discrepancy kinds as metric labels.
const (
	KindNotConfirmed  = "not_confirmed"
	KindHostAgentOnly = "host_agent_only"
)

// Label is d's kind as a metric label.
func (d Discrepancy) Label() string {
	if d.Kind == HostAgentOnly {
		return KindHostAgentOnly
	}
	return KindNotConfirmed
}

// Tracker follows placement events as they are committed and tells, once
// Bound has passed, of each placement on a host that the other witness did
// not confirm: the live counterpart of a report's discrepancies. It keeps
// only unconfirmed placements, at most MaxPending (beyond it, some are told
// of at once, unconfirmed). It is safe for concurrent use.
type Tracker struct {
	Bound      time.Duration
	MaxPending int
	// Emit is called, without the tracker's lock, for each discrepancy.
	Emit func(Discrepancy)

	mu      sync.Mutex
	pending map[string][]ledger.PlacementRecord // by VM
	n       int
}

// DefaultMaxPending bounds a Tracker's unconfirmed placements.
const DefaultMaxPending = 100_000

// Observe takes one ledger event; events of other kinds are ignored.
func (t *Tracker) Observe(ev ledger.Event) {
	if ev.Kind != ledger.KindPlacement || ev.Placement == nil || ev.Placement.Host == "" {
		return
	}
	p := *ev.Placement
	t.mu.Lock()
	if t.pending == nil {
		t.pending = make(map[string][]ledger.PlacementRecord)
	}
	list := t.pending[p.VM]
	for i, q := range list {
		if q.Host == p.Host && q.Witness != p.Witness && absDur(q.At.Sub(p.At)) <= t.bound() {
			t.remove(p.VM, list, i)
			t.mu.Unlock()
			return
		}
	}
	t.pending[p.VM] = append(list, p)
	t.n++
	var over []ledger.PlacementRecord
	for vm, l := range t.pending {
		if t.n <= t.maxPending() {
			break
		}
		over = append(over, l...)
		t.n -= len(l)
		delete(t.pending, vm)
	}
	t.mu.Unlock()
	t.emit(over)
}

// remove drops list[i] of vm's pending placements; t.mu is held.
func (t *Tracker) remove(vm string, list []ledger.PlacementRecord, i int) {
	list = append(list[:i], list[i+1:]...)
	if len(list) == 0 {
		delete(t.pending, vm)
	} else {
		t.pending[vm] = list
	}
	t.n--
}

// Expire tells of the placements unconfirmed for longer than Bound at now.
func (t *Tracker) Expire(now time.Time) {
	t.mu.Lock()
	var due []ledger.PlacementRecord
	for vm, list := range t.pending {
		kept := list[:0]
		for _, p := range list {
			if now.Sub(p.RecordedAt) > t.bound() {
				due = append(due, p)
			} else {
				kept = append(kept, p)
			}
		}
		t.n -= len(list) - len(kept)
		if len(kept) == 0 {
			delete(t.pending, vm)
		} else {
			t.pending[vm] = kept
		}
	}
	t.mu.Unlock()
	t.emit(due)
}

// Pending is how many placements wait for the other witness.
func (t *Tracker) Pending() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.n
}

func (t *Tracker) emit(ps []ledger.PlacementRecord) {
	if t.Emit == nil {
		return
	}
	for _, p := range ps {
		d := Discrepancy{Kind: NotConfirmed, Placement: p}
		if p.Witness == ledger.WitnessHostAgent {
			d.Kind = HostAgentOnly
		}
		t.Emit(d)
	}
}

func (t *Tracker) bound() time.Duration {
	if t.Bound <= 0 {
		return DefaultBound
	}
	return t.Bound
}

func (t *Tracker) maxPending() int {
	if t.MaxPending <= 0 {
		return DefaultMaxPending
	}
	return t.MaxPending
}

func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}
