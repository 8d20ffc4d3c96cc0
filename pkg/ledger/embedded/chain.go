package embedded

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
)

// entry is one link of the hash chain, stored as JSON under its sequence
// number (8 bytes, big endian) in the chain bucket.
type entry struct {
	Seq uint64 `json:"seq"`
	// Prev is the hash of the previous entry (hex; zeros for the first).
	Prev string      `json:"prev"`
	Kind ledger.Kind `json:"kind"`
	Key  string      `json:"key"`
	Op   ledger.Op   `json:"op"`
	// Value is what was written (a host, a regulation, governance's
	// records, a placement), as JSON; empty for a delete.
	Value  json.RawMessage `json:"value,omitempty"`
	Writer ledger.Writer   `json:"writer"`
	Time   time.Time       `json:"time"`
	// TxID is the hex SHA-256 of the entry's canonical encoding.
	TxID string `json:"tx_id"`
}

// hashDomain starts every hashed encoding, so that an entry's hash cannot be
// mistaken for the hash of anything else.
const hashDomain = "ledgerfence/embedded/entry/v1"

// zeroHash is the Prev of the first entry.
var zeroHash = hex.EncodeToString(make([]byte, sha256.Size))

// hash returns the SHA-256 of the canonical encoding of e: the domain, the
// sequence number (8 bytes, big endian), the previous hash (32 bytes), then
// kind, key, op, value, writer MSP, writer ID and the time (RFC 3339, UTC,
// nanoseconds), then the writer's role when it has one, each preceded by its
// length as a uvarint (so an entry without a role hashes as entries did
// before roles were recorded). TxID is not part of it: it is the hash.
func (e *entry) hash() ([sha256.Size]byte, error) {
	prev, err := hex.DecodeString(e.Prev)
	if err != nil || len(prev) != sha256.Size {
		return [sha256.Size]byte{}, fmt.Errorf("previous hash %q is not %d hex bytes", filter.Clip(e.Prev), sha256.Size)
	}
	buf := make([]byte, 0, 256+len(e.Value))
	buf = appendField(buf, []byte(hashDomain))
	buf = binary.BigEndian.AppendUint64(buf, e.Seq)
	buf = append(buf, prev...)
	buf = appendField(buf, []byte(e.Kind))
	buf = appendField(buf, []byte(e.Key))
	buf = appendField(buf, []byte(e.Op))
	buf = appendField(buf, e.Value)
	buf = appendField(buf, []byte(e.Writer.MSP))
	buf = appendField(buf, []byte(e.Writer.ID))
	buf = appendField(buf, []byte(e.Time.UTC().Format(time.RFC3339Nano)))
	if e.Writer.Role != "" {
		buf = appendField(buf, []byte(e.Writer.Role))
	}
	return sha256.Sum256(buf), nil
}

func appendField(buf, field []byte) []byte {
	buf = binary.AppendUvarint(buf, uint64(len(field)))
	return append(buf, field...)
}

// chainHead is the last entry of the chain, kept in the meta bucket as its
// sequence number (8 bytes, big endian) followed by its hash.
type chainHead struct {
	Seq  uint64
	Hash [sha256.Size]byte
}

func readHead(tx *bolt.Tx) (chainHead, error) {
	v := tx.Bucket(bucketMeta).Get(metaHead)
	if v == nil {
		return chainHead{}, nil
	}
	if len(v) != 8+sha256.Size {
		return chainHead{}, errors.New("chain head is malformed")
	}
	h := chainHead{Seq: binary.BigEndian.Uint64(v)}
	copy(h.Hash[:], v[8:])
	return h, nil
}

func (h chainHead) prev() string {
	if h.Seq == 0 {
		return zeroHash
	}
	return hex.EncodeToString(h.Hash[:])
}

func seqKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

// indexPrefix is where the index keeps the sequence numbers of one record's
// entries: kind, NUL, key, NUL, then each sequence number (8 bytes, big
// endian). Keys never hold a NUL: pkg/filter forbids it.
func indexPrefix(kind ledger.Kind, key string) []byte {
	p := make([]byte, 0, len(kind)+len(key)+2+8)
	p = append(p, kind...)
	p = append(p, 0)
	p = append(p, key...)
	return append(p, 0)
}

func indexKey(kind ledger.Kind, key string, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(indexPrefix(kind, key), seq)
}

// stateBucket is where the current records of a kind live. The buckets of
// governance (registry, proposals, bindings) are made by the first write of
// their kind, so that a file written before they existed opens as it is.
func stateBucket(kind ledger.Kind) ([]byte, bool) {
	switch kind {
	case ledger.KindHost:
		return bucketHosts, true
	case ledger.KindRegulation:
		return bucketRegulations, true
	case ledger.KindRegistry:
		return bucketRegistry, true
	case ledger.KindProposal:
		return bucketProposals, true
	case ledger.KindBinding:
		return bucketBindings, true
	}
	return nil, false
}

// stateKinds are the kinds of records in the state, in the order Verify
// compares them.
var stateKinds = []ledger.Kind{ledger.KindHost, ledger.KindRegulation, ledger.KindRegistry, ledger.KindProposal, ledger.KindBinding}

// appendEntry adds an entry for a write to the chain, the index and the
// state, all in tx, and returns it.
func appendEntry(tx *bolt.Tx, kind ledger.Kind, key string, op ledger.Op, value []byte, w ledger.Writer, now time.Time) (*entry, error) {
	h, err := readHead(tx)
	if err != nil {
		return nil, err
	}
	if key == "" && !(kind == ledger.KindProposal && op == ledger.OpPut) {
		return nil, fmt.Errorf("a %s entry needs a key", kind)
	}
	e := &entry{
		Seq:    h.Seq + 1,
		Prev:   h.prev(),
		Kind:   kind,
		Key:    key,
		Op:     op,
		Value:  value,
		Writer: w,
		Time:   now.UTC().Round(0),
	}
	sum, err := e.hash()
	if err != nil {
		return nil, err
	}
	e.TxID = hex.EncodeToString(sum[:])
	data, err := json.Marshal(e)
	if err != nil {
		return nil, err
	}
	if tx.Bucket(bucketChain).Get(seqKey(e.Seq)) != nil {
		// The head is behind the chain: the file was altered. Never
		// overwrite an entry.
		return nil, fmt.Errorf("chain entry %d exists beyond the chain head; the file is damaged (run Verify)", e.Seq)
	}
	if err := tx.Bucket(bucketChain).Put(seqKey(e.Seq), data); err != nil {
		return nil, err
	}
	if err := tx.Bucket(bucketMeta).Put(metaHead, append(seqKey(e.Seq), sum[:]...)); err != nil {
		return nil, err
	}
	if kind == ledger.KindPlacement {
		// Its own buckets are a placement's index (placement.go).
		return e, storePlacement(tx, e)
	}
	key = e.recordKey()
	if err := tx.Bucket(bucketIndex).Put(indexKey(kind, key, e.Seq), nil); err != nil {
		return nil, err
	}
	rec, err := e.stateJSON()
	if err != nil {
		return nil, err
	}
	name, ok := stateBucket(kind)
	if !ok {
		return nil, fmt.Errorf("unknown kind %q", kind)
	}
	b, err := tx.CreateBucketIfNotExists(name)
	if err != nil {
		return nil, err
	}
	if rec == nil {
		return e, b.Delete([]byte(key))
	}
	return e, b.Put([]byte(key), rec)
}

// recordKey is the key of the record e writes: its Key, but for the entry
// that makes a proposal, whose key is empty and whose record's key (the
// proposal's id) is its own tx id.
func (e *entry) recordKey() string {
	if e.Kind == ledger.KindProposal && e.Op == ledger.OpPut {
		return e.TxID
	}
	return e.Key
}

// records are the records one entry leaves in the state: one of them, by
// the entry's kind, or none for a delete.
type records struct {
	host       *ledger.HostRecord
	regulation *ledger.RegulationRecord
	registry   *ledger.RegistryRecord
	proposal   *ledger.ProposalRecord
	binding    *ledger.BindingRecord
	placement  *ledger.PlacementRecord
}

// The values of entries, beyond a regulation's (filter.Regulation). Every
// entry holds all that the record it leaves is made of, but for what the
// entry itself says (writer, time, tx id), so that an event or a history
// item is read from its entry alone.
type (
	// hostValue is a host put: the facts, and the attestation the record
	// keeps (access.KeepAttestation). A value written before attestations
	// existed is the facts alone.
	hostValue struct {
		filter.Host
		Attestation *ledger.Attestation `json:"attestation,omitempty"`
	}
	// An attestation's value is the host's record as it was (without an
	// attestation, ledger.HostRecord); the entry's writer attests its
	// facts.

	// registryValue is a registry put: the registry, its version and the
	// proposal applied (the entry before it).
	registryValue struct {
		ledger.Registry
		Version  uint64 `json:"version"`
		Proposal string `json:"proposal"`
	}
	// bindingValue is a binding put: a first binding (no proposal), or
	// the move a proposal applied (the entry before it).
	bindingValue struct {
		ledger.Binding
		Version  uint64 `json:"version"`
		Proposal string `json:"proposal,omitempty"`
	}
	// proposalValue is a new proposal (op put): the proposal, the version
	// of what it changes, whose approvals it needs, and its state once its
	// proposer approved it (applied: the entry after it applies it).
	proposalValue struct {
		ledger.Proposal
		Base   uint64   `json:"base"`
		Needed []string `json:"needed"`
		State  string   `json:"state"`
	}
	// An approval's value (op approve) is the proposal's record as it was;
	// the entry's writer approves it, and the last approval needed applies
	// it.
)

// opApprove is the op of an approval of a proposal in the chain.
const opApprove ledger.Op = "approve"

// publicOp is e's op as events and histories tell it: an approval is a put
// of the proposal's record, as every backend tells it.
func (e *entry) publicOp() ledger.Op {
	if e.Op == opApprove {
		return ledger.OpPut
	}
	return e.Op
}

// records decodes the value of e into the record it leaves in the state
// (none for a delete).
func (e *entry) records() (records, error) {
	if e.Op == ledger.OpDelete {
		return records{}, nil
	}
	bad := func(what string, err error) (records, error) {
		return records{}, fmt.Errorf("entry %d: %s value: %w", e.Seq, what, err)
	}
	switch {
	case e.Kind == ledger.KindHost && e.Op == ledger.OpAttest:
		var rec ledger.HostRecord
		if err := json.Unmarshal(e.Value, &rec); err != nil {
			return bad("attestation", err)
		}
		return records{host: e.attested(rec)}, nil
	case e.Kind == ledger.KindHost:
		var v hostValue
		if err := json.Unmarshal(e.Value, &v); err != nil {
			return bad("host", err)
		}
		rec := e.hostRecord(v.Host)
		rec.Attestation = v.Attestation
		return records{host: rec}, nil
	case e.Kind == ledger.KindRegulation:
		var g filter.Regulation
		if err := json.Unmarshal(e.Value, &g); err != nil {
			return bad("regulation", err)
		}
		return records{regulation: e.regulationRecord(g)}, nil
	case e.Kind == ledger.KindRegistry:
		var v registryValue
		if err := json.Unmarshal(e.Value, &v); err != nil {
			return bad("registry", err)
		}
		return records{registry: &ledger.RegistryRecord{Registry: v.Registry, Version: v.Version, Proposal: v.Proposal, TxID: e.TxID, UpdatedAt: e.Time}}, nil
	case e.Kind == ledger.KindBinding:
		var v bindingValue
		if err := json.Unmarshal(e.Value, &v); err != nil {
			return bad("binding", err)
		}
		return records{binding: &ledger.BindingRecord{Binding: v.Binding, Version: v.Version, Writer: e.Writer, Proposal: v.Proposal, TxID: e.TxID, UpdatedAt: e.Time}}, nil
	case e.Kind == ledger.KindPlacement:
		var v placementValue
		if err := json.Unmarshal(e.Value, &v); err != nil {
			return bad("placement", err)
		}
		return records{placement: &ledger.PlacementRecord{Placement: v.Placement, Verdict: v.Verdict, Writer: e.Writer, TxID: e.TxID, RecordedAt: e.Time}}, nil
	case e.Kind == ledger.KindProposal && e.Op == opApprove:
		var p ledger.ProposalRecord
		if err := json.Unmarshal(e.Value, &p); err != nil {
			return bad("approval", err)
		}
		return records{proposal: e.approved(p)}, nil
	case e.Kind == ledger.KindProposal:
		var v proposalValue
		if err := json.Unmarshal(e.Value, &v); err != nil {
			return bad("proposal", err)
		}
		return records{proposal: &ledger.ProposalRecord{
			Proposal: v.Proposal, ID: e.TxID, Base: v.Base, Needed: v.Needed,
			Approvals: []ledger.Approval{{Writer: e.Writer, TxID: e.TxID, At: e.Time}},
			State:     v.State, UpdatedAt: e.Time,
		}}, nil
	}
	return records{}, fmt.Errorf("entry %d: unknown kind %q", e.Seq, filter.Clip(string(e.Kind)))
}

// hostRecord and regulationRecord are the records e leaves with the value h
// or g it wrote.
func (e *entry) hostRecord(h filter.Host) *ledger.HostRecord {
	return &ledger.HostRecord{Host: h, Writer: e.Writer, TxID: e.TxID, UpdatedAt: e.Time}
}

func (e *entry) regulationRecord(g filter.Regulation) *ledger.RegulationRecord {
	return &ledger.RegulationRecord{Regulation: g, Writer: e.Writer, TxID: e.TxID, UpdatedAt: e.Time}
}

// attested is rec, the host's record as it was, attested by e's writer: it
// keeps its claimer as writer, and e is the last transaction that wrote it.
func (e *entry) attested(rec ledger.HostRecord) *ledger.HostRecord {
	rec.Attestation = &ledger.Attestation{
		Country: rec.Country, Organizations: slices.Clone(rec.Organizations),
		Writer: e.Writer, TxID: e.TxID, At: e.Time,
	}
	rec.TxID, rec.UpdatedAt = e.TxID, e.Time
	return &rec
}

// approved is p, the proposal as it was, approved by e's writer: applied
// when that was the last approval it needed.
func (e *entry) approved(p ledger.ProposalRecord) *ledger.ProposalRecord {
	p.Approvals = append(slices.Clip(p.Approvals), ledger.Approval{Writer: e.Writer, TxID: e.TxID, At: e.Time})
	p.UpdatedAt = e.Time
	if len(p.Missing()) == 0 {
		p.State = ledger.ProposalApplied
	}
	return &p
}

// stateJSON is the record e leaves in its state bucket, exactly as stored
// (nil for a delete). Writes and Verify's replay both encode it with
// stateOf, so the state written and the state replayed are byte for byte
// the same.
func (e *entry) stateJSON() ([]byte, error) {
	r, err := e.records()
	if err != nil {
		return nil, err
	}
	return stateOf(r)
}

// stateOf encodes a record as its state bucket stores it (nil for none).
func stateOf(r records) ([]byte, error) {
	switch {
	case r.host != nil:
		return json.Marshal(r.host)
	case r.regulation != nil:
		return json.Marshal(r.regulation)
	case r.registry != nil:
		return json.Marshal(r.registry)
	case r.proposal != nil:
		return json.Marshal(r.proposal)
	case r.binding != nil:
		return json.Marshal(r.binding)
	}
	return nil, nil
}

// event is e as the Watch stream carries it.
func (e *entry) event() (ledger.Event, error) {
	r, err := e.records()
	if err != nil {
		return ledger.Event{}, err
	}
	return ledger.Event{
		Kind: e.Kind, Key: e.recordKey(), Op: e.publicOp(), TxID: e.TxID, Block: e.Seq,
		Writer: e.Writer, Time: e.Time, Host: r.host, Regulation: r.regulation,
		Registry: r.registry, Proposal: r.proposal, Binding: r.binding, Placement: r.placement,
	}, nil
}

// change is e as a History item.
func (e *entry) change() (ledger.Change, error) {
	r, err := e.records()
	if err != nil {
		return ledger.Change{}, err
	}
	return ledger.Change{
		TxID: e.TxID, Block: e.Seq, Time: e.Time, Writer: e.Writer, Op: e.publicOp(),
		Host: r.host, Regulation: r.regulation, Registry: r.registry, Proposal: r.proposal, Binding: r.binding,
		Placement: r.placement,
	}, nil
}

func decodeEntry(data []byte) (*entry, error) {
	var e entry
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		return nil, err
	}
	return &e, nil
}

// readEntry loads entry seq.
func readEntry(tx *bolt.Tx, seq uint64) (*entry, error) {
	data := tx.Bucket(bucketChain).Get(seqKey(seq))
	if data == nil {
		return nil, fmt.Errorf("chain entry %d is missing", seq)
	}
	e, err := decodeEntry(data)
	if err != nil {
		return nil, fmt.Errorf("chain entry %d: %w", seq, err)
	}
	return e, nil
}

// lastRegulationVersion returns the version of the last put of subject in
// the chain, 0 if there is none. It is what a put after a delete continues
// from.
func lastRegulationVersion(tx *bolt.Tx, subject filter.Subject) (uint64, error) {
	prefix := indexPrefix(ledger.KindRegulation, string(subject))
	c := tx.Bucket(bucketIndex).Cursor()
	k, _ := c.Seek(append(bytes.Clone(prefix), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff))
	if k == nil {
		k, _ = c.Last()
	} else {
		k, _ = c.Prev()
	}
	for ; k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Prev() {
		e, err := readEntry(tx, binary.BigEndian.Uint64(k[len(prefix):]))
		if err != nil {
			return 0, err
		}
		if e.Op != ledger.OpPut {
			continue
		}
		r, err := e.records()
		if err != nil {
			return 0, err
		}
		return r.regulation.Version, nil
	}
	return 0, nil
}
