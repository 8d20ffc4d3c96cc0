package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/ledgerfence/ledgerfence/pkg/cache"
	"github.com/ledgerfence/ledgerfence/pkg/filter"
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
	body     bytes.Buffer
	out      []byte
	dec      nova.Decoder
	q        cache.Query
	verdicts []filter.Verdict
}

func newScratch() *scratch {
	return &scratch{
		// filterd reads neither the weights nor the hypervisor names; the
		// hosts of a cloud come again and again.
		dec: nova.Decoder{SkipWeights: true, SkipHypervisors: true, InternNames: true},
	}
}

// maxPooledHosts keeps the scratch of huge requests out of the pool.
const maxPooledHosts = 20_000

func (s *Server) getScratch() *scratch {
	sc := s.scratch.Get().(*scratch)
	sc.q.Candidates = sc.q.Candidates[:0]
	return sc
}

func (s *Server) putScratch(sc *scratch) {
	if sc.dec.Capacity() > maxPooledHosts || cap(sc.q.Candidates) > maxPooledHosts || sc.body.Cap() > 4*DefaultMaxBodyBytes {
		return
	}
	clear(sc.q.Candidates[:cap(sc.q.Candidates)]) // drop references to cached hosts
	sc.q.Candidates = sc.q.Candidates[:0]
	s.scratch.Put(sc)
}

// webhook answers Nova's external-scheduler request: method check, auth,
// read with a limit, decode, validate, decide with the request's context,
// encode. It never answers 5xx: a decision it cannot make fails closed.
func (s *Server) webhook(w http.ResponseWriter, r *http.Request) {
	start := s.cfg.Clock()
	id := newDecisionID()
	w.Header().Set(HeaderDecision, id)
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		s.refuse(w, id, start, opUnknown, OutcomeMethodNotAllowed, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed: use POST")
		return
	}
	if s.cfg.WebhookToken != "" {
		if tok, ok := bearer(r); !ok || !tokenIs(tok, s.cfg.WebhookToken) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="ledgerfence"`)
			s.refuse(w, id, start, opUnknown, OutcomeUnauthorized, http.StatusUnauthorized, "the webhook needs Authorization: Bearer <webhook token>")
			return
		}
	}

	sc := s.getScratch()
	defer s.putScratch(sc)
	body, err := readBody(w, r, s.cfg.MaxBodyBytes, &sc.body)
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			s.refuse(w, id, start, opUnknown, OutcomeTooLarge, http.StatusRequestEntityTooLarge,
				"request body is larger than "+strconv.FormatInt(s.cfg.MaxBodyBytes, 10)+" bytes")
			return
		}
		s.refuse(w, id, start, opUnknown, OutcomeBadRequest, http.StatusBadRequest, "could not read the request body")
		return
	}
	req, err := sc.dec.Decode(body)
	if err != nil {
		s.refuse(w, id, start, opUnknown, OutcomeBadRequest, http.StatusBadRequest, clipMsg(err.Error()))
		return
	}
	op := req.Operation()
	uuid, err := filter.NormalizeUUID(req.Spec.Data.InstanceUUID)
	if err != nil {
		s.refuse(w, id, start, op, OutcomeBadRequest, http.StatusBadRequest, "spec instance_uuid: "+err.Error())
		return
	}

	project := req.Spec.Data.ProjectID
	if project != "" {
		if _, err := filter.ParseSubject(string(filter.ProjectSubject(project))); err != nil {
			s.refuse(w, id, start, op, OutcomeBadRequest, http.StatusBadRequest, "spec project_id: "+err.Error())
			return
		}
	}

	// A repeated host is decided once.
	for i := range req.Hosts {
		if !sc.dec.Repeated(i) {
			sc.q.Candidates = append(sc.q.Candidates, filter.Candidate{Name: req.Hosts[i].Host})
		}
	}
	res, height, resolveErr := s.decide(r.Context(), &sc.q, sc.verdicts, uuid, project)
	sc.verdicts = res.Verdicts

	d := &decision{
		id:         id,
		time:       start,
		requestID:  req.RequestID(),
		instance:   uuid,
		project:    project,
		operation:  op,
		outcome:    outcomeOf(&res, resolveErr),
		hosts:      len(req.Hosts),
		summary:    res.Summary(),
		height:     height,
		failClosed: resolveErr != nil,
		n:          len(res.Verdicts),
		allowed:    res.Allowed,
		regulated:  res.Regulated,
	}
	for i := range sc.q.Regulations {
		d.regulations = append(d.regulations, sc.q.Regulations[i].Subject)
	}
	d.verdicts = packVerdicts(s.decisions.buffer(), res.Verdicts, d.regulations)
	d.duration = s.cfg.Clock().Sub(start)
	// Kept before the answer leaves, so that its id can be looked up at
	// once; d is not written to after this.
	s.decisions.add(d)

	// Nova's answer: the passing hosts, once each, in the order received.
	sc.out = appendAnswer(sc.out[:0], res.Verdicts)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(sc.out)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(sc.out)

	s.m.request(op, d.outcome)
	s.m.deniedHosts(&res)
	s.m.hosts.Observe(float64(len(res.Verdicts)))
	s.m.duration.Observe(s.cfg.Clock().Sub(start).Seconds())
	s.logDecision(d, res.Verdicts, resolveErr)
	if s.cfg.Publisher != nil && res.Allowed < len(res.Verdicts) {
		ev, ok := notify.NewDecisionDenied(notify.Decision{
			ID: id, RequestID: d.requestID, Instance: uuid, Project: project,
			Operation: op, LedgerHeight: height, Time: start,
		}, &res)
		if ok {
			s.cfg.Publisher.Publish(ev)
		}
	}
}

// decide resolves the VM's regulations and the candidates' records through
// the cache and evaluates them. When the cache cannot answer, every
// candidate is denied with ledger_unavailable (fail closed) and the error is
// returned for the log.
func (s *Server) decide(ctx context.Context, q *cache.Query, buf []filter.Verdict, uuid, project string) (filter.Result, uint64, error) {
	q.Subjects = q.Subjects[:0]
	if uuid != "" {
		q.Subjects = append(q.Subjects, filter.VMSubject(uuid))
	}
	if project != "" {
		q.Subjects = append(q.Subjects, filter.ProjectSubject(project))
	}
	q.Regulations = q.Regulations[:0]
	if len(q.Candidates) == 0 {
		return filter.Evaluate(nil, nil, filter.Options{}), s.cache.Height(), nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.DecisionTimeout)
	defer cancel()
	if err := s.cache.Resolve(ctx, q); err != nil {
		q.Regulations = q.Regulations[:0]
		return filter.Unavailable(q.Candidates), q.Height, err
	}
	return filter.EvaluateInto(buf, q.Regulations, q.Candidates, filter.Options{DenyUnregulated: s.cfg.DenyUnregulated}), q.Height, nil
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

// refuse answers a request that gets no decision, and counts and logs it.
func (s *Server) refuse(w http.ResponseWriter, id string, start time.Time, op, outcome string, status int, msg string) {
	writeError(w, status, msg)
	s.m.request(op, outcome)
	s.m.duration.Observe(s.cfg.Clock().Sub(start).Seconds())
	s.log.Info("webhook request refused", zap.String("decision_id", id), zap.String("outcome", outcome),
		zap.Int("status", status), zap.String("error", msg))
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

// readBody reads r's body into buf, up to limit bytes (an
// *http.MaxBytesError beyond).
func readBody(w http.ResponseWriter, r *http.Request, limit int64, buf *bytes.Buffer) ([]byte, error) {
	if r.ContentLength > limit {
		return nil, &http.MaxBytesError{Limit: limit}
	}
	buf.Reset()
	if r.ContentLength > 0 {
		buf.Grow(int(r.ContentLength) + 1)
	}
	_, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, limit))
	return buf.Bytes(), err
}

// clipMsg bounds a message built from client input.
func clipMsg(s string) string {
	if len(s) > 256 {
		return s[:256] + "..."
	}
	return s
}
