package residency

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/ledgerfence/ledgerfence/pkg/ledger"
)

// Reader is what Verify and Read need of a ledger; every backend is one.
type Reader interface {
	Placements(ctx context.Context, q ledger.PlacementQuery) ([]ledger.PlacementRecord, error)
}

// Read builds the report of q (Normalize first) from l, as of asOf.
func Read(ctx context.Context, l Reader, q Query, asOf time.Time) (Report, error) {
	q, err := q.Normalize()
	if err != nil {
		return Report{}, err
	}
	ps, err := l.Placements(ctx, q.LedgerQuery())
	if err != nil {
		return Report{}, err
	}
	return Build(q, ps, asOf), nil
}

// Mismatch is a report that the ledger does not bear out.
type Mismatch struct{ Msg string }

func (m *Mismatch) Error() string { return "residency: the report does not match the ledger: " + m.Msg }

// Verify reads every claim of r again from l: the placements of its query
// recorded up to r.AsOf, built into a report, must be r. A *Mismatch says
// the first difference; any other error is the ledger's.
func Verify(ctx context.Context, l Reader, r Report) error {
	q, err := r.Query.Normalize()
	if err != nil {
		return &Mismatch{Msg: "its query is invalid: " + err.Error()}
	}
	if q != r.Query {
		return &Mismatch{Msg: "its query is not in canonical form"}
	}
	again, err := Read(ctx, l, q, r.AsOf)
	if err != nil {
		return err
	}
	return Same(r, again)
}

// Same reports, as a *Mismatch, the first difference between a report as
// given and the one the ledger bears out (nil: none).
func Same(given, ledgerSays Report) error {
	a, err := json.Marshal(given)
	if err != nil {
		return err
	}
	b, err := json.Marshal(ledgerSays)
	if err != nil {
		return err
	}
	if bytes.Equal(a, b) {
		return nil
	}
	if len(given.Intervals) != len(ledgerSays.Intervals) {
		return &Mismatch{Msg: fmt.Sprintf("it has %d intervals, the ledger's placements make %d", len(given.Intervals), len(ledgerSays.Intervals))}
	}
	for i := range given.Intervals {
		x, _ := json.Marshal(given.Intervals[i])
		y, _ := json.Marshal(ledgerSays.Intervals[i])
		if !bytes.Equal(x, y) {
			g, w := given.Intervals[i], ledgerSays.Intervals[i]
			return &Mismatch{Msg: fmt.Sprintf("interval %d: the report says VM %s on %s from %s to %s (%s); the ledger says VM %s on %s from %s to %s (%s)",
				i+1, g.VM, g.Host, stamp(g.From), stamp(g.To), verdictWord(g), w.VM, w.Host, stamp(w.From), stamp(w.To), verdictWord(w))}
		}
	}
	return &Mismatch{Msg: "its totals differ from the ledger's"}
}

func verdictWord(iv Interval) string {
	switch {
	case iv.Verdict == nil:
		return "no verdict"
	case iv.Verdict.Allowed:
		return "allowed"
	}
	return "denied: " + string(iv.Verdict.Reason)
}
