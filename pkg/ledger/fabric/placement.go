package fabric

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/ledgerfence/ledgerfence/pkg/ledger"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/fabric/wire"
)

// Residency (ledger.Residency): a placement is endorsed, submitted and
// waited for as PutHost is; the chaincode validates it, applies package
// access's rules to the client's identity and decides its verdict in the
// transaction. Placements are read in pages of up to wire.MaxPlacementPage,
// one evaluate each.

var _ ledger.Residency = (*Ledger)(nil)

// RecordPlacement implements ledger.Residency. A placement recorded before
// (same VM, witness and ref: its endorsement says so) is not submitted: the
// stored record is returned with changed false.
func (l *Ledger) RecordPlacement(ctx context.Context, p ledger.Placement) (ledger.PlacementRecord, bool, error) {
	body, err := json.Marshal(p)
	if err != nil {
		return ledger.PlacementRecord{}, false, ledger.Errorf(ledger.ErrInvalid, err, "placement cannot be encoded")
	}
	var r wire.RecordPlacementResult
	changed := func(b []byte) (bool, error) {
		r = wire.RecordPlacementResult{}
		err := json.Unmarshal(b, &r)
		return r.Changed, err
	}
	if _, err := l.submit(ctx, wire.TxRecordPlacement, changed, string(body)); err != nil {
		return ledger.PlacementRecord{}, false, err
	}
	return r.Record, r.Changed, nil
}

// Placements implements ledger.Residency: the placements of q.VM, or of the
// VMs of q.Project, whose At is in [q.From, q.To) (a zero From: from the
// first; a zero To: to the last), ordered by VM, At, witness and ref, read
// page by page. More than q.Limit (0: ledger.MaxPlacements) of them is an
// error (ErrInvalid), not a cut list: narrow the period. The chaincode checks
// the query (ErrInvalid).
func (l *Ledger) Placements(ctx context.Context, q ledger.PlacementQuery) ([]ledger.PlacementRecord, error) {
	limit := q.Limit
	switch {
	case limit < 0 || limit > ledger.MaxPlacements:
		return nil, ledger.Errorf(ledger.ErrInvalid, nil, fmt.Sprintf("placements: limit %d: want 0 (the most, %d) to %d", limit, ledger.MaxPlacements, ledger.MaxPlacements))
	case limit == 0:
		limit = ledger.MaxPlacements
	}
	out := []ledger.PlacementRecord{}
	wq := wire.PlacementQuery{VM: q.VM, Project: q.Project, From: q.From, To: q.To}
	for {
		// one more than the limit tells that more match
		wq.Limit = min(wire.MaxPlacementPage, limit+1-len(out))
		body, err := json.Marshal(wq)
		if err != nil {
			return nil, ledger.Errorf(ledger.ErrInvalid, err, "placement query cannot be encoded")
		}
		res, err := l.evaluate(ctx, l.contract, wire.TxPlacements, string(body))
		if err != nil {
			return nil, err
		}
		page, err := decode[wire.PlacementPage](wire.TxPlacements, res)
		if err != nil {
			return nil, err
		}
		out = append(out, page.Placements...)
		if len(out) > limit {
			return nil, ledger.Errorf(ledger.ErrInvalid, nil, fmt.Sprintf("placements: more than %d placements match; narrow the period (from, to)", limit))
		}
		if page.Next == "" {
			return out, nil
		}
		if page.Next <= wq.After {
			return nil, ledger.Errorf(ledger.ErrUnavailable, nil, "the Placements pages do not advance")
		}
		wq.After = page.Next
	}
}
