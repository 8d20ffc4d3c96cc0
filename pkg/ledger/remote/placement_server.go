package remote

// The server side of placements (ledger.Residency): POST /v1/placements
// records one, with the same authentication as every write (pkg/api's
// write: a writer token's identity, to which the ledger applies
// access.MayRecordPlacement, or the operator's admin token); GET
// /v1/placements reads those of a VM or a project in a period.

import (
	"net/http"
	"strconv"
	"time"

	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
)

// placementsBody is the answer of GET /v1/placements.
type placementsBody struct {
	Placements []ledger.PlacementRecord `json:"placements"`
}

// RecordPlacement serves POST /v1/placements: body a ledger.Placement, the
// answer the placement as recorded, with the verdict the ledger recorded
// with it; X-Ledgerfence-Changed says whether it was recorded before (the
// same VM, witness and ref: then the stored record).
func (s *Server) RecordPlacement(w http.ResponseWriter, r *http.Request) {
	var in ledger.Placement
	if DecodeBody(w, r, maxRESTBody, &in) != nil {
		return
	}
	p, err := ledger.NormalizePlacement(in)
	if err != nil {
		LedgerError(s.log, w, r, err)
		return
	}
	if p.DecisionID == "" && p.RequestID != "" && s.o.DecisionFor != nil {
		p.DecisionID = s.o.DecisionFor(p.RequestID, p.VM)
	}
	rec, changed, err := s.l.RecordPlacement(r.Context(), p)
	if err != nil {
		LedgerError(s.log, w, r, err)
		return
	}
	s.onWrite(ledger.KindPlacement, p.VM)
	s.logWrite(r, ledger.KindPlacement, p.VM, ledger.OpPut, rec.TxID, changed)
	setChanged(w, changed)
	WriteJSON(w, http.StatusOK, rec)
}

// Placements serves GET /v1/placements?vm=UUID or ?project=ID, with from
// and to (RFC 3339; none: from the first, to the last) and limit (1 to
// ledger.MaxPlacements; none: the most): {"placements": [...]}, ordered by
// VM, time, witness and ref. More placements than the limit is a 400 that
// asks for a narrower period.
func (s *Server) Placements(w http.ResponseWriter, r *http.Request) {
	v := r.URL.Query()
	q := ledger.PlacementQuery{VM: v.Get("vm"), Project: v.Get("project")}
	if (q.VM == "") == (q.Project == "") {
		WriteError(w, http.StatusBadRequest, "give exactly one of vm (an instance's UUID) and project (a project id)")
		return
	}
	for _, f := range []struct {
		name string
		t    *time.Time
	}{{"from", &q.From}, {"to", &q.To}} {
		s := v.Get(f.name)
		if s == "" {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			WriteError(w, http.StatusBadRequest, f.name+": "+strconv.Quote(filter.Clip(s))+" is not an RFC 3339 time (2026-03-01T12:00:00Z)")
			return
		}
		*f.t = t
	}
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > ledger.MaxPlacements {
			WriteError(w, http.StatusBadRequest, "limit must be an integer from 1 to "+strconv.Itoa(ledger.MaxPlacements))
			return
		}
		q.Limit = n
	}
	list, err := s.l.Placements(r.Context(), q)
	if err != nil {
		LedgerError(s.log, w, r, err)
		return
	}
	if list == nil {
		list = []ledger.PlacementRecord{}
	}
	WriteJSON(w, http.StatusOK, placementsBody{Placements: list})
}
