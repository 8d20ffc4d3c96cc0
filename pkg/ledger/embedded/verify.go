package embedded

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	bolt "go.etcd.io/bbolt"

	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/access"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/head"
)

// ErrTampered is returned by Verify when the file does not match its hash
// chain, or the chain does not hold a head it must hold (the head file's, or
// one given with ExpectHead).
var ErrTampered = errors.New("embedded: the ledger file does not match its hash chain")

// VerifyReport is the outcome of Verify.
type VerifyReport struct {
	// Height is the number of chain entries checked.
	Height uint64 `json:"height"`
	// Head is the hash of the last entry (its tx id). A chain rewritten
	// from its first entry on, hashes and all, is consistent in itself:
	// the head file, or a head kept elsewhere (ExpectHead), detects that.
	Head string `json:"head,omitempty"`
	// Genesis is the hash of the first entry.
	Genesis string `json:"genesis,omitempty"`
	// Hosts and Regulations count the current records checked against the
	// chain.
	Hosts       int `json:"hosts"`
	Regulations int `json:"regulations"`
	// Proposals and Bindings count governance's records checked, and
	// RegistryVersion is the version of the registry in force (0: none).
	Proposals       int    `json:"proposals,omitempty"`
	Bindings        int    `json:"bindings,omitempty"`
	RegistryVersion uint64 `json:"registry_version,omitempty"`
	// Placements counts the placements checked against the chain.
	Placements int `json:"placements,omitempty"`
	// HeadFile is the head the head file next to the ledger remembers;
	// HeadFileBehind counts the entries the chain has beyond it (the head
	// file follows commits within a few milliseconds, and at close: a crash
	// can leave it behind; Open writes it then).
	HeadFile       *head.Head `json:"head_file,omitempty"`
	HeadFileBehind uint64     `json:"head_file_behind,omitempty"`
	// Expected are the heads given with ExpectHead, each found in the chain
	// when OK.
	Expected []head.Head `json:"expected,omitempty"`
	// OK is true when every check passed.
	OK bool `json:"ok"`
	// BrokenSeq is the first chain entry found wrong; 0 when OK, or when
	// the fault lies in no entry (a record that no entry wrote).
	BrokenSeq uint64 `json:"broken_seq,omitempty"`
	// Problem says what is wrong, empty when OK.
	Problem string `json:"problem,omitempty"`
}

// ChainHead is the head of the chain the report verified.
func (r VerifyReport) ChainHead() head.Head {
	if r.Height == 0 {
		return head.Head{Hash: head.ZeroHash}
	}
	return head.Head{Height: r.Height, Hash: r.Head}
}

// VerifyOption adds a check to Verify.
type VerifyOption func(*verifyConfig)

type verifyConfig struct {
	expect     []head.Head
	noHeadFile bool
}

// ExpectHead makes Verify fail unless the chain holds h: an entry at
// h.Height whose hash is h.Hash. A head kept outside the data directory (a
// signed head of filterd's, published on NATS or read at GET
// /v1/ledger/head) so detects a chain rewritten with recomputed hashes, or
// rolled back past it, even with its head file.
func ExpectHead(h head.Head) VerifyOption {
	return func(c *verifyConfig) { c.expect = append(c.expect, h) }
}

// withoutHeadFile skips the head file (Adopt, for a ledger that has none).
func withoutHeadFile() VerifyOption { return func(c *verifyConfig) { c.noHeadFile = true } }

// Verify checks the whole file in one read transaction: every chain entry
// follows the previous one (sequence number, previous hash), its hash and tx
// id are recomputed from its content, its value obeys pkg/filter's rules and
// the owner and version rules, and the state (hosts, regulations, the history
// index, the chain head) is exactly the state replayed from the chain. It
// stops at the first broken entry. Then the chain must hold the head the
// head file remembers (and be at most one entry longer), and every head given
// with ExpectHead. When a check fails it returns the report and an error
// matching ErrTampered; other errors match ErrUnavailable (a file whose
// reading panics or faults: ErrCorrupt too).
func (l *Ledger) Verify(ctx context.Context, opts ...VerifyOption) (VerifyReport, error) {
	var cfg verifyConfig
	for _, o := range opts {
		o(&cfg)
	}
	for _, h := range cfg.expect {
		if err := h.Validate(); err != nil {
			return VerifyReport{}, ledger.Errorf(ledger.ErrInvalid, err, "expected head: "+err.Error())
		}
	}
	// The head file is read, and the read transaction begun, with writes
	// held back, so that both tell of the same commit.
	l.wmu.Lock()
	locked := true
	unlock := func() {
		if locked {
			locked = false
			l.wmu.Unlock()
		}
	}
	defer unlock()
	var rem remembered
	hasHead := false
	if !cfg.noHeadFile {
		var err error
		if rem, hasHead, err = readHeadFile(l.headPath); err != nil && !errors.Is(err, ErrTampered) {
			return VerifyReport{}, ledger.Errorf(ledger.ErrUnavailable, err, "cannot read the head file: "+err.Error())
		} else if err != nil {
			return VerifyReport{Problem: err.Error()}, err
		}
	}
	hashes := map[uint64]string{1: ""}
	if hasHead {
		hashes[rem.Height] = ""
	}
	for _, h := range cfg.expect {
		hashes[h.Height] = ""
	}
	var rep VerifyReport
	err := l.view(ctx, func(tx *bolt.Tx) error {
		unlock()
		var err error
		rep, err = verify(ctx, tx, hashes)
		return err
	})
	if err != nil {
		return VerifyReport{}, err
	}
	rep.Genesis = hashes[1]
	rep.Expected = cfg.expect
	hashAt := func(n uint64) string {
		if n == 0 {
			return head.ZeroHash
		}
		return hashes[n]
	}
	switch {
	case !rep.OK:
	case cfg.noHeadFile:
	case !hasHead:
		rep.OK, rep.Problem = false, fmt.Sprintf("there is no head file (%s): nothing tells that this is the ledger the directory held; "+
			"check it with --expect-head against a head kept elsewhere, then adopt it", l.headPath)
	default:
		h := rem.Head
		rep.HeadFile = &h
		if seq, msg, behind := compareRemembered(rem, rep.Height, hashAt); msg != "" {
			rep.OK, rep.BrokenSeq, rep.Problem = false, seq, "head file: "+msg
		} else {
			rep.HeadFileBehind = behind
		}
	}
	if rep.OK {
		for _, h := range cfg.expect {
			switch got := hashAt(h.Height); {
			case h.Height > rep.Height:
				rep.OK, rep.BrokenSeq = false, rep.Height+1
				rep.Problem = fmt.Sprintf("expected head: the chain has %d entries, and the expected head is at height %d (%s): the ledger was rolled back", rep.Height, h.Height, h)
			case got != h.Hash:
				rep.OK, rep.BrokenSeq = false, h.Height
				rep.Problem = fmt.Sprintf("expected head: entry %d's hash is %s, and the expected head is %s: the chain was rewritten", h.Height, got, h)
			}
			if !rep.OK {
				break
			}
		}
	}
	if !rep.OK {
		return rep, fmt.Errorf("%w: %s", ErrTampered, rep.Problem)
	}
	return rep, nil
}

// replayed is a record as the chain leaves it.
type replayed struct {
	json []byte // the state record, as stored
	seq  uint64 // the entry that wrote it
	records
}

type replay struct {
	state    map[ledger.Kind]map[string]replayed
	versions map[string]uint64 // last version put per subject, across deletes
	index    map[string]struct{}
	// applied is the proposal the last entry applied, whose change must be
	// the next entry.
	applied *ledger.ProposalRecord
	// placements are the placements replayed, in entry order;
	// projectPlacements counts those of them with a project.
	placements        []placementSum
	projectPlacements int
}

// verify checks the file in tx (see Verify) and records in hashes the hash of
// the entry at each height hashes has a key for.
func verify(ctx context.Context, tx *bolt.Tx, hashes map[uint64]string) (VerifyReport, error) {
	var rep VerifyReport
	fail := func(seq uint64, format string, args ...any) (VerifyReport, error) {
		rep.OK, rep.BrokenSeq = false, seq
		rep.Problem = fmt.Sprintf(format, args...)
		if seq != 0 {
			rep.Problem = fmt.Sprintf("entry %d: %s", seq, rep.Problem)
		}
		return rep, nil
	}
	r := replay{
		state:    map[ledger.Kind]map[string]replayed{},
		versions: map[string]uint64{},
		index:    map[string]struct{}{},
	}
	for _, k := range stateKinds {
		r.state[k] = map[string]replayed{}
	}

	// The chain, entry by entry.
	prev := zeroHash
	var last [32]byte
	next := uint64(1)
	c := tx.Bucket(bucketChain).Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if next%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return rep, ledger.Errorf(ledger.ErrUnavailable, err, "request ended: "+err.Error())
			}
		}
		if len(k) != 8 {
			return fail(next, "unexpected chain key %x", k)
		}
		if seq := binary.BigEndian.Uint64(k); seq != next {
			return fail(next, "missing (the chain goes on at entry %d)", seq)
		}
		e, err := decodeEntry(v)
		if err != nil {
			return fail(next, "not a chain entry: %v", err)
		}
		if e.Seq != next {
			return fail(next, "says it is entry %d", e.Seq)
		}
		if e.Prev != prev {
			return fail(next, "previous hash %s does not match entry %d (%s)", filter.Clip(e.Prev), next-1, prev)
		}
		sum, err := e.hash()
		if err != nil {
			return fail(next, "%v", err)
		}
		if e.TxID != hex.EncodeToString(sum[:]) {
			return fail(next, "content does not match its hash (tx id %s, content hashes to %x)", filter.Clip(e.TxID), sum)
		}
		if msg := r.apply(e); msg != "" {
			return fail(next, "%s", msg)
		}
		if _, ok := hashes[next]; ok {
			hashes[next] = e.TxID
		}
		prev, last = e.TxID, sum
		rep.Height = next
		next++
	}
	if rep.Height > 0 {
		rep.Head = prev
	}
	if r.applied != nil {
		return fail(rep.Height+1, "missing: entry %d applied proposal %s, and no entry makes its change", rep.Height, r.applied.ID)
	}

	// The head.
	h, err := readHead(tx)
	if err != nil {
		return fail(rep.Height+1, "%v", err)
	}
	switch {
	case h.Seq > rep.Height:
		return fail(rep.Height+1, "missing (the chain head is entry %d)", h.Seq)
	case h.Seq < rep.Height:
		return fail(h.Seq+1, "beyond the chain head (entry %d)", h.Seq)
	case h.Seq > 0 && h.Hash != last:
		return fail(h.Seq, "the chain head holds another hash (%x)", h.Hash)
	}

	// The current records against the replayed ones.
	firstSeq, firstMsg := uint64(0), ""
	note := func(seq uint64, msg string) {
		if firstMsg == "" || seq != 0 && (firstSeq == 0 || seq < firstSeq) {
			firstSeq, firstMsg = seq, msg
		}
	}
	for _, kind := range stateKinds {
		name, _ := stateBucket(kind)
		want := r.state[kind]
		seen := 0
		b := tx.Bucket(name)
		if b != nil {
			err := b.ForEach(func(k, v []byte) error {
				seen++
				exp, ok := want[string(k)]
				switch {
				case !ok:
					note(0, fmt.Sprintf("%s record %q was written by no chain entry", kind, filter.Clip(string(k))))
				case !bytes.Equal(v, exp.json):
					note(exp.seq, fmt.Sprintf("%s record %q differs from what the entry wrote", kind, filter.Clip(string(k))))
				}
				return nil
			})
			if err != nil {
				return rep, err
			}
		}
		for key, exp := range want {
			if b == nil || b.Get([]byte(key)) == nil {
				note(exp.seq, fmt.Sprintf("%s record %q is missing", kind, filter.Clip(key)))
			}
		}
		switch kind {
		case ledger.KindHost:
			rep.Hosts = seen
		case ledger.KindRegulation:
			rep.Regulations = seen
		case ledger.KindProposal:
			rep.Proposals = seen
		case ledger.KindBinding:
			rep.Bindings = seen
		case ledger.KindRegistry:
			if cur, ok := want[ledger.RegistryKey]; ok {
				rep.RegistryVersion = cur.registry.Version
			}
		}
	}
	if firstMsg != "" {
		return fail(firstSeq, "%s", firstMsg)
	}

	// The history index.
	err = tx.Bucket(bucketIndex).ForEach(func(k, _ []byte) error {
		if _, ok := r.index[string(k)]; !ok {
			note(0, fmt.Sprintf("history index key %q names no chain entry", filter.Clip(string(k))))
		} else {
			delete(r.index, string(k))
		}
		return nil
	})
	if err != nil {
		return rep, err
	}
	for k := range r.index {
		seq := binary.BigEndian.Uint64([]byte(k[len(k)-8:]))
		note(seq, "missing from the history index")
	}
	if firstMsg != "" {
		return fail(firstSeq, "%s", firstMsg)
	}

	// The placements and their indexes.
	seq, msg, err := verifyPlacements(ctx, tx, r.placements, r.projectPlacements)
	if err != nil {
		return rep, err
	}
	if msg != "" {
		return fail(seq, "%s", msg)
	}
	rep.Placements = len(r.placements)
	rep.OK = true
	return rep, nil
}

// apply checks that e is a write the ledger could have made in the state
// replayed so far, and replays it. It returns what is wrong, "" if nothing.
func (r *replay) apply(e *entry) string {
	state, ok := r.state[e.Kind]
	if !ok && e.Kind != ledger.KindPlacement {
		return fmt.Sprintf("unknown kind %q", filter.Clip(string(e.Kind)))
	}
	if e.Writer.ID == "" {
		return "no writer"
	}
	applied := r.applied
	r.applied = nil
	if applied != nil && !(e.Op == ledger.OpPut && (e.Kind == ledger.KindRegistry || e.Kind == ledger.KindBinding)) {
		return fmt.Sprintf("entry %d applied proposal %s, and this entry is not its change", e.Seq-1, applied.ID)
	}
	if e.Kind == ledger.KindPlacement {
		return r.putPlacement(e)
	}
	key := e.recordKey()
	cur, exists := state[key]
	var (
		rec records
		msg string
	)
	switch {
	case e.Op == ledger.OpDelete:
		if e.Kind != ledger.KindRegulation {
			return fmt.Sprintf("a %s cannot be deleted", e.Kind)
		}
		if len(e.Value) != 0 {
			return "a delete carries a value"
		}
		if !exists {
			return fmt.Sprintf("deletes %q, which does not exist", filter.Clip(e.Key))
		}
	case e.Kind == ledger.KindHost && e.Op == ledger.OpAttest:
		rec, msg = r.attest(e, cur, exists)
	case e.Kind == ledger.KindProposal && e.Op == opApprove:
		rec, msg = r.approve(e, cur, exists)
	case e.Op != ledger.OpPut:
		return fmt.Sprintf("unknown op %q", filter.Clip(string(e.Op)))
	case e.Kind == ledger.KindHost:
		rec, msg = r.putHost(e, cur, exists)
	case e.Kind == ledger.KindRegulation:
		rec, msg = r.putRegulation(e, cur, exists)
	case e.Kind == ledger.KindRegistry:
		rec, msg = r.putRegistry(e, cur, exists, applied)
	case e.Kind == ledger.KindBinding:
		rec, msg = r.putBinding(e, cur, exists, applied)
	default:
		rec, msg = r.propose(e)
	}
	if msg != "" {
		return msg
	}
	r.index[string(indexKey(e.Kind, key, e.Seq))] = struct{}{}
	if e.Op == ledger.OpDelete {
		delete(state, key)
		return ""
	}
	data, err := stateOf(rec)
	if err != nil {
		return err.Error()
	}
	state[key] = replayed{json: data, seq: e.Seq, records: rec}
	return ""
}

func (r *replay) putHost(e *entry, cur replayed, exists bool) (records, string) {
	var v hostValue
	if err := strictJSON(e.Value, &v); err != nil {
		return records{}, fmt.Sprintf("host value: %v", err)
	}
	n, err := filter.NormalizeHost(v.Host)
	if err != nil {
		return records{}, fmt.Sprintf("host value: %v", err)
	}
	if !n.Equal(v.Host) || v.Name != e.Key {
		return records{}, fmt.Sprintf("host value is not the normalised record of %q", filter.Clip(e.Key))
	}
	var old ledger.HostRecord
	if exists {
		old = *cur.host
	}
	if !sameJSON(v.Attestation, access.KeepAttestation(old, exists, v.Host)) {
		return records{}, "the host's attestation is not the one its record kept"
	}
	rec := e.hostRecord(v.Host)
	rec.Attestation = v.Attestation
	return records{host: rec}, ""
}

func (r *replay) attest(e *entry, cur replayed, exists bool) (records, string) {
	if !exists {
		return records{}, fmt.Sprintf("attests host %q, which is not registered", filter.Clip(e.Key))
	}
	if cur.host.Attested() {
		return records{}, fmt.Sprintf("attests host %q, whose facts are attested already", filter.Clip(e.Key))
	}
	was := *cur.host
	was.Attestation = nil
	if want, err := json.Marshal(was); err != nil || !bytes.Equal(e.Value, want) {
		return records{}, fmt.Sprintf("the attestation is not of host %q's record as it was", filter.Clip(e.Key))
	}
	if e.Writer == was.Writer {
		return records{}, "an attestation by the writer of the facts it attests"
	}
	return records{host: e.attested(was)}, ""
}

func (r *replay) putRegulation(e *entry, cur replayed, exists bool) (records, string) {
	var g filter.Regulation
	if err := strictJSON(e.Value, &g); err != nil {
		return records{}, fmt.Sprintf("regulation value: %v", err)
	}
	s, err := filter.ParseSubject(e.Key)
	if err != nil || string(s) != e.Key || g.Subject != s {
		return records{}, fmt.Sprintf("regulation value is not the record of %q", filter.Clip(e.Key))
	}
	allow, err := filter.NormalizeRules(g.Allow)
	if err != nil || !slices.Equal(allow, g.Allow) {
		return records{}, "regulation rules are not normalised"
	}
	if t, err := filter.NormalizeTerms(s, g.Terms()); err != nil || !t.Equal(g.Terms()) {
		return records{}, "regulation terms (require_attested, project) are not normalised"
	}
	wantOwner := e.Writer.String()
	if exists {
		wantOwner = cur.regulation.Owner
	}
	if g.Owner != wantOwner {
		return records{}, fmt.Sprintf("owner %q, want %q", filter.Clip(g.Owner), filter.Clip(wantOwner))
	}
	if want := r.versions[e.Key] + 1; g.Version != want {
		return records{}, fmt.Sprintf("version %d, want %d", g.Version, want)
	}
	r.versions[e.Key] = g.Version
	return records{regulation: e.regulationRecord(g)}, ""
}

// operator reports whether w is the operator's writer: no role the rules
// know (the operator's writes are checked by no rule).
func operator(w ledger.Writer) bool { return !access.KnownRole(w.Role) }

// version is the version of the registry or binding a proposal changes.
func (r *replay) version(p ledger.Proposal) uint64 {
	switch {
	case p.Kind == ledger.ProposeRegistry:
		if cur, ok := r.state[ledger.KindRegistry][ledger.RegistryKey]; ok {
			return cur.registry.Version
		}
	case p.Binding != nil:
		if cur, ok := r.state[ledger.KindBinding][p.Binding.Project]; ok {
			return cur.binding.Version
		}
	}
	return 0
}

func (r *replay) propose(e *entry) (records, string) {
	if e.Key != "" {
		return records{}, "a proposal's entry has a key (its id is its tx id)"
	}
	var v proposalValue
	if err := strictJSON(e.Value, &v); err != nil {
		return records{}, fmt.Sprintf("proposal value: %v", err)
	}
	switch v.Kind {
	case ledger.ProposeRegistry:
		if v.Registry == nil || v.Binding != nil {
			return records{}, "a registry proposal without a registry, or with a binding"
		}
		n, err := access.NormalizeRegistry(*v.Registry)
		if err != nil || !sameJSON(n, *v.Registry) {
			return records{}, "the proposed registry is not normalised"
		}
	case ledger.ProposeBinding:
		if v.Binding == nil || v.Registry != nil {
			return records{}, "a binding proposal without a binding, or with a registry"
		}
		p, err := filter.NormalizeProjectID(v.Binding.Project)
		if err != nil || p != v.Binding.Project {
			return records{}, "the proposed binding's project is not normalised"
		}
		if _, ok := r.state[ledger.KindBinding][p]; !ok {
			return records{}, fmt.Sprintf("proposes to move project %s, which is bound to no organisation", p)
		}
	default:
		return records{}, fmt.Sprintf("proposal of unknown kind %q", filter.Clip(v.Kind))
	}
	if v.Base != r.version(v.Proposal) {
		return records{}, fmt.Sprintf("proposal base %d, want %d", v.Base, r.version(v.Proposal))
	}
	if len(v.Needed) == 0 || !slices.IsSorted(v.Needed) || len(slices.Compact(slices.Clone(v.Needed))) != len(v.Needed) {
		return records{}, "the approvals a proposal needs are not a sorted set"
	}
	if !operator(e.Writer) && !slices.Contains(v.Needed, e.Writer.MSP) {
		return records{}, "a proposal that does not need its proposer's approval"
	}
	want := ledger.ProposalOpen
	if operator(e.Writer) || len(v.Needed) == 1 && v.Needed[0] == e.Writer.MSP {
		want = ledger.ProposalApplied
	}
	if v.State != want {
		return records{}, fmt.Sprintf("proposal state %q, want %q", filter.Clip(v.State), want)
	}
	rec, err := e.records()
	if err != nil {
		return records{}, err.Error()
	}
	if rec.proposal.State == ledger.ProposalApplied {
		r.applied = rec.proposal
	}
	return rec, ""
}

func (r *replay) approve(e *entry, cur replayed, exists bool) (records, string) {
	if !exists {
		return records{}, fmt.Sprintf("approves proposal %q, which does not exist", filter.Clip(e.Key))
	}
	if !bytes.Equal(e.Value, cur.json) {
		return records{}, fmt.Sprintf("the approval is not of proposal %s as it was", filter.Clip(e.Key))
	}
	p := cur.proposal
	switch {
	case p.State != ledger.ProposalOpen:
		return records{}, fmt.Sprintf("approves proposal %s, which is %s", p.ID, p.State)
	case p.Base != r.version(p.Proposal):
		return records{}, fmt.Sprintf("approves proposal %s, which is stale", p.ID)
	case !slices.Contains(p.Needed, e.Writer.MSP) || p.Approved(e.Writer.MSP):
		return records{}, fmt.Sprintf("an approval of proposal %s it does not need", p.ID)
	}
	rec, err := e.records()
	if err != nil {
		return records{}, err.Error()
	}
	if rec.proposal.State == ledger.ProposalApplied {
		r.applied = rec.proposal
	}
	return rec, ""
}

func (r *replay) putRegistry(e *entry, cur replayed, exists bool, applied *ledger.ProposalRecord) (records, string) {
	if e.Key != ledger.RegistryKey {
		return records{}, fmt.Sprintf("the registry's key is %q", filter.Clip(e.Key))
	}
	var v registryValue
	if err := strictJSON(e.Value, &v); err != nil {
		return records{}, fmt.Sprintf("registry value: %v", err)
	}
	if applied == nil || applied.Kind != ledger.ProposeRegistry || v.Proposal != applied.ID || !sameJSON(v.Registry, *applied.Registry) {
		return records{}, "a registry that is not the change of the proposal the entry before applied"
	}
	want := uint64(1)
	if exists {
		want = cur.registry.Version + 1
	}
	if v.Version != want {
		return records{}, fmt.Sprintf("registry version %d, want %d", v.Version, want)
	}
	rec, err := e.records()
	if err != nil {
		return records{}, err.Error()
	}
	return rec, ""
}

func (r *replay) putBinding(e *entry, cur replayed, exists bool, applied *ledger.ProposalRecord) (records, string) {
	var v bindingValue
	if err := strictJSON(e.Value, &v); err != nil {
		return records{}, fmt.Sprintf("binding value: %v", err)
	}
	if p, err := filter.NormalizeProjectID(v.Project); err != nil || p != v.Project || p != e.Key {
		return records{}, fmt.Sprintf("binding value is not the normalised binding of %q", filter.Clip(e.Key))
	}
	switch {
	case v.Proposal != "":
		if applied == nil || applied.Kind != ledger.ProposeBinding || v.Proposal != applied.ID || v.Binding != *applied.Binding {
			return records{}, "a binding that is not the change of the proposal the entry before applied"
		}
	case applied != nil:
		return records{}, fmt.Sprintf("entry %d applied proposal %s, and this entry is not its change", e.Seq-1, applied.ID)
	case v.MSP != e.Writer.MSP || exists && cur.binding.MSP == v.MSP:
		return records{}, "a binding without a proposal binds the project to its writer's organisation, to which it was not bound"
	}
	want := uint64(1)
	if exists {
		want = cur.binding.Version + 1
	}
	if v.Version != want {
		return records{}, fmt.Sprintf("binding version %d, want %d", v.Version, want)
	}
	rec, err := e.records()
	if err != nil {
		return records{}, err.Error()
	}
	return rec, ""
}

// sameJSON reports whether a and b encode alike.
func sameJSON(a, b any) bool {
	x, err1 := json.Marshal(a)
	y, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && bytes.Equal(x, y)
}

func strictJSON(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data")
	}
	return nil
}
