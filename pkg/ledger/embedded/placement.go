package embedded

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/ledgerfence/ledgerfence/pkg/decide"
	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/access"
)

// Placements on the embedded ledger (ledger.Residency): each is an entry
// of the hash chain (kind ledger.KindPlacement, op put, key the VM's UUID)
// whose value is the placement and the verdict the ledger recorded with it,
// and a record in three buckets, made by the first placement:
//
//   - placements: the records, by VM, then At (seconds, 8 bytes big endian,
//     then nanoseconds, 4 bytes), then witness, then Ref (placementKey);
//     each value is the entry's sequence number (8 bytes big endian) and
//     the ledger.PlacementRecord as JSON. A VM's placements in a period are
//     one range of it.
//   - placement_refs: (VM, witness, Ref) to the record's key, which makes a
//     placement recorded again a no-op.
//   - placement_projects: the project, then the record's key (no value), for
//     a project's placements.
//
// The verdict is decided (decide.PlacementVerdict) in the write's
// transaction, on the state then: the regulations of the VM and its project,
// the host's record and the registry's require_attested. Verify replays it:
// each placement's verdict is decided again on the state replayed up to its
// entry, and the three buckets must be exactly what the chain's placements
// make. Placements are not in the history index: the placements bucket is
// their index.

var _ ledger.Residency = (*Ledger)(nil)

var (
	bucketPlacements        = []byte("placements")
	bucketPlacementRefs     = []byte("placement_refs")
	bucketPlacementProjects = []byte("placement_projects")
)

// placementValue is a placement entry's value: the placement (normalised)
// and the verdict recorded with it (none for a placement on no host).
type placementValue struct {
	ledger.Placement
	Verdict *ledger.PlacementVerdict `json:"verdict,omitempty"`
}

// atLen is the length of an encoded time in keys.
const atLen = 12

// appendAt appends t (UTC, years 2000 to 9999: seconds are positive) so
// that keys sort by time.
func appendAt(b []byte, t time.Time) []byte {
	b = binary.BigEndian.AppendUint64(b, uint64(t.Unix()))
	return binary.BigEndian.AppendUint32(b, uint32(t.Nanosecond()))
}

// placementKey is the key of p's record: VM, NUL, At, witness, NUL, Ref.
// None of VM, witness or Ref holds a NUL (ledger.NormalizePlacement).
func placementKey(p ledger.Placement) []byte {
	k := make([]byte, 0, len(p.VM)+1+atLen+len(p.Witness)+1+len(p.Ref))
	k = append(k, p.VM...)
	k = append(k, 0)
	k = appendAt(k, p.At)
	k = append(k, p.Witness...)
	k = append(k, 0)
	return append(k, p.Ref...)
}

// refKeyOf is the key of placement_refs for the record key k: VM, NUL,
// witness, NUL, Ref; nil when k is not a placement key.
func refKeyOf(k []byte) []byte {
	i := bytes.IndexByte(k, 0)
	if i < 0 || len(k) < i+1+atLen+1 {
		return nil
	}
	rest := k[i+1+atLen:]
	if bytes.IndexByte(rest, 0) < 0 {
		return nil
	}
	out := make([]byte, 0, i+1+len(rest))
	out = append(out, k[:i+1]...)
	return append(out, rest...)
}

func refKey(p ledger.Placement) []byte {
	k := make([]byte, 0, len(p.VM)+len(p.Witness)+len(p.Ref)+2)
	k = append(k, p.VM...)
	k = append(k, 0)
	k = append(k, p.Witness...)
	k = append(k, 0)
	return append(k, p.Ref...)
}

func projectKey(project string, pk []byte) []byte {
	k := make([]byte, 0, len(project)+1+len(pk))
	k = append(k, project...)
	k = append(k, 0)
	return append(k, pk...)
}

// decodePlacement reads a value of the placements bucket: the sequence
// number of its entry and its record.
func decodePlacement(k, v []byte) (uint64, ledger.PlacementRecord, error) {
	var rec ledger.PlacementRecord
	if len(v) < 8 {
		return 0, rec, fmt.Errorf("placement record %q is malformed", filter.Clip(string(k)))
	}
	if err := json.Unmarshal(v[8:], &rec); err != nil {
		return 0, rec, fmt.Errorf("placement record %q: %w", filter.Clip(string(k)), err)
	}
	return binary.BigEndian.Uint64(v), rec, nil
}

// storePlacement writes the records of e, a placement entry, to the
// placements buckets.
func storePlacement(tx *bolt.Tx, e *entry) error {
	r, err := e.records()
	if err != nil {
		return err
	}
	rec := r.placement
	if rec == nil {
		return fmt.Errorf("entry %d is not a placement", e.Seq)
	}
	data, err := placementJSON(e.Seq, rec)
	if err != nil {
		return err
	}
	pk := placementKey(rec.Placement)
	b, err := tx.CreateBucketIfNotExists(bucketPlacements)
	if err != nil {
		return err
	}
	if b.Get(pk) != nil {
		return fmt.Errorf("placement %q is recorded already", filter.Clip(string(pk)))
	}
	if err := b.Put(pk, data); err != nil {
		return err
	}
	refs, err := tx.CreateBucketIfNotExists(bucketPlacementRefs)
	if err != nil {
		return err
	}
	if err := refs.Put(refKey(rec.Placement), pk); err != nil {
		return err
	}
	if rec.Project == "" {
		return nil
	}
	projects, err := tx.CreateBucketIfNotExists(bucketPlacementProjects)
	if err != nil {
		return err
	}
	return projects.Put(projectKey(rec.Project, pk), nil)
}

// placementJSON is the value of the placements bucket for rec, written by
// entry seq.
func placementJSON(seq uint64, rec *ledger.PlacementRecord) ([]byte, error) {
	data, err := json.Marshal(rec)
	if err != nil {
		return nil, err
	}
	return append(binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(data)), seq), data...), nil
}

// placementVerdict decides p's verdict (decide.PlacementVerdict) on the
// facts that regulation and host read, at height, with the registry's
// require_attested: the one rule of writes and of Verify's replay.
func placementVerdict(p ledger.Placement, height uint64, requireAttested bool,
	regulation func(filter.Subject) (*ledger.RegulationRecord, error),
	host func(string) (*ledger.HostRecord, error)) (*ledger.PlacementVerdict, error) {
	if p.Host == "" {
		return nil, nil
	}
	subjects, err := decide.PlacementSubjects(p)
	if err != nil {
		return nil, err
	}
	facts := ledger.Lookup{
		Height:          height,
		RequireAttested: requireAttested,
		Regulations:     make(map[filter.Subject]ledger.RegulationRecord, len(subjects)),
		Hosts:           make(map[string]ledger.HostRecord, 1),
	}
	for _, s := range subjects {
		rec, err := regulation(s)
		if err != nil {
			return nil, err
		}
		if rec != nil {
			facts.Regulations[s] = *rec
		}
	}
	h, err := host(p.Host)
	if err != nil {
		return nil, err
	}
	if h != nil {
		facts.Hosts[p.Host] = *h
	}
	return decide.PlacementVerdict(facts, p, filter.Options{})
}

// verdictNow decides p's verdict on the state of tx.
func (l *Ledger) verdictNow(tx *bolt.Tx, p ledger.Placement) (*ledger.PlacementVerdict, error) {
	if p.Host == "" {
		return nil, nil
	}
	h, err := readHead(tx)
	if err != nil {
		return nil, err
	}
	reg, err := l.registryInForce(tx)
	if err != nil {
		return nil, err
	}
	return placementVerdict(p, h.Seq, reg != nil && reg.RequireAttested,
		func(s filter.Subject) (*ledger.RegulationRecord, error) {
			rec, ok, err := getRegulation(tx, s)
			if !ok || err != nil {
				return nil, err
			}
			return &rec, nil
		},
		func(name string) (*ledger.HostRecord, error) {
			rec, ok, err := getHost(tx, name)
			if !ok || err != nil {
				return nil, err
			}
			return &rec, nil
		})
}

// recordPlacement records p (normalised) by w in tx, unless it was
// recorded before: then it returns the stored record, no entry and
// changed false.
func (l *Ledger) recordPlacement(tx *bolt.Tx, p ledger.Placement, w ledger.Writer) (ledger.PlacementRecord, *entry, bool, error) {
	if refs := tx.Bucket(bucketPlacementRefs); refs != nil {
		if pk := refs.Get(refKey(p)); pk != nil {
			v := tx.Bucket(bucketPlacements).Get(pk)
			if v == nil {
				return ledger.PlacementRecord{}, nil, false, fmt.Errorf("placement %q is indexed and missing", filter.Clip(string(pk)))
			}
			_, rec, err := decodePlacement(pk, v)
			return rec, nil, false, err
		}
	}
	verdict, err := l.verdictNow(tx, p)
	if err != nil {
		return ledger.PlacementRecord{}, nil, false, err
	}
	value, err := json.Marshal(placementValue{Placement: p, Verdict: verdict})
	if err != nil {
		return ledger.PlacementRecord{}, nil, false, err
	}
	e, err := appendEntry(tx, ledger.KindPlacement, p.VM, ledger.OpPut, value, w, l.clock())
	if err != nil {
		return ledger.PlacementRecord{}, nil, false, err
	}
	r, err := e.records()
	if err != nil {
		return ledger.PlacementRecord{}, nil, false, err
	}
	return *r.placement, e, true, nil
}

// RecordPlacement implements ledger.Residency: it validates p
// (ledger.NormalizePlacement), checks that the identity on ctx may record
// it (access.MayRecordPlacement; the operator's writes are checked by no
// rule) and records it with the verdict of the one decision on the ledger's
// state in the same transaction. A placement recorded before (same VM,
// witness and Ref) is not recorded again: changed is false and the stored
// record is returned, whatever else p says. Errors: ErrInvalid,
// ErrForbidden, ErrUnavailable.
func (l *Ledger) RecordPlacement(ctx context.Context, p ledger.Placement) (rec ledger.PlacementRecord, changed bool, err error) {
	if err := l.ready(ctx); err != nil {
		return ledger.PlacementRecord{}, false, err
	}
	p, err = ledger.NormalizePlacement(p)
	if err != nil {
		return ledger.PlacementRecord{}, false, err
	}
	w, who, checked := author(ctx)
	if checked {
		if err := access.MayRecordPlacement(who, p); err != nil {
			return ledger.PlacementRecord{}, false, err
		}
	}
	err = l.update(ctx, func(tx *bolt.Tx) (*entry, error) {
		var e *entry
		var err error
		rec, e, changed, err = l.recordPlacement(tx, p, w)
		return e, err
	})
	if err != nil {
		return ledger.PlacementRecord{}, false, err
	}
	return rec, changed, nil
}

// normalizeQuery checks q: one of VM or project, a period that does not
// end before it starts, a limit from 0 (MaxPlacements) to MaxPlacements.
func normalizeQuery(q ledger.PlacementQuery) (ledger.PlacementQuery, error) {
	bad := func(msg string) (ledger.PlacementQuery, error) {
		return q, ledger.Errorf(ledger.ErrInvalid, nil, "placements: "+msg)
	}
	var err error
	switch {
	case q.VM != "" && q.Project != "":
		return bad("ask for the placements of a VM or of a project, not both")
	case q.VM != "":
		if q.VM, err = filter.NormalizeUUID(q.VM); err != nil {
			return bad("vm: " + err.Error())
		}
	case q.Project != "":
		if q.Project, err = filter.NormalizeProjectID(q.Project); err != nil {
			return bad("project: " + err.Error())
		}
	default:
		return bad("a VM or a project is needed")
	}
	for _, t := range []*time.Time{&q.From, &q.To} {
		if t.IsZero() {
			continue
		}
		if t.Year() < 2000 || t.Year() > 9999 {
			return bad("from and to must be between the years 2000 and 9999")
		}
		*t = t.UTC()
	}
	if !q.To.IsZero() && q.To.Before(q.From) {
		return bad(fmt.Sprintf("from (%s) is after to (%s)", q.From.Format(time.RFC3339Nano), q.To.Format(time.RFC3339Nano)))
	}
	switch {
	case q.Limit < 0 || q.Limit > ledger.MaxPlacements:
		return bad(fmt.Sprintf("limit %d: want 0 (the most, %d) to %d", q.Limit, ledger.MaxPlacements, ledger.MaxPlacements))
	case q.Limit == 0:
		q.Limit = ledger.MaxPlacements
	}
	return q, nil
}

// Placements implements ledger.Residency: the placements of q.VM, or of
// the VMs of q.Project, whose At is in [q.From, q.To) (a zero From: from
// the first; a zero To: to the last), ordered by VM, At, witness and Ref,
// read in one read transaction. More than q.Limit (0: ledger.MaxPlacements)
// of them is an error (ErrInvalid), not a cut list: narrow the period.
// Errors: ErrInvalid, ErrUnavailable.
func (l *Ledger) Placements(ctx context.Context, q ledger.PlacementQuery) ([]ledger.PlacementRecord, error) {
	if err := l.ready(ctx); err != nil {
		return nil, err
	}
	q, err := normalizeQuery(q)
	if err != nil {
		return nil, err
	}
	var from, to []byte
	if !q.From.IsZero() {
		from = appendAt(nil, q.From)
	}
	if !q.To.IsZero() {
		to = appendAt(nil, q.To)
	}
	out := []ledger.PlacementRecord{}
	err = l.view(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketPlacements)
		if b == nil {
			return nil
		}
		// A long read gives up its read transaction once its caller has
		// (a writer growing the file waits for every reader).
		steps := 0
		step := func() error {
			if steps++; steps%1024 == 0 && ctx.Err() != nil {
				return ledger.Errorf(ledger.ErrUnavailable, ctx.Err(), "request ended: "+ctx.Err().Error())
			}
			return nil
		}
		add := func(k, v []byte) error {
			if err := step(); err != nil {
				return err
			}
			if len(out) == q.Limit {
				return ledger.Errorf(ledger.ErrInvalid, nil, fmt.Sprintf(
					"placements: more than %d placements match; narrow the period (from, to)", q.Limit))
			}
			_, rec, err := decodePlacement(k, v)
			if err != nil {
				return err
			}
			out = append(out, rec)
			return nil
		}
		if q.VM != "" {
			return scanVM(b.Cursor(), []byte(q.VM), from, to, add)
		}
		pb := tx.Bucket(bucketPlacementProjects)
		if pb == nil {
			return nil
		}
		prefix := append([]byte(q.Project), 0)
		c := pb.Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); {
			if err := step(); err != nil {
				return err
			}
			pk := k[len(prefix):]
			i := bytes.IndexByte(pk, 0)
			if i < 0 || len(pk) < i+1+atLen {
				return fmt.Errorf("placement project index key %q is malformed", filter.Clip(string(k)))
			}
			vm := pk[:i+1]
			at := pk[i+1 : i+1+atLen]
			switch {
			case from != nil && bytes.Compare(at, from) < 0:
				// Before the period: on to the VM's first in it.
				k, _ = c.Seek(append(append(bytes.Clone(prefix), vm...), from...))
				continue
			case to != nil && bytes.Compare(at, to) >= 0:
				// After the period: on to the next VM.
				next := append(bytes.Clone(prefix), vm...)
				next[len(next)-1] = 1
				k, _ = c.Seek(next)
				continue
			}
			v := b.Get(pk)
			if v == nil {
				return fmt.Errorf("placement %q is indexed by project %s and missing", filter.Clip(string(pk)), q.Project)
			}
			if err := add(pk, v); err != nil {
				return err
			}
			k, _ = c.Next()
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// scanVM calls add for each placement of vm whose At is in [from, to) (nil:
// unbounded), in key order.
func scanVM(c *bolt.Cursor, vm, from, to []byte, add func(k, v []byte) error) error {
	prefix := append(bytes.Clone(vm), 0)
	for k, v := c.Seek(append(bytes.Clone(prefix), from...)); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		if len(k) < len(prefix)+atLen {
			return fmt.Errorf("placement key %q is malformed", filter.Clip(string(k)))
		}
		if to != nil && bytes.Compare(k[len(prefix):len(prefix)+atLen], to) >= 0 {
			return nil
		}
		if err := add(k, v); err != nil {
			return err
		}
	}
	return nil
}

// Verify's replay of placements.

// placementHost is the host a placement is of, for the rules: where the VM
// runs, or the host it left.
func placementHost(p ledger.Placement) string {
	if p.Host != "" {
		return p.Host
	}
	return p.From
}

// placementSum is what Verify keeps of a placement the chain records, to
// check its record: its entry, the SHA-256 of its record's key and value
// as written, and its project.
type placementSum struct {
	seq     uint64
	sum     [sha256.Size]byte
	project string
}

// recordSum is the SHA-256 of a placements bucket's key and value.
func recordSum(k, v []byte) [sha256.Size]byte {
	h := sha256.New()
	h.Write(binary.AppendUvarint(nil, uint64(len(k))))
	h.Write(k)
	h.Write(v)
	var out [sha256.Size]byte
	h.Sum(out[:0])
	return out
}

// putPlacement checks that e is a placement the ledger could have recorded
// on the state replayed so far, its verdict decided again on that state,
// and keeps what checks its record (placementSum).
func (r *replay) putPlacement(e *entry) string {
	if e.Op != ledger.OpPut {
		return fmt.Sprintf("a placement's op is %q", filter.Clip(string(e.Op)))
	}
	var v placementValue
	if err := strictJSON(e.Value, &v); err != nil {
		return fmt.Sprintf("placement value: %v", err)
	}
	n, err := ledger.NormalizePlacement(v.Placement)
	same := n
	same.At = v.At
	if err != nil || same != v.Placement || !n.At.Equal(v.At) || v.At.Location() != time.UTC || n.VM != e.Key {
		return fmt.Sprintf("placement value is not the normalised placement of VM %q", filter.Clip(e.Key))
	}
	if !operator(e.Writer) {
		// A credential's host is not recorded: the rules are checked for
		// the role and the witness.
		who := access.Identity{MSP: e.Writer.MSP, ID: e.Writer.ID, Role: e.Writer.Role, Host: placementHost(n)}
		if err := access.MayRecordPlacement(who, n); err != nil {
			return fmt.Sprintf("a placement its writer may not record: %v", err)
		}
	}
	want, err := r.placementVerdict(e.Seq-1, n)
	if err != nil {
		return fmt.Sprintf("placement verdict: %v", err)
	}
	if !sameJSON(v.Verdict, want) {
		return fmt.Sprintf("the placement's verdict is not the decision on the ledger's state then (%s)", verdictWords(want))
	}
	rec := &ledger.PlacementRecord{Placement: v.Placement, Verdict: v.Verdict, Writer: e.Writer, TxID: e.TxID, RecordedAt: e.Time}
	data, err := placementJSON(e.Seq, rec)
	if err != nil {
		return err.Error()
	}
	r.placements = append(r.placements, placementSum{seq: e.Seq, sum: recordSum(placementKey(rec.Placement), data), project: rec.Project})
	if rec.Project != "" {
		r.projectPlacements++
	}
	return ""
}

func verdictWords(v *ledger.PlacementVerdict) string {
	switch {
	case v == nil:
		return "none: no host"
	case v.Allowed:
		return "allowed"
	}
	return "denied: " + string(v.Reason)
}

// placementVerdict decides p's verdict on the replayed state at height.
func (r *replay) placementVerdict(height uint64, p ledger.Placement) (*ledger.PlacementVerdict, error) {
	requireAttested := false
	if reg, ok := r.state[ledger.KindRegistry][ledger.RegistryKey]; ok {
		requireAttested = reg.registry.RequireAttested
	}
	return placementVerdict(p, height, requireAttested,
		func(s filter.Subject) (*ledger.RegulationRecord, error) {
			if cur, ok := r.state[ledger.KindRegulation][string(s)]; ok {
				return cur.regulation, nil
			}
			return nil, nil
		},
		func(name string) (*ledger.HostRecord, error) {
			if cur, ok := r.state[ledger.KindHost][name]; ok {
				return cur.host, nil
			}
			return nil, nil
		})
}

// verifyPlacements checks the placements buckets against sums, the
// placements the chain records in entry order (projects of them with a
// project): each record is the one its entry wrote, under its key, and each
// entry wrote one; each ref names its record, and each record of a project
// is in the project index, which holds nothing else. It returns the first
// entry found wrong (0: none, or a record no entry wrote) and what is wrong
// ("" if nothing).
func verifyPlacements(ctx context.Context, tx *bolt.Tx, sums []placementSum, projects int) (uint64, string, error) {
	b := tx.Bucket(bucketPlacements)
	refs := tx.Bucket(bucketPlacementRefs)
	var pc *bolt.Cursor
	if pb := tx.Bucket(bucketPlacementProjects); pb != nil {
		pc = pb.Cursor()
	}
	var (
		seen     int
		firstSeq uint64
		firstMsg string
	)
	note := func(seq uint64, msg string) {
		if firstMsg == "" || seq != 0 && (firstSeq == 0 || seq < firstSeq) {
			firstSeq, firstMsg = seq, msg
		}
	}
	if b != nil {
		err := b.ForEach(func(k, v []byte) error {
			if seen++; seen%1024 == 0 && ctx.Err() != nil {
				return ledger.Errorf(ledger.ErrUnavailable, ctx.Err(), "request ended: "+ctx.Err().Error())
			}
			if len(v) < 8 {
				note(0, fmt.Sprintf("placement record %q is malformed", filter.Clip(string(k))))
				return nil
			}
			seq := binary.BigEndian.Uint64(v)
			i, found := slices.BinarySearchFunc(sums, seq, func(s placementSum, seq uint64) int { return cmp.Compare(s.seq, seq) })
			if !found {
				note(0, fmt.Sprintf("placement record %q was written by no chain entry", filter.Clip(string(k))))
				return nil
			}
			if recordSum(k, v) != sums[i].sum {
				// What differs: the key or the record.
				msg := fmt.Sprintf("placement record %q differs from what the entry wrote", filter.Clip(string(k)))
				if e, err := readEntry(tx, seq); err == nil {
					if r, err := e.records(); err == nil && r.placement != nil && !bytes.Equal(k, placementKey(r.placement.Placement)) {
						msg = fmt.Sprintf("placement record %q is not under the key of the placement the entry wrote", filter.Clip(string(k)))
					}
				}
				note(seq, msg)
				return nil
			}
			if refs == nil || !bytes.Equal(refs.Get(refKeyOf(k)), k) {
				note(seq, fmt.Sprintf("the placement ref index does not name placement %q", filter.Clip(string(k))))
				return nil
			}
			if p := sums[i].project; p != "" {
				want := projectKey(p, k)
				if pc == nil {
					note(seq, fmt.Sprintf("placement %q is missing from the project index", filter.Clip(string(k))))
				} else if got, _ := pc.Seek(want); !bytes.Equal(got, want) {
					note(seq, fmt.Sprintf("placement %q is missing from the project index", filter.Clip(string(k))))
				}
			}
			return nil
		})
		if err != nil {
			return 0, "", err
		}
	}
	if firstMsg != "" {
		return firstSeq, firstMsg, nil
	}
	// Each record is its entry's, under its own key (the sum covers both):
	// as many records as entries means one for each; likewise each ref and
	// project key checked above is one of as many as there are.
	count := func(bk *bolt.Bucket) int {
		n := 0
		if bk != nil {
			c := bk.Cursor()
			for k, _ := c.First(); k != nil; k, _ = c.Next() {
				n++
			}
		}
		return n
	}
	switch {
	case seen != len(sums):
		return 0, fmt.Sprintf("the chain records %d placements and the ledger holds %d", len(sums), seen), nil
	case count(refs) != len(sums):
		return 0, fmt.Sprintf("the placement ref index has %d keys, and the chain's placements make %d: a placement recorded twice, or a ref of none", count(refs), len(sums)), nil
	case count(tx.Bucket(bucketPlacementProjects)) != projects:
		return 0, fmt.Sprintf("the placement project index has %d keys, and the chain's placements of projects make %d", count(tx.Bucket(bucketPlacementProjects)), projects), nil
	}
	return 0, "", nil
}
