package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"go.uber.org/zap"

	"github.com/ledgerfence/ledgerfence/pkg/cache"
	"github.com/ledgerfence/ledgerfence/pkg/decide"
	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/remote"
	"github.com/ledgerfence/ledgerfence/pkg/notify"
	"github.com/ledgerfence/ledgerfence/pkg/nova"
)

// Publisher is told of every decision that denied a host; *notify.Publisher
// is one. Publish must not block.
type Publisher interface {
	Publish(ev notify.Event) bool
}

// scratch is a request's reusable memory.
type scratch struct {
	subjects []filter.Subject
	body     bytes.Buffer
	req      nova.Request
	out      []byte
	dec      nova.Decoder
	q        cache.Query
	verdicts []filter.Verdict
}

func newScratch() *scratch {
	return &scratch{}
}

// maxPooledHosts keeps the scratch of huge requests out of the pool.
const maxPooledHosts = 20_000

// maxKeptVerdicts: the decision store keeps the verdicts of a decision of
// at most this many hosts (about 300 KiB packed); of a larger one, its
// counts and summary only.
const maxKeptVerdicts = 20_000

func (s *Server) getScratch() *scratch {
	sc := s.scratch.Get().(*scratch)
	sc.q.Candidates = sc.q.Candidates[:0]
	return sc
}

func (s *Server) putScratch(sc *scratch) {
	if sc.dec.Capacity() > maxPooledHosts || cap(sc.q.Candidates) > maxPooledHosts || int64(sc.body.Cap()) > 2*s.cfg.LargeBody {
		return
	}
	sc.req = nova.Request{}
	clear(sc.q.Candidates[:cap(sc.q.Candidates)]) // drop references to cached hosts
	sc.q.Candidates = sc.q.Candidates[:0]
	s.scratch.Put(sc)
}

// webhook answers Nova's external-scheduler request in named steps: read
// (within the bounds of admission), admit, decode, decide, record, answer.
//
// Every POST gets 200 with {"hosts": [...]}: SAP's Nova takes every host on
// any other answer, so a request filterd cannot decide, for whatever reason
// (a body it cannot read or decode, identifiers it cannot use, a missing or
// wrong token, its own overload, a ledger that does not answer in time), is
// answered {"hosts": []}, counted under its outcome, logged with why, kept
// as a decision and published. Only a wrong method gets another status.
func (s *Server) webhook(w http.ResponseWriter, r *http.Request) {
	start := s.cfg.Clock()
	d := &decision{id: newDecisionID(), time: start, operation: opUnknown}
	w.Header().Set(HeaderDecision, d.id)
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		remote.WriteError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed: use POST")
		s.m.request(opUnknown, OutcomeMethodNotAllowed)
		s.log.Info("webhook request refused", zap.String("decision_id", d.id), zap.String("method", r.Method))
		return
	}
	setReadDeadline(w, start, s.cfg.ReadTimeout)
	if s.cfg.WebhookToken != "" {
		if tok, ok := bearer(r); !ok || !tokenIs(tok, s.cfg.WebhookToken) {
			s.undecided(w, r, d, nil, OutcomeUnauthorized, "the webhook needs Authorization: Bearer <webhook token>")
			return
		}
	}

	sc := s.getScratch()
	defer s.putScratch(sc)
	tk := &ticket{a: s.adm}
	defer tk.release()
	outcome, why := s.readRequest(r, sc, tk)
	if why != "" {
		s.undecided(w, r, d, nil, outcome, why)
		return
	}
	// One deadline from here on: the wait for a turn and the decision.
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.DecisionTimeout)
	defer cancel()
	if why := s.admit(ctx, tk, int64(sc.body.Len()) > s.adm.largeBody); why != "" {
		s.undecided(w, r, d, nil, OutcomeOverloaded, why)
		return
	}
	req, why := s.decodeRequest(sc)
	if why != "" {
		s.undecided(w, r, d, req, OutcomeRequestInvalid, why)
		return
	}
	d.describe(req)
	s.candidates(sc, req)
	if why := s.admit(ctx, tk, len(sc.q.Candidates) > largeHosts); why != "" {
		s.undecided(w, r, d, req, OutcomeOverloaded, why)
		return
	}

	dec, resolveErr := s.decide(ctx, sc, d.instance, d.project)
	d.height = dec.Height
	s.record(d, &dec, resolveErr)
	tk.release() // the answer may be slow to leave; its memory is the scratch's
	s.answer(w, sc, dec.Verdicts)
	s.report(d, &dec.Result, resolveErr)
}

// largeHosts: a request with more distinct hosts than this is decided in
// the large requests' turn (--max-large-in-flight), whatever its body's size.
const largeHosts = 5_000

// readRequest reads the body within the admission's bounds, charging tk.
// why, when not empty, says why the request cannot be decided, and outcome
// counts it.
func (s *Server) readRequest(r *http.Request, sc *scratch, tk *ticket) (outcome, why string) {
	if r.ContentLength > s.cfg.MaxBodyBytes {
		s.m.limit(LimitMaxBody)
		return OutcomeRequestInvalid, "request body is larger than --max-body (" + formatBytes(s.cfg.MaxBodyBytes) + ")"
	}
	held, err := s.adm.readBody(r.Body, r.ContentLength, s.cfg.MaxBodyBytes, &sc.body)
	tk.held = held
	switch {
	case err == nil:
		return "", ""
	case errors.Is(err, errTooLarge):
		s.m.limit(LimitMaxBody)
		return OutcomeRequestInvalid, "request body is larger than --max-body (" + formatBytes(s.cfg.MaxBodyBytes) + ")"
	case errors.Is(err, errOverBudget):
		s.m.limit(LimitBuffered)
		return OutcomeOverloaded, "webhook bodies held in memory are at --max-buffered (" + formatBytes(s.adm.maxBuffered) + ")"
	case isTimeout(err):
		s.m.limit(LimitReadTimeout)
		return OutcomeRequestInvalid, "request body not received within --read-timeout (" + s.cfg.ReadTimeout.String() + ")"
	}
	return OutcomeRequestInvalid, "could not read the request body"
}

// admit lets a request be decided, or says why not: too many are, or a
// large one (a body over 1 MiB, about 7,000 hosts, or more than largeHosts
// hosts) waited past the decision's deadline (ctx) for its turn. Large
// requests are decided one at a time (--max-large-in-flight), so that
// however many arrive, ordinary requests keep a core. It is called again
// once the hosts are counted; what tk holds already is not taken twice.
func (s *Server) admit(ctx context.Context, tk *ticket, large bool) string {
	if !tk.entered {
		if !s.adm.enter() {
			s.m.limit(LimitInFlight)
			return "too many webhook requests are being decided (--max-in-flight " + strconv.Itoa(int(s.adm.maxInFlight)) + ")"
		}
		tk.entered = true
	}
	if !large || tk.large {
		return ""
	}
	select {
	case s.adm.large <- struct{}{}:
		tk.large = true
		return ""
	case <-ctx.Done():
	}
	s.m.limit(LimitLargeInFlight)
	return "large webhook requests waited longer than --decision-timeout for their turn (--max-large-in-flight " +
		strconv.Itoa(cap(s.adm.large)) + ")"
}

// decodeRequest decodes the body read, with the identifiers in canonical
// form. why, when not empty, says why the request cannot be decided; req
// is what could be decoded (nil when nothing could).
func (s *Server) decodeRequest(sc *scratch) (req *nova.Request, why string) {
	decoded, err := sc.dec.Decode(sc.body.Bytes())
	if err != nil {
		return nil, filter.Clip(err.Error())
	}
	sc.req = decoded
	req = &sc.req
	for i := range req.Hosts {
		// Nova's host names are at most 255 bytes (its database's column).
		if len(req.Hosts[i].Host) > filter.MaxHostNameLen {
			return req, "hosts[" + strconv.Itoa(i) + "]: a host name longer than " + strconv.Itoa(filter.MaxHostNameLen) + " bytes"
		}
	}
	uuid, err := filter.NormalizeUUID(req.Spec.Data.InstanceUUID)
	if err != nil {
		return req, "spec instance_uuid: " + err.Error()
	}
	req.Spec.Data.InstanceUUID = uuid
	if p := req.Spec.Data.ProjectID; p != "" {
		np, err := filter.NormalizeProjectID(p)
		if err != nil {
			return req, "spec project_id: " + err.Error()
		}
		req.Spec.Data.ProjectID = np
	}
	return req, ""
}

// candidates makes the decision's candidates of req's hosts, each once (a
// repeated host is decided once).
func (s *Server) candidates(sc *scratch, req *nova.Request) {
	for i := range req.Hosts {
		if !sc.dec.Repeated(i) {
			sc.q.Candidates = append(sc.q.Candidates, filter.Candidate{Name: req.Hosts[i].Host})
		}
	}
}

// describe fills what d knows of the request before any decision.
func (d *decision) describe(req *nova.Request) {
	if req == nil {
		return
	}
	d.requestID = filter.Clip(req.RequestID())
	d.instance = filter.Clip(req.Spec.Data.InstanceUUID)
	d.project = req.Spec.Data.ProjectID
	d.operation = req.Operation()
	d.hosts = len(req.Hosts)
}

// record keeps the decision in the store, before the answer leaves, so that
// its id can be looked up at once; d is not written to after this.
func (s *Server) record(d *decision, dec *decide.Decision, resolveErr error) {
	d.outcome = outcomeOf(&dec.Result, resolveErr)
	d.summary = dec.Summary()
	d.failClosed = resolveErr != nil
	d.n = len(dec.Verdicts)
	d.allowed = dec.Allowed
	d.regulated = dec.Regulated
	d.regulations = append(d.regulations, dec.Regulations...)
	if len(dec.Verdicts) <= maxKeptVerdicts {
		d.verdicts = packVerdicts(s.decisions.buffer(), dec.Verdicts, d.regulations)
	}
	d.duration = s.cfg.Clock().Sub(d.time)
	s.decisions.add(d)
}

// answer writes Nova's answer: the passing hosts, once each, in the order
// received.
func (s *Server) answer(w http.ResponseWriter, sc *scratch, verdicts []filter.Verdict) {
	setWriteDeadline(w, s.cfg.ReadTimeout)
	sc.out = appendAnswer(sc.out[:0], verdicts)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(sc.out)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(sc.out)
}

// report counts, logs and publishes a decision once it is answered.
func (s *Server) report(d *decision, res *filter.Result, resolveErr error) {
	s.m.request(d.operation, d.outcome)
	s.m.deniedHosts(res)
	s.m.hosts.Observe(float64(len(res.Verdicts)))
	s.m.duration.Observe(s.cfg.Clock().Sub(d.time).Seconds())
	s.logDecision(d, res.Verdicts, resolveErr)
	if s.cfg.Publisher != nil && res.Allowed < len(res.Verdicts) {
		if ev, ok := notify.NewDecisionDenied(d.event(), res); ok {
			s.cfg.Publisher.Publish(ev)
		}
	}
}

func (d *decision) event() notify.Decision {
	return notify.Decision{
		ID: d.id, RequestID: d.requestID, Instance: d.instance, Project: d.project,
		Operation: d.operation, LedgerHeight: d.height, Time: d.time,
	}
}

// undecided answers a request filterd cannot decide: no host passes. The
// rest of the body, if any, is read and discarded first, so that Nova,
// which sends its whole body before it reads, gets the answer. The request
// is counted, logged with why, kept as a decision and published.
func (s *Server) undecided(w http.ResponseWriter, r *http.Request, d *decision, req *nova.Request, outcome, why string) {
	s.adm.drain(r, s.cfg.ReadTimeout)
	d.describe(req)
	d.outcome = outcome
	d.failClosed = true
	d.err = why
	d.summary = "0 hosts eligible: " + outcome
	d.height = s.cache.Height()
	d.duration = s.cfg.Clock().Sub(d.time)
	s.decisions.add(d)
	setWriteDeadline(w, s.cfg.ReadTimeout)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(emptyAnswer)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte(emptyAnswer))
	s.m.request(d.operation, outcome)
	s.m.duration.Observe(s.cfg.Clock().Sub(d.time).Seconds())
	s.cfg.DecisionLog.Warn("decision failed closed: the request could not be decided",
		zap.String("decision_id", d.id),
		zap.String("request_id", d.requestID),
		zap.String("instance_uuid", d.instance),
		zap.String("operation", d.operation),
		zap.String("outcome", outcome),
		zap.Int("hosts", d.hosts),
		zap.String("remote_addr", r.RemoteAddr),
		zap.String("error", why))
	if s.cfg.Publisher != nil {
		s.cfg.Publisher.Publish(notify.NewDecisionFailed(d.event(), outcome, why, d.hosts))
	}
}

// emptyAnswer is Nova's answer when no host passes.
const emptyAnswer = `{"hosts":[]}` + "\n"

// decide is the one decision (package decide) on sc.q.Candidates for a VM
// and its project, from the cache, within ctx's deadline. When the cache
// cannot answer, every candidate is denied with ledger_unavailable (fail
// closed) and the error is returned for the log.
func (s *Server) decide(ctx context.Context, sc *scratch, uuid, project string) (decide.Decision, error) {
	subjects, err := decide.AppendSubjects(sc.subjects[:0], uuid, project)
	sc.subjects = subjects
	if err != nil { // the callers validated the identifiers
		return decide.Decision{Result: filter.Unavailable(sc.q.Candidates)}, err
	}
	dec, err := decide.DecideSubjects(ctx, cacheResolver{s.cache, &sc.q}, sc.verdicts, subjects, nil, sc.q.Candidates,
		filter.Options{DenyUnregulated: s.cfg.DenyUnregulated})
	sc.verdicts = dec.Verdicts
	if len(sc.q.Candidates) == 0 {
		dec.Height = s.cache.Height()
	}
	return dec, err
}

// cacheResolver is the cache as the one decision reads it, through the
// request's reusable query.
type cacheResolver struct {
	c Resolver
	q *cache.Query
}

func (cr cacheResolver) Resolve(ctx context.Context, subjects []filter.Subject, candidates []filter.Candidate, _ []filter.Regulation) ([]filter.Regulation, decide.Basis, error) {
	cr.q.Subjects = subjects
	cr.q.Candidates = candidates
	err := cr.c.Resolve(ctx, cr.q)
	if err != nil {
		cr.q.Regulations = cr.q.Regulations[:0]
	}
	return cr.q.Regulations, decide.Basis{Height: cr.q.Height, RequireAttested: cr.q.RequireAttested}, err
}

func outcomeOf(res *filter.Result, err error) string {
	switch {
	case err != nil:
		return OutcomeFailClosed
	case len(res.Verdicts) == 0:
		return OutcomeNoHosts
	case res.Allowed == len(res.Verdicts):
		return OutcomeAllowedAll
	case res.Allowed == 0:
		return OutcomeDeniedAll
	}
	return OutcomeAllowedSome
}

// logDecision writes the decision's summary line and, at debug level, one
// line per denied host.
func (s *Server) logDecision(d *decision, verdicts []filter.Verdict, resolveErr error) {
	fields := []zap.Field{
		zap.String("decision_id", d.id),
		zap.String("request_id", d.requestID),
		zap.String("instance_uuid", d.instance),
		zap.String("project_id", d.project),
		zap.String("operation", d.operation),
		zap.String("outcome", d.outcome),
		zap.String("summary", d.summary),
		zap.Uint64("ledger_height", d.height),
		zap.Duration("duration", d.duration),
	}
	log := s.cfg.DecisionLog
	if resolveErr != nil {
		log.Warn("decision failed closed: the ledger could not answer", append(fields, zap.Error(resolveErr))...)
	} else {
		log.Info("decision", fields...)
	}
	if d.allowed == len(verdicts) || !log.Core().Enabled(zap.DebugLevel) {
		return
	}
	for i := range verdicts {
		v := &verdicts[i]
		if v.Allowed {
			continue
		}
		log.Debug("host denied",
			zap.String("decision_id", d.id),
			zap.String("instance_uuid", d.instance),
			zap.String("host", v.Host),
			zap.String("reason", string(v.Reason)),
			zap.String("detail", v.Detail()))
	}
}

// appendAnswer appends Nova's answer, nova.Response{Hosts: the allowed
// hosts} as encoding/json writes it, followed by a newline. Names that JSON
// writes as they are (the usual [A-Za-z0-9._-] and the like) are copied;
// any other goes through encoding/json.
func appendAnswer(buf []byte, verdicts []filter.Verdict) []byte {
	buf = append(buf, `{"hosts":[`...)
	first := true
	for i := range verdicts {
		if !verdicts[i].Allowed {
			continue
		}
		if !first {
			buf = append(buf, ',')
		}
		first = false
		name := verdicts[i].Host
		if jsonPlain(name) {
			buf = append(buf, '"')
			buf = append(buf, name...)
			buf = append(buf, '"')
			continue
		}
		b, _ := json.Marshal(name) // a string always marshals
		buf = append(buf, b...)
	}
	return append(buf, "]}\n"...)
}

// plainJSON marks the bytes encoding/json writes in a string as they are:
// printable ASCII other than the quote, the backslash and the HTML
// characters it escapes.
var plainJSON = func() (t [256]bool) {
	for c := 0x20; c < 0x7f; c++ {
		t[c] = c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	return t
}()

// jsonPlain reports whether encoding/json writes s between quotes as it is.
func jsonPlain(s string) bool {
	for i := 0; i < len(s); i++ {
		if !plainJSON[s[i]] {
			return false
		}
	}
	return true
}
