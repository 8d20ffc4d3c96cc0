package chaincode

// Residency transactions (ledger.Residency): placements, a witness's word
// that a VM ran on a host from a moment on, recorded with the verdict of the
// one decision (decide.PlacementVerdict) on the world state of the
// transaction that records them.
//
// Keys:
//
//   - "placement/<vm>/<at>/<witness>/<ref>": the record (a
//     ledger.PlacementRecord). <at> is At in UTC with nanoseconds, of fixed
//     width (placementTime), so that a VM's placements in a period are one
//     range, in (At, witness, ref) order.
//   - "placementref/<vm>/<witness>/<ref>": the record's key, which makes a
//     placement recorded again (same VM, witness and ref) a no-op.
//   - "placementproject/<project>/<vm>/<at>/<witness>/<ref>": a copy of the
//     record, for a project's placements in (VM, At, witness, ref) order
//     without one read per placement.
//
// A VM's UUID, a project id, At and a witness hold no '/' and have no
// prefix that is another's (UUIDs have one length, witnesses are "nova" and
// "hostagent"), so that key order is the order of the fields; Ref comes last
// and may hold anything printable.

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/ledgerfence/ledgerfence/pkg/decide"
	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/access"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/fabric/wire"
)

const (
	placementPrefix        = "placement/"
	placementRefPrefix     = "placementref/"
	placementProjectPrefix = "placementproject/"

	// placementTime formats At in keys: fixed width (years 2000 to 9999,
	// ledger.NormalizePlacement), so that keys sort by time.
	placementTime = "2006-01-02T15:04:05.000000000Z"
	// uuidLen is the length of a VM's canonical UUID.
	uuidLen = 36

	// Limits on the size of arguments, checked before they are decoded: a
	// placement's text fields are bounded by ledger.NormalizePlacement,
	// a query's After by the length of a key.
	maxPlacementBytes      = 1 << 14
	maxPlacementQueryBytes = 1 << 12
)

func keyTime(t time.Time) string { return t.UTC().Format(placementTime) }

// placementTail is "<vm>/<at>/<witness>/<ref>", the part of a placement's
// keys after their prefix (and, for the project index, its project).
func placementTail(p ledger.Placement) string {
	return p.VM + "/" + keyTime(p.At) + "/" + p.Witness + "/" + p.Ref
}

func placementKey(p ledger.Placement) string { return placementPrefix + placementTail(p) }
func placementRefKey(p ledger.Placement) string {
	return placementRefPrefix + p.VM + "/" + p.Witness + "/" + p.Ref
}
func placementProjectKey(p ledger.Placement) string {
	return placementProjectPrefix + p.Project + "/" + placementTail(p)
}

// RecordPlacement records a placement (a ledger.Placement in JSON) by its
// writer: a recorder for witness nova, a host agent for witness hostagent
// on its own host (access.MayRecordPlacement). Its verdict is decided in
// this transaction from the world state: the regulations of its VM and its
// project, its host's record and the registry's require_attested. A
// placement recorded before (same VM, witness and ref) is not recorded
// again: the result is the stored record, unchanged. The result is a
// wire.RecordPlacementResult.
func (c *Contract) RecordPlacement(ctx Ctx, placementJSON string) (string, error) {
	if len(placementJSON) > maxPlacementBytes {
		return "", refuse(wire.CodeInvalid, "placement: larger than %d bytes", maxPlacementBytes)
	}
	var in ledger.Placement
	dec := json.NewDecoder(strings.NewReader(placementJSON))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil || dec.More() {
		return "", refuse(wire.CodeInvalid, "placement: want one JSON object {vm, project, host, from, op, at, request_id, decision_id, witness, ref}")
	}
	p, err := ledger.NormalizePlacement(in)
	if err != nil {
		return "", denied(err)
	}
	who, err := caller(ctx)
	if err != nil {
		return "", err
	}
	if err := access.MayRecordPlacement(who, p); err != nil {
		return "", denied(err)
	}
	st := store{ctx.GetStub()}
	old, found, err := st.placementByRef(p)
	if err != nil {
		return "", err
	}
	if found {
		return result(wire.RecordPlacementResult{Record: old, Changed: false})
	}
	verdict, err := st.placementVerdict(p)
	if err != nil {
		return "", err
	}
	txID, at, err := st.tx()
	if err != nil {
		return "", err
	}
	rec := ledger.PlacementRecord{Placement: p, Verdict: verdict, Writer: who.Writer(), TxID: txID, RecordedAt: at}
	if err := st.putPlacement(rec); err != nil {
		return "", err
	}
	ev := ledger.Event{Kind: ledger.KindPlacement, Key: p.VM, Op: ledger.OpPut, TxID: txID, Writer: rec.Writer, Time: at, Placement: &rec}
	if err := st.emit(ev); err != nil {
		return "", err
	}
	return result(wire.RecordPlacementResult{Record: rec, Changed: true})
}

// placementByRef reads the placement recorded with p's VM, witness and ref.
func (s store) placementByRef(p ledger.Placement) (ledger.PlacementRecord, bool, error) {
	var rec ledger.PlacementRecord
	key, err := s.stub.GetState(placementRefKey(p))
	if err != nil {
		return rec, false, fmt.Errorf("read placement ref: %w", err)
	}
	if key == nil {
		return rec, false, nil
	}
	found, err := s.getJSON(string(key), &rec)
	if err != nil {
		return rec, false, err
	}
	if !found {
		return rec, false, fmt.Errorf("placement %s is indexed and missing", filter.Clip(string(key)))
	}
	return rec, true, nil
}

// placementVerdict decides p's verdict on the world state (nil for a
// placement on no host).
func (s store) placementVerdict(p ledger.Placement) (*ledger.PlacementVerdict, error) {
	if p.Host == "" {
		return nil, nil
	}
	subjects, err := decide.PlacementSubjects(p)
	if err != nil {
		return nil, denied(err)
	}
	keys := make([]string, len(subjects))
	for i, subj := range subjects {
		keys[i] = string(subj)
	}
	regs, err := s.regulations(keys)
	if err != nil {
		return nil, err
	}
	facts := ledger.Lookup{Regulations: regs, Hosts: map[string]ledger.HostRecord{}}
	h, found, err := s.host(p.Host)
	if err != nil {
		return nil, err
	}
	if found {
		facts.Hosts[p.Host] = h
	}
	reg, err := s.registry()
	if err != nil {
		return nil, err
	}
	facts.RequireAttested = reg != nil && reg.RequireAttested
	v, err := decide.PlacementVerdict(facts, p, filter.Options{})
	if err != nil {
		return nil, fmt.Errorf("placement verdict: %w", err)
	}
	return v, nil
}

// putPlacement writes rec, its ref and, when it names a project, its copy in
// the project's index.
func (s store) putPlacement(rec ledger.PlacementRecord) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encode placement: %w", err)
	}
	key := placementKey(rec.Placement)
	if err := s.stub.PutState(key, b); err != nil {
		return err
	}
	if err := s.stub.PutState(placementRefKey(rec.Placement), []byte(key)); err != nil {
		return err
	}
	if rec.Project == "" {
		return nil
	}
	return s.stub.PutState(placementProjectKey(rec.Placement), b)
}

// Placements reads one page of placements (queryJSON is a
// wire.PlacementQuery): those of a VM, or of a project's VMs, whose At is in
// [from, to), ordered by VM, At, witness and ref, at most limit keys read
// (wire.MaxPlacementPage when 0). The result is a wire.PlacementPage; its
// Next, given as the next query's After, reads the next page.
func (c *Contract) Placements(ctx Ctx, queryJSON string) (string, error) {
	if len(queryJSON) > maxPlacementQueryBytes {
		return "", refuse(wire.CodeInvalid, "placement query: larger than %d bytes", maxPlacementQueryBytes)
	}
	var q wire.PlacementQuery
	dec := json.NewDecoder(strings.NewReader(queryJSON))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&q); err != nil || dec.More() {
		return "", refuse(wire.CodeInvalid, "placement query: want one JSON object {vm | project, from, to, after, limit}")
	}
	q, err := normalizePlacementQuery(q)
	if err != nil {
		return "", err
	}
	// The range of keys: a VM's placements in the period, or every
	// placement of the project (those out of the period are skipped).
	var prefix, start, end string
	if q.VM != "" {
		prefix = placementPrefix + q.VM + "/"
		start, end = prefix, placementPrefix+q.VM+"0" // '0' follows '/'
		if !q.From.IsZero() {
			start = prefix + keyTime(q.From)
		}
		if !q.To.IsZero() {
			end = prefix + keyTime(q.To)
		}
	} else {
		prefix = placementProjectPrefix + q.Project + "/"
		start, end = prefix, placementProjectPrefix+q.Project+"0"
	}
	if q.After != "" {
		if !strings.HasPrefix(q.After, prefix) || q.After < start || q.After >= end {
			return "", refuse(wire.CodeInvalid, "placement query: after %q is not a key of this query's placements", filter.Clip(q.After))
		}
		start = q.After + "\x00"
	}
	page, err := store{ctx.GetStub()}.placements(start, end, q)
	if err != nil {
		return "", err
	}
	return page.encode()
}

// placementPage is wire.PlacementPage with the records as stored.
type placementPage struct {
	Placements []json.RawMessage `json:"placements"`
	Next       string            `json:"next,omitempty"`
}

// encode writes the page as wire.PlacementPage's JSON, the records as
// stored (JSON this contract wrote), without decoding them again.
func (p placementPage) encode() (string, error) {
	n := 32 + len(p.Next)
	for _, r := range p.Placements {
		n += len(r) + 1
	}
	var b strings.Builder
	b.Grow(n)
	b.WriteString(`{"placements":[`)
	for i, r := range p.Placements {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(r)
	}
	b.WriteByte(']')
	if p.Next != "" {
		next, err := json.Marshal(p.Next)
		if err != nil {
			return "", fmt.Errorf("encode result: %w", err)
		}
		b.WriteString(`,"next":`)
		b.Write(next)
	}
	b.WriteByte('}')
	return b.String(), nil
}

// placements reads the keys in [start, end), up to q.Limit of them, and
// keeps those whose At is in q's period.
func (s store) placements(start, end string, q wire.PlacementQuery) (placementPage, error) {
	page := placementPage{Placements: []json.RawMessage{}}
	it, err := s.stub.GetStateByRange(start, end)
	if err != nil {
		return page, fmt.Errorf("read placements: %w", err)
	}
	defer it.Close()
	var from, to, last string
	if q.Project != "" {
		if !q.From.IsZero() {
			from = keyTime(q.From)
		}
		if !q.To.IsZero() {
			to = keyTime(q.To)
		}
	}
	atFrom := len(placementProjectPrefix) + len(q.Project) + 1 + uuidLen + 1
	for n := 0; it.HasNext(); n++ {
		kv, err := it.Next()
		if err != nil {
			return page, fmt.Errorf("read placements: %w", err)
		}
		if n == q.Limit {
			page.Next = last
			break
		}
		last = kv.Key
		if q.Project != "" {
			if len(kv.Key) < atFrom+len(placementTime) {
				return page, fmt.Errorf("placement index key %s is malformed", filter.Clip(kv.Key))
			}
			at := kv.Key[atFrom : atFrom+len(placementTime)]
			if from != "" && at < from || to != "" && at >= to {
				continue
			}
		}
		page.Placements = append(page.Placements, json.RawMessage(kv.Value))
	}
	return page, nil
}

// normalizePlacementQuery checks q: one of a VM or a project, a period that
// does not end before it starts, a page of 0 (wire.MaxPlacementPage) to
// wire.MaxPlacementPage keys.
func normalizePlacementQuery(q wire.PlacementQuery) (wire.PlacementQuery, error) {
	var err error
	switch {
	case q.VM != "" && q.Project != "":
		return q, refuse(wire.CodeInvalid, "placements: ask for the placements of a VM or of a project, not both")
	case q.VM != "":
		if q.VM, err = filter.NormalizeUUID(q.VM); err != nil {
			return q, refuse(wire.CodeInvalid, "placements: vm: %v", err)
		}
	case q.Project != "":
		if q.Project, err = filter.NormalizeProjectID(q.Project); err != nil {
			return q, refuse(wire.CodeInvalid, "placements: project: %v", err)
		}
	default:
		return q, refuse(wire.CodeInvalid, "placements: a VM or a project is needed")
	}
	for _, t := range []*time.Time{&q.From, &q.To} {
		if t.IsZero() {
			continue
		}
		if t.Year() < 2000 || t.Year() > 9999 {
			return q, refuse(wire.CodeInvalid, "placements: from and to must be between the years 2000 and 9999")
		}
		*t = t.UTC()
	}
	if !q.To.IsZero() && q.To.Before(q.From) {
		return q, refuse(wire.CodeInvalid, "placements: from (%s) is after to (%s)", q.From.Format(time.RFC3339Nano), q.To.Format(time.RFC3339Nano))
	}
	switch {
	case q.Limit < 0 || q.Limit > wire.MaxPlacementPage:
		return q, refuse(wire.CodeInvalid, "placements: limit %d: want 0 (the most, %d) to %d", q.Limit, wire.MaxPlacementPage, wire.MaxPlacementPage)
	case q.Limit == 0:
		q.Limit = wire.MaxPlacementPage
	}
	return q, nil
}
