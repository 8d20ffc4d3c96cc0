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
	reg  *ledger.RegulationRecord
}

type replay struct {
	state    map[ledger.Kind]map[string]replayed
	versions map[string]uint64 // last version put per subject, across deletes
	index    map[string]struct{}
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
		state:    map[ledger.Kind]map[string]replayed{ledger.KindHost: {}, ledger.KindRegulation: {}},
		versions: map[string]uint64{},
		index:    map[string]struct{}{},
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
	for _, kind := range []ledger.Kind{ledger.KindHost, ledger.KindRegulation} {
		b, _ := stateBucket(kind)
		want := r.state[kind]
		seen := 0
		err := tx.Bucket(b).ForEach(func(k, v []byte) error {
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
		for key, exp := range want {
			if tx.Bucket(b).Get([]byte(key)) == nil {
				note(exp.seq, fmt.Sprintf("%s record %q is missing", kind, filter.Clip(key)))
			}
		}
		if kind == ledger.KindHost {
			rep.Hosts = seen
		} else {
			rep.Regulations = seen
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
	rep.OK = true
	return rep, nil
}

// apply checks that e is a write the ledger could have made in the state
// replayed so far, and replays it. It returns what is wrong, "" if nothing.
func (r *replay) apply(e *entry) string {
	state, ok := r.state[e.Kind]
	if !ok {
		return fmt.Sprintf("unknown kind %q", filter.Clip(string(e.Kind)))
	}
	if e.Writer.ID == "" {
		return "no writer"
	}
	cur, exists := state[e.Key]
	var (
		hostRec *ledger.HostRecord
		regRec  *ledger.RegulationRecord
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
	case e.Op != ledger.OpPut:
		return fmt.Sprintf("unknown op %q", filter.Clip(string(e.Op)))
	case e.Kind == ledger.KindHost:
		var h filter.Host
		if err := strictJSON(e.Value, &h); err != nil {
			return fmt.Sprintf("host value: %v", err)
		}
		n, err := filter.NormalizeHost(h)
		if err != nil {
			return fmt.Sprintf("host value: %v", err)
		}
		if !n.Equal(h) || h.Name != e.Key {
			return fmt.Sprintf("host value is not the normalised record of %q", filter.Clip(e.Key))
		}
		hostRec = e.hostRecord(h)
	default:
		var g filter.Regulation
		if err := strictJSON(e.Value, &g); err != nil {
			return fmt.Sprintf("regulation value: %v", err)
		}
		s, err := filter.ParseSubject(e.Key)
		if err != nil || string(s) != e.Key || g.Subject != s {
			return fmt.Sprintf("regulation value is not the record of %q", filter.Clip(e.Key))
		}
		allow, err := filter.NormalizeRules(g.Allow)
		if err != nil || !slices.Equal(allow, g.Allow) {
			return "regulation rules are not normalised"
		}
		wantOwner := e.Writer.String()
		if exists {
			wantOwner = cur.reg.Owner
		}
		if g.Owner != wantOwner {
			return fmt.Sprintf("owner %q, want %q", filter.Clip(g.Owner), filter.Clip(wantOwner))
		}
		if want := r.versions[e.Key] + 1; g.Version != want {
			return fmt.Sprintf("version %d, want %d", g.Version, want)
		}
		r.versions[e.Key] = g.Version
		regRec = e.regulationRecord(g)
	}
	r.index[string(indexKey(e.Kind, e.Key, e.Seq))] = struct{}{}
	if e.Op == ledger.OpDelete {
		delete(state, e.Key)
		return ""
	}
	data, err := stateOf(hostRec, regRec)
	if err != nil {
		return err.Error()
	}
	state[e.Key] = replayed{json: data, seq: e.Seq, reg: regRec}
	return ""
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
