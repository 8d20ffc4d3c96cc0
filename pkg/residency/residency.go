// Package residency turns the placements a ledger holds (package ledger,
// "Residency evidence") into what an auditor asks for: where a VM ran, from
// when to when, in which country and under which organisations, whether that
// was allowed by the regulations then in force, and which witnesses say so.
//
// Build is deterministic: the same placements and query give the same
// report, byte for byte in JSON. Verify rests on that: it reads the
// placements again from a ledger, keeps those recorded up to the report's
// time, builds again and compares, so that a report edited by hand (a host,
// a time, a verdict, a left-out interval) fails.
//
// Intervals come from Nova's word (witness nova): each placement on a host
// opens an interval there, the VM's next placement closes it. The host
// agent's word (witness hostagent) confirms an interval when it saw the VM
// on that host within Bound of the interval's start; an interval of one
// witness only, once Bound has passed, is a discrepancy. So is a VM the host
// agent saw on a host where Nova never placed it (an interval of the host
// agent only).
package residency

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
)

// DefaultBound is how long the two witnesses may be apart: three of the
// host agent's sweeps (every 5 minutes by default).
const DefaultBound = 15 * time.Minute

// Query says what a report covers.
type Query struct {
	// Subject is vm:<uuid> or project:<id>.
	Subject filter.Subject `json:"subject"`
	From    time.Time      `json:"from"`
	To      time.Time      `json:"to"`
	// Bound is how long the witnesses may be apart (DefaultBound when 0).
	Bound time.Duration `json:"bound"`
}

// Bounds of a query.
const (
	// MaxSpan is the longest period one report covers.
	MaxSpan = 10 * 366 * 24 * time.Hour
	// MaxBound is the longest the witnesses may be apart.
	MaxBound = 24 * time.Hour
)

// Normalize checks q and returns it in canonical form.
func (q Query) Normalize() (Query, error) {
	s, err := filter.ParseSubject(string(q.Subject))
	if err != nil {
		return q, ledger.Errorf(ledger.ErrInvalid, err, err.Error())
	}
	q.Subject = s
	if q.From.IsZero() || q.To.IsZero() {
		return q, ledger.Errorf(ledger.ErrInvalid, nil, "a report needs from and to")
	}
	q.From, q.To = q.From.UTC(), q.To.UTC()
	if !q.From.Before(q.To) {
		return q, ledger.Errorf(ledger.ErrInvalid, nil, fmt.Sprintf("from (%s) must be before to (%s)", stamp(q.From), stamp(q.To)))
	}
	if q.To.Sub(q.From) > MaxSpan {
		return q, ledger.Errorf(ledger.ErrInvalid, nil, fmt.Sprintf("a report covers at most %d days", int(MaxSpan.Hours()/24)))
	}
	if q.From.Year() < 2000 || q.To.Year() > 9999 {
		return q, ledger.Errorf(ledger.ErrInvalid, nil, "from and to must be between the years 2000 and 9999")
	}
	switch {
	case q.Bound == 0:
		q.Bound = DefaultBound
	case q.Bound < 0 || q.Bound > MaxBound:
		return q, ledger.Errorf(ledger.ErrInvalid, nil, fmt.Sprintf("bound: want 0 to %s", MaxBound))
	}
	return q, nil
}

// LedgerQuery is the placements a report of q is built from: the subject's,
// up to q.To plus Bound (the host agent's word may follow Nova's), from the
// first on (a placement long before the period may place the VM at its
// start).
func (q Query) LedgerQuery() ledger.PlacementQuery {
	lq := ledger.PlacementQuery{To: q.To.Add(q.Bound)}
	switch q.Subject.Kind() {
	case filter.KindVM:
		lq.VM = q.Subject.ID()
	case filter.KindProject:
		lq.Project = q.Subject.ID()
	}
	return lq
}

// Evidence is one placement an interval rests on.
type Evidence struct {
	Witness    string    `json:"witness"`
	Op         string    `json:"op"`
	At         time.Time `json:"at"`
	Ref        string    `json:"ref"`
	TxID       string    `json:"tx_id"`
	RecordedAt time.Time `json:"recorded_at"`
	Writer     string    `json:"writer"`
}

// Interval is where a VM ran for a while.
type Interval struct {
	VM      string `json:"vm"`
	Project string `json:"project,omitempty"`
	Host    string `json:"host"`
	// From and To bound the interval within the report's period; Open is
	// true when the VM was still there at the report's end.
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
	Open bool      `json:"open,omitempty"`
	// Op is the operation that placed it there.
	Op         string `json:"op"`
	RequestID  string `json:"request_id,omitempty"`
	DecisionID string `json:"decision_id,omitempty"`
	// The verdict recorded with the placement, and the facts it was made on.
	Verdict *ledger.PlacementVerdict `json:"verdict,omitempty"`
	// Violation: the verdict denied the host.
	Violation bool `json:"violation,omitempty"`
	// Witnesses say who saw it; Discrepancy says why one witness is
	// missing, when one is.
	Witnesses   []string   `json:"witnesses"`
	Discrepancy string     `json:"discrepancy,omitempty"`
	Evidence    []Evidence `json:"evidence"`
}

// Report is the residency of a VM or a project's VMs over a period.
type Report struct {
	Query
	// AsOf is the time of the report: placements recorded after it are not
	// in it (Verify reads only those recorded up to it).
	AsOf          time.Time  `json:"as_of"`
	Intervals     []Interval `json:"intervals"`
	Violations    int        `json:"violations"`
	Discrepancies int        `json:"discrepancies"`
	// Placements is how many placements the report was built from.
	Placements int `json:"placements"`
}

// Discrepancies.
const (
	NotConfirmed  = "not confirmed by the host agent"
	HostAgentOnly = "seen by the host agent only, not in Nova's notifications"
)

// Build makes the report of q (normalised) from placements (any order;
// those of other VMs or projects, or recorded after asOf, are left out).
func Build(q Query, placements []ledger.PlacementRecord, asOf time.Time) Report {
	asOf = asOf.UTC()
	r := Report{Query: q, AsOf: asOf, Intervals: []Interval{}}
	byVM := map[string][]ledger.PlacementRecord{}
	for _, p := range placements {
		if p.RecordedAt.After(asOf) || !q.covers(p.Placement) {
			continue
		}
		byVM[p.VM] = append(byVM[p.VM], p)
		r.Placements++
	}
	vms := make([]string, 0, len(byVM))
	for vm := range byVM {
		vms = append(vms, vm)
	}
	slices.Sort(vms)
	for _, vm := range vms {
		r.Intervals = append(r.Intervals, q.intervals(byVM[vm], asOf)...)
	}
	for _, iv := range r.Intervals {
		if iv.Violation {
			r.Violations++
		}
		if iv.Discrepancy != "" {
			r.Discrepancies++
		}
	}
	return r
}

func (q Query) covers(p ledger.Placement) bool {
	switch q.Subject.Kind() {
	case filter.KindVM:
		return p.VM == q.Subject.ID()
	case filter.KindProject:
		return p.Project == q.Subject.ID()
	}
	return false
}

// order sorts a VM's placements: by time, Nova's word before the host
// agent's, then by reference.
func order(a, b ledger.PlacementRecord) int {
	if c := a.At.Compare(b.At); c != 0 {
		return c
	}
	if a.Witness != b.Witness {
		if a.Witness == ledger.WitnessNova {
			return -1
		}
		return 1
	}
	return strings.Compare(a.Ref, b.Ref)
}

func evidence(p ledger.PlacementRecord) Evidence {
	return Evidence{Witness: p.Witness, Op: p.Op, At: p.At, Ref: p.Ref, TxID: p.TxID, RecordedAt: p.RecordedAt, Writer: p.Writer.String()}
}

// intervals builds one VM's intervals.
func (q Query) intervals(ps []ledger.PlacementRecord, asOf time.Time) []Interval {
	slices.SortFunc(ps, order)
	var nova, agent []ledger.PlacementRecord
	for _, p := range ps {
		if p.Witness == ledger.WitnessNova {
			nova = append(nova, p)
		} else {
			agent = append(agent, p)
		}
	}
	end := q.To
	if asOf.Before(end) {
		end = asOf
	}
	var out []Interval
	// Nova's word: each placement on a host opens an interval that the
	// next placement closes. A placement on the host the VM is already on
	// (a resize's confirmation after its finish, a reboot's rebuild) adds
	// its evidence to the interval rather than cutting it.
	for i, p := range nova {
		if p.Host == "" {
			continue
		}
		if n := len(out); n > 0 && i > 0 && nova[i-1].Host == p.Host && out[n-1].Host == p.Host && !out[n-1].Open &&
			sameVerdict(out[n-1].Verdict, p.Verdict) {
			last := &out[n-1]
			last.Evidence = append(last.Evidence, evidence(p))
			if i+1 < len(nova) {
				last.To = nova[i+1].At
			} else {
				last.To, last.Open = end, true
			}
			continue
		}
		iv := Interval{VM: p.VM, Project: p.Project, Host: p.Host, From: p.At, To: end, Open: true, Op: p.Op,
			RequestID: p.RequestID, DecisionID: p.DecisionID, Verdict: p.Verdict,
			Witnesses: []string{ledger.WitnessNova}, Evidence: []Evidence{evidence(p)}}
		if i+1 < len(nova) {
			iv.To, iv.Open = nova[i+1].At, false
		}
		// Nova tells an evacuation only by the rebuild that ends it, on
		// another host than the VM's last.
		if iv.Op == ledger.OpRebuild && len(out) > 0 && out[len(out)-1].Host != iv.Host {
			iv.Op = ledger.OpEvacuate
		}
		out = append(out, iv)
	}
	// The host agent's word: confirms the interval on its host it falls
	// in (or Bound before its start); otherwise an interval of its own,
	// until it saw the VM gone or its next word.
	used := make([]bool, len(agent))
	for k := range out {
		iv := &out[k]
		// agent is in time order: start at the first word within Bound
		// before the interval, but not before the VM's previous stay began:
		// during that stay the VM may already show on this host (a
		// migration in progress), before it a sighting belongs to an
		// earlier stay on this host.
		lower := iv.From.Add(-q.Bound)
		if k > 0 && out[k-1].From.After(lower) {
			lower = out[k-1].From
		}
		first, _ := slices.BinarySearchFunc(agent, lower, func(p ledger.PlacementRecord, t time.Time) int { return p.At.Compare(t) })
		for j := first; j < len(agent) && agent[j].At.Before(iv.To.Add(q.Bound)); j++ {
			a := agent[j]
			if a.Host == iv.Host && (a.At.Before(iv.To) || iv.Open) {
				used[j] = true
				if !slices.Contains(iv.Witnesses, ledger.WitnessHostAgent) {
					iv.Witnesses = append(iv.Witnesses, ledger.WitnessHostAgent)
				}
				iv.Evidence = append(iv.Evidence, evidence(a))
			}
		}
		if len(iv.Witnesses) == 1 && !iv.From.Add(q.Bound).After(end) && iv.To.Sub(iv.From) >= q.Bound {
			iv.Discrepancy = NotConfirmed
		}
	}
	for j, a := range agent {
		if used[j] || a.Host == "" {
			continue
		}
		iv := Interval{VM: a.VM, Project: a.Project, Host: a.Host, From: a.At, To: end, Open: true, Op: a.Op,
			Verdict: a.Verdict, Witnesses: []string{ledger.WitnessHostAgent}, Evidence: []Evidence{evidence(a)},
			Discrepancy: HostAgentOnly}
		for _, b := range agent[j+1:] {
			if b.Host != a.Host || b.Op == ledger.OpGone {
				iv.To, iv.Open = b.At, false
				break
			}
		}
		out = append(out, iv)
	}
	// Within the period only, in time order.
	kept := out[:0]
	for _, iv := range out {
		if !iv.To.After(q.From) || !iv.From.Before(q.To) {
			continue
		}
		if iv.From.Before(q.From) {
			iv.From = q.From
		}
		if iv.To.After(q.To) {
			iv.To = q.To
		}
		iv.Violation = iv.Verdict != nil && !iv.Verdict.Allowed
		kept = append(kept, iv)
	}
	slices.SortStableFunc(kept, func(a, b Interval) int {
		if c := a.From.Compare(b.From); c != 0 {
			return c
		}
		return strings.Compare(a.Host, b.Host)
	})
	return kept
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// sameVerdict reports whether two verdicts say the same of a host.
func sameVerdict(a, b *ledger.PlacementVerdict) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Allowed == b.Allowed && a.Reason == b.Reason && a.Regulation == b.Regulation
}
