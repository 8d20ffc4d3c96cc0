package api

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/ledgerfence/ledgerfence/pkg/decide"
	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/remote"
)

// decision is a webhook decision as kept in the store.
type decision struct {
	id          string
	time        time.Time
	requestID   string
	instance    string
	project     string
	operation   string
	outcome     string
	hosts       int // hosts in Nova's request, duplicates included
	regulations []filter.Subject
	summary     string
	height      uint64
	failClosed  bool
	// err says why a request could not be decided (an undecided request's
	// decision); empty for the ledger's failures, whose cause is logged.
	err      string
	duration time.Duration
	// verdicts is packVerdicts' form of the n candidates' verdicts: kept
	// without pointers, the store costs the garbage collector nothing.
	verdicts  []byte
	n         int
	allowed   int
	regulated bool
}

// Decision is a decision as GET /v1/decisions/{id} shows it.
type Decision struct {
	ID           string    `json:"id"`
	Time         time.Time `json:"time"`
	RequestID    string    `json:"request_id,omitempty"`
	InstanceUUID string    `json:"instance_uuid"`
	ProjectID    string    `json:"project_id,omitempty"`
	Operation    string    `json:"operation"`
	Outcome      string    `json:"outcome"`
	// Hosts is how many hosts Nova sent (duplicates included); Candidates
	// how many distinct ones were decided on; Allowed how many passed.
	Hosts      int  `json:"hosts"`
	Candidates int  `json:"candidates"`
	Allowed    int  `json:"allowed"`
	Regulated  bool `json:"regulated"`
	// Regulations are the subjects whose regulations applied.
	Regulations  []filter.Subject `json:"regulations,omitempty"`
	Summary      string           `json:"summary"`
	LedgerHeight uint64           `json:"ledger_height"`
	// Error says why the decision failed closed.
	Error      string  `json:"error,omitempty"`
	DurationMS float64 `json:"duration_ms"`
	// Verdicts, one per candidate in Nova's order; left out of listings,
	// and not kept for decisions of more than 20,000 hosts
	// (VerdictsOmitted).
	Verdicts        []decide.Verdict `json:"verdicts,omitempty"`
	VerdictsOmitted bool             `json:"verdicts_omitted,omitempty"`
}

func verdictViews(vs []filter.Verdict) []decide.Verdict {
	out := make([]decide.Verdict, len(vs))
	for i, v := range vs {
		out[i] = decide.View(v)
	}
	return out
}

// errFailClosed is what a fail-closed decision says of itself; the cause is
// in the log line of its decision id.
const errFailClosed = "the ledger could not answer for this VM, so no host was allowed (see filterd's log for this decision id)"

func (d *decision) view(withVerdicts bool) Decision {
	v := Decision{
		ID:           d.id,
		Time:         d.time.UTC(),
		RequestID:    d.requestID,
		InstanceUUID: d.instance,
		ProjectID:    d.project,
		Operation:    d.operation,
		Outcome:      d.outcome,
		Hosts:        d.hosts,
		Candidates:   d.n,
		Allowed:      d.allowed,
		Regulated:    d.regulated,
		Regulations:  d.regulations,
		Summary:      d.summary,
		LedgerHeight: d.height,
		DurationMS:   float64(d.duration.Microseconds()) / 1000,
	}
	switch {
	case d.err != "":
		v.Error = d.err
	case d.failClosed:
		v.Error = errFailClosed
	}
	if withVerdicts {
		v.Verdicts = verdictViews(unpackVerdicts(d.verdicts, d.n, d.regulations))
		v.VerdictsOmitted = d.n > 0 && len(d.verdicts) == 0
	}
	return v
}

// decisionStore keeps the most recent decisions, bounded by count and by the
// bytes they hold together (size); the oldest go first.
//
// The packed verdicts of an evicted decision are memory for the next
// decision's (buffer), so that a full store takes in decisions without
// allocating for them. A stored decision's verdicts are therefore only read
// under mu: get returns a copy.
type decisionStore struct {
	mu      sync.Mutex
	ring    []*decision
	head, n int // ring[head] is the oldest of n
	byID    map[string]*decision
	// byMove names the latest decision of a Nova request about a VM
	// (requestID "/" instance).
	byMove   map[string]string
	bytes    int
	maxBytes int
	spare    [][]byte // packed verdicts of evicted decisions
	// evicted counts decisions evicted for the byte bound while the count
	// bound had room (nil: not counted).
	evicted func()
}

// size is about what d holds in memory.
func (d *decision) size() int {
	n := 256 + cap(d.verdicts) + len(d.id) + len(d.requestID) + len(d.instance) + len(d.project) +
		len(d.summary) + len(d.err) + 16*cap(d.regulations)
	for _, r := range d.regulations {
		n += len(r)
	}
	return n
}

// Spare verdict buffers: how many are kept, and the largest kept (a buffer
// of 10,000 verdicts is about 300 KB).
const (
	maxSpare      = 4
	maxSpareBytes = 1 << 20
)

func newDecisionStore(max, maxBytes int) *decisionStore {
	return &decisionStore{ring: make([]*decision, max), byID: make(map[string]*decision, max), byMove: make(map[string]string), maxBytes: maxBytes}
}

// add keeps d, evicting the oldest decisions until it fits. A decision
// larger than the whole bound is kept without its verdicts.
func (s *decisionStore) add(d *decision) {
	if d.size() > s.maxBytes {
		d.verdicts = nil // Candidates and Allowed still say how many
	}
	size := d.size()
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.n > 0 && (s.n == len(s.ring) || s.bytes+size > s.maxBytes) {
		if s.n < len(s.ring) && s.evicted != nil {
			s.evicted()
		}
		old := s.ring[s.head]
		s.ring[s.head] = nil
		delete(s.byID, old.id)
		if k := old.moveKey(); k != "" && s.byMove[k] == old.id {
			delete(s.byMove, k)
		}
		if len(s.spare) < maxSpare && cap(old.verdicts) <= maxSpareBytes {
			s.spare = append(s.spare, old.verdicts[:0])
		}
		s.bytes -= old.size()
		s.head = (s.head + 1) % len(s.ring)
		s.n--
	}
	s.ring[(s.head+s.n)%len(s.ring)] = d
	s.n++
	s.byID[d.id] = d
	if k := d.moveKey(); k != "" {
		s.byMove[k] = d.id
	}
	s.bytes += size
}

// moveKey is d's key in byMove, "" for a request without a request id or
// instance.
func (d *decision) moveKey() string {
	if d.requestID == "" || d.instance == "" {
		return ""
	}
	vm, err := filter.NormalizeUUID(d.instance)
	if err != nil {
		return ""
	}
	return d.requestID + "/" + vm
}

// forMove returns the id of the latest decision kept for Nova's request
// requestID about the VM instance, "" for none.
func (s *decisionStore) forMove(requestID, instance string) string {
	if requestID == "" || instance == "" {
		return ""
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.byMove[requestID+"/"+instance]
}

// buffer returns memory for a new decision's packed verdicts: that of an
// evicted decision when there is one, else nil.
func (s *decisionStore) buffer() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.spare)
	if n == 0 {
		return nil
	}
	b := s.spare[n-1]
	s.spare[n-1] = nil
	s.spare = s.spare[:n-1]
	return b
}

// get returns a copy of decision id, verdicts included.
func (s *decisionStore) get(id string) (decision, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.byID[id]
	if !ok {
		return decision{}, false
	}
	c := *d
	c.verdicts = slices.Clone(d.verdicts)
	return c, true
}

// recent returns up to limit decisions, newest first. Their verdicts may
// already be another decision's: only view(false) may be asked of them.
func (s *decisionStore) recent(limit int) []*decision {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*decision, 0, min(limit, s.n))
	for i := s.n - 1; i >= 0 && len(out) < limit; i-- {
		out = append(out, s.ring[(s.head+i)%len(s.ring)])
	}
	return out
}

// packVerdicts encodes verdicts without pointers, per verdict: the reason
// (0 for allowed, else 1 + its index in filter.Reasons()), the host name,
// and for a deny the regulation (0 none, 1 + its index in subjects, or 255
// and the subject), the country and the organisation; strings are
// uvarint-length-prefixed. It appends to dst[:0].
func packVerdicts(dst []byte, vs []filter.Verdict, subjects []filter.Subject) []byte {
	size := 0
	for i := range vs {
		size += 2 + len(vs[i].Host)
		if !vs[i].Allowed {
			size += 6 + len(vs[i].Organization)
		}
	}
	b := slices.Grow(dst[:0], size)
	reasons := filter.Reasons()
	for i := range vs {
		v := &vs[i]
		if v.Allowed {
			b = append(b, 0)
			b = appendString(b, v.Host)
			continue
		}
		code := byte(len(reasons) + 1) // unknown reason: kept as none
		for j, r := range reasons {
			if r == v.Reason {
				code = byte(j + 1)
				break
			}
		}
		b = append(b, code)
		b = appendString(b, v.Host)
		sub := byte(0)
		if v.Subject != "" {
			sub = 255
			for j, s := range subjects {
				if s == v.Subject && j < 254 {
					sub = byte(j + 1)
				}
			}
		}
		b = append(b, sub)
		if sub == 255 {
			b = appendString(b, string(v.Subject))
		}
		b = appendString(b, v.Country)
		b = appendString(b, v.Organization)
	}
	return b
}

func appendString(b []byte, s string) []byte {
	if len(s) < 0x80 { // the uvarint of a short length is the length
		b = append(b, byte(len(s)))
	} else {
		b = binary.AppendUvarint(b, uint64(len(s)))
	}
	return append(b, s...)
}

// unpackVerdicts decodes packVerdicts' form of n verdicts.
func unpackVerdicts(b []byte, n int, subjects []filter.Subject) []filter.Verdict {
	reasons := filter.Reasons()
	out := make([]filter.Verdict, 0, n)
	str := func() string {
		l, k := binary.Uvarint(b)
		if k <= 0 || uint64(len(b)-k) < l {
			b = nil
			return ""
		}
		s := string(b[k : k+int(l)])
		b = b[k+int(l):]
		return s
	}
	for len(b) > 0 && len(out) < n {
		code := b[0]
		b = b[1:]
		v := filter.Verdict{Host: str(), Allowed: code == 0}
		if code != 0 && len(b) > 0 {
			if int(code) <= len(reasons) {
				v.Reason = reasons[code-1]
			}
			sub := b[0]
			b = b[1:]
			switch {
			case sub == 255:
				v.Subject = filter.Subject(str())
			case sub > 0 && int(sub) <= len(subjects):
				v.Subject = subjects[sub-1]
			}
			v.Country = str()
			v.Organization = str()
		}
		out = append(out, v)
	}
	return out
}

// newDecisionID returns a random UUID (version 4).
func newDecisionID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:], b[10:])
	return string(s[:])
}

func (s *Server) getDecision(w http.ResponseWriter, r *http.Request) {
	d, ok := s.decisions.get(r.PathValue("id"))
	if !ok {
		remote.WriteError(w, http.StatusNotFound, "no such decision: it is unknown or no longer kept (the store keeps the most recent ones)")
		return
	}
	remote.WriteJSON(w, http.StatusOK, d.view(true))
}

// decisionList is the body of GET /v1/decisions.
type decisionList struct {
	Decisions []Decision `json:"decisions"`
}

func (s *Server) listDecisions(w http.ResponseWriter, r *http.Request) {
	limit := 20
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			remote.WriteError(w, http.StatusBadRequest, "limit must be an integer from 1 to 1000")
			return
		}
		limit = n
	}
	ds := s.decisions.recent(limit)
	out := decisionList{Decisions: make([]Decision, len(ds))}
	for i, d := range ds {
		out.Decisions[i] = d.view(false)
	}
	remote.WriteJSON(w, http.StatusOK, out)
}
