package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/ledgerfence/ledgerfence/pkg/decide"
	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/access"
)

// Limits of the REST API.
const (
	defaultListLimit = 100
	maxListLimit     = 1000
	// maxCheckHosts bounds the hosts of one check, named or listed.
	maxCheckHosts = 100_000
	// maxLookupKeys bounds the subjects and the hosts of one lookup.
	maxLookupKeys = 100_000
)

// writerOf is the writer of the writes made with ctx: the writer token's
// identity, or the operator's writer of the admin token.
func writerOf(ctx context.Context) ledger.Writer {
	if who, ok := access.IdentityFrom(ctx); ok {
		return who.Writer()
	}
	w, _ := ledger.WriterFrom(ctx)
	return w
}

// mergeCancel returns a context of a that also ends when b ends.
func mergeCancel(a, b context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(a)
	stop := context.AfterFunc(b, cancel)
	return ctx, func() { stop(); cancel() }
}

// decodeBody reads a JSON object strictly: known fields only, nothing after.
func decodeBody(w http.ResponseWriter, r *http.Request, limit int64, v any) error {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			writeError(w, http.StatusRequestEntityTooLarge, "request body is larger than "+strconv.FormatInt(limit, 10)+" bytes")
			return err
		}
		writeError(w, http.StatusBadRequest, "could not read the request body")
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "body: "+filter.Clip(jsonMessage(err)))
		return err
	}
	if dec.More() {
		writeError(w, http.StatusBadRequest, "body: trailing data after the JSON object")
		return errors.New("trailing data")
	}
	return nil
}

// jsonMessage says what is wrong with a JSON body without Go type names.
func jsonMessage(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return "field " + strconv.Quote(te.Field) + " has the wrong type (got " + te.Value + ")"
	}
	return err.Error()
}

func (s *Server) logWrite(r *http.Request, kind ledger.Kind, key string, op ledger.Op, tx string, changed bool) {
	wr := writerOf(r.Context())
	s.log.Info("ledger write", zap.String("kind", string(kind)), zap.String("key", key), zap.String("op", string(op)),
		zap.String("writer", wr.String()), zap.String("role", wr.Role), zap.String("tx_id", tx), zap.Bool("changed", changed))
}

func setChanged(w http.ResponseWriter, changed bool) {
	w.Header().Set(HeaderChanged, strconv.FormatBool(changed))
}

// hostInput is the body of PUT /v1/hosts/{host}.
type hostInput struct {
	Host          string   `json:"host"`
	Country       string   `json:"country"`
	Organizations []string `json:"organizations"`
	Region        string   `json:"region"`
}

func (s *Server) putHost(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("host")
	var in hostInput
	if decodeBody(w, r, maxRESTBody, &in) != nil {
		return
	}
	if in.Host != "" && in.Host != name {
		writeError(w, http.StatusBadRequest, "host: the body names "+strconv.Quote(filter.Clip(in.Host))+", the path "+strconv.Quote(filter.Clip(name)))
		return
	}
	h, err := filter.NormalizeHost(filter.Host{Name: name, Country: in.Country, Organizations: in.Organizations, Region: in.Region})
	if err != nil {
		validationError(w, err)
		return
	}
	rec, changed, err := s.ledger.PutHost(r.Context(), h)
	if err != nil {
		s.ledgerError(w, r, err)
		return
	}
	s.cache.Invalidate(ledger.KindHost, h.Name)
	s.logWrite(r, ledger.KindHost, h.Name, ledger.OpPut, rec.TxID, changed)
	setChanged(w, changed)
	writeJSON(w, http.StatusOK, rec)
}

func (s *Server) getHost(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("host")
	if err := filter.ValidateHostName(name); err != nil {
		validationError(w, err)
		return
	}
	rec, err := s.ledger.GetHost(r.Context(), name)
	if err != nil {
		s.ledgerError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, rec)
}

func (s *Server) listHosts(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit := defaultListLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxListLimit {
			writeError(w, http.StatusBadRequest, "limit must be an integer from 1 to "+strconv.Itoa(maxListLimit))
			return
		}
		limit = n
	}
	after := q.Get("after")
	if len(after) > filter.MaxHostNameLen {
		writeError(w, http.StatusBadRequest, "after is longer than a host name may be")
		return
	}
	page, err := s.ledger.ListHosts(r.Context(), after, limit)
	if err != nil {
		s.ledgerError(w, r, err)
		return
	}
	if page.Hosts == nil {
		page.Hosts = []ledger.HostRecord{}
	}
	writeJSON(w, http.StatusOK, page)
}

// subject parses the {subject} path value, answering 400 when it is of no
// known form.
func subject(w http.ResponseWriter, r *http.Request) (filter.Subject, bool) {
	sub, err := filter.ParseSubject(r.PathValue("subject"))
	if err != nil {
		validationError(w, err)
		return "", false
	}
	return sub, true
}

func (s *Server) putRegulation(w http.ResponseWriter, r *http.Request) {
	sub, ok := subject(w, r)
	if !ok {
		return
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRESTBody))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			writeError(w, http.StatusRequestEntityTooLarge, "request body is larger than "+strconv.Itoa(maxRESTBody)+" bytes")
			return
		}
		writeError(w, http.StatusBadRequest, "could not read the request body")
		return
	}
	rules, err := filter.ParseRules(data)
	if err != nil {
		validationError(w, err)
		return
	}
	rec, changed, err := s.ledger.PutRegulation(r.Context(), sub, rules)
	if err != nil {
		s.ledgerError(w, r, err)
		return
	}
	s.cache.Invalidate(ledger.KindRegulation, string(sub))
	s.logWrite(r, ledger.KindRegulation, string(sub), ledger.OpPut, rec.TxID, changed)
	setChanged(w, changed)
	writeJSON(w, http.StatusOK, rec)
}

func (s *Server) getRegulation(w http.ResponseWriter, r *http.Request) {
	sub, ok := subject(w, r)
	if !ok {
		return
	}
	rec, err := s.ledger.GetRegulation(r.Context(), sub)
	if err != nil {
		s.ledgerError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, rec)
}

func (s *Server) deleteRegulation(w http.ResponseWriter, r *http.Request) {
	sub, ok := subject(w, r)
	if !ok {
		return
	}
	if err := s.ledger.DeleteRegulation(r.Context(), sub); err != nil {
		s.ledgerError(w, r, err)
		return
	}
	s.cache.Invalidate(ledger.KindRegulation, string(sub))
	s.logWrite(r, ledger.KindRegulation, string(sub), ledger.OpDelete, "", true)
	w.WriteHeader(http.StatusNoContent)
}

// historyBody is the body of the history endpoints.
type historyBody struct {
	History []ledger.Change `json:"history"`
}

func (s *Server) history(w http.ResponseWriter, r *http.Request, kind ledger.Kind, key string) {
	changes, err := s.ledger.History(r.Context(), kind, key)
	if err != nil {
		s.ledgerError(w, r, err)
		return
	}
	if changes == nil {
		changes = []ledger.Change{}
	}
	writeJSON(w, http.StatusOK, historyBody{History: changes})
}

func (s *Server) hostHistory(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("host")
	if err := filter.ValidateHostName(name); err != nil {
		validationError(w, err)
		return
	}
	s.history(w, r, ledger.KindHost, name)
}

func (s *Server) regulationHistory(w http.ResponseWriter, r *http.Request) {
	sub, ok := subject(w, r)
	if !ok {
		return
	}
	s.history(w, r, ledger.KindRegulation, string(sub))
}

// checkInput is the body of POST /v1/check.
type checkInput struct {
	InstanceUUID string   `json:"instance_uuid"`
	ProjectID    string   `json:"project_id"`
	Hosts        []string `json:"hosts"`
}

// check answers "which of these hosts may this VM go to, and why not the
// others", with the webhook's own decision path.
func (s *Server) check(w http.ResponseWriter, r *http.Request) {
	var in checkInput
	if decodeBody(w, r, s.cfg.MaxBodyBytes, &in) != nil {
		return
	}
	if in.InstanceUUID == "" && in.ProjectID == "" {
		writeError(w, http.StatusBadRequest, "give instance_uuid, project_id or both")
		return
	}
	if _, err := decide.Subjects(in.InstanceUUID, in.ProjectID); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	names := in.Hosts
	if names == nil {
		var err error
		if names, err = s.allHosts(r); err != nil {
			if errors.Is(err, errTooManyHosts) {
				writeError(w, http.StatusBadRequest, err.Error())
				return
			}
			s.ledgerError(w, r, err)
			return
		}
	}
	if len(names) > maxCheckHosts {
		writeError(w, http.StatusBadRequest, errTooManyHosts.Error())
		return
	}
	sc := s.getScratch()
	defer s.putScratch(sc)
	seen := make(map[string]bool, len(names))
	for _, n := range names {
		if err := filter.ValidateHostName(n); err != nil {
			validationError(w, err)
			return
		}
		if !seen[n] { // a repeated host is decided once
			seen[n] = true
			sc.q.Candidates = append(sc.q.Candidates, filter.Candidate{Name: n})
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.DecisionTimeout)
	defer cancel()
	dec, err := s.decide(ctx, sc, in.InstanceUUID, in.ProjectID)
	if err != nil {
		s.log.Warn("check: the ledger could not answer", zap.String("instance_uuid", in.InstanceUUID), zap.String("project_id", in.ProjectID), zap.Error(err))
		writeError(w, http.StatusServiceUnavailable, "the ledger could not answer for this VM; retry later")
		return
	}
	writeJSON(w, http.StatusOK, dec.Report(sc.q.Candidates))
}

var errTooManyHosts = errors.New("a check covers at most " + strconv.Itoa(maxCheckHosts) + " hosts: name the hosts to check")

// allHosts lists every host the ledger knows.
func (s *Server) allHosts(r *http.Request) ([]string, error) {
	var names []string
	after := ""
	for {
		page, err := s.ledger.ListHosts(r.Context(), after, maxListLimit)
		if err != nil {
			return nil, err
		}
		for _, h := range page.Hosts {
			names = append(names, h.Name)
		}
		if len(names) > maxCheckHosts {
			return nil, errTooManyHosts
		}
		if page.Next == "" || len(page.Hosts) == 0 {
			return names, nil
		}
		after = page.Next
	}
}

// LedgerInfo is the body of GET /v1/ledger.
type LedgerInfo struct {
	Backend string `json:"backend"`
	// Writable says whether filterd accepts writes for this backend.
	Writable    bool   `json:"writable"`
	Height      uint64 `json:"height"`
	CacheReady  bool   `json:"cache_ready"`
	CacheHeight uint64 `json:"cache_height"`
	// DenyUnregulated is filterd's decision option, so that its clients
	// (ledgerctl check and migrate) decide as it does.
	DenyUnregulated bool `json:"deny_unregulated"`
}

func (s *Server) ledgerInfo(w http.ResponseWriter, r *http.Request) {
	h, err := s.ledger.Height(r.Context())
	if err != nil {
		s.ledgerError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, LedgerInfo{
		Backend:     s.cfg.Backend,
		Writable:    s.cfg.Writable,
		Height:      h,
		CacheReady:  s.cache.Ready(),
		CacheHeight: s.cache.Height(),

		DenyUnregulated: s.cfg.DenyUnregulated,
	})
}

// lookupInput is the body of POST /v1/lookup.
type lookupInput struct {
	Subjects []string `json:"subjects"`
	Hosts    []string `json:"hosts"`
}

// lookupBody is the answer of POST /v1/lookup: ledger.Lookup in JSON.
type lookupBody struct {
	Height      uint64                                     `json:"height"`
	Regulations map[filter.Subject]ledger.RegulationRecord `json:"regulations"`
	Hosts       map[string]ledger.HostRecord               `json:"hosts"`
}

func (s *Server) lookup(w http.ResponseWriter, r *http.Request) {
	var in lookupInput
	if decodeBody(w, r, s.cfg.MaxBodyBytes, &in) != nil {
		return
	}
	if len(in.Subjects) > maxLookupKeys || len(in.Hosts) > maxLookupKeys {
		writeError(w, http.StatusBadRequest, "a lookup asks for at most "+strconv.Itoa(maxLookupKeys)+" subjects and as many hosts")
		return
	}
	subjects := make([]filter.Subject, len(in.Subjects))
	for i, v := range in.Subjects {
		sub, err := filter.ParseSubject(v)
		if err != nil {
			validationError(w, err)
			return
		}
		subjects[i] = sub
	}
	// Host names are not checked: one that cannot be registered is simply
	// absent from the answer, as the ledger's Lookup has it.
	lk, err := s.ledger.Lookup(r.Context(), subjects, in.Hosts)
	if err != nil {
		s.ledgerError(w, r, err)
		return
	}
	out := lookupBody{Height: lk.Height, Regulations: lk.Regulations, Hosts: lk.Hosts}
	if out.Regulations == nil {
		out.Regulations = map[filter.Subject]ledger.RegulationRecord{}
	}
	if out.Hosts == nil {
		out.Hosts = map[string]ledger.HostRecord{}
	}
	writeJSON(w, http.StatusOK, out)
}

// events streams the ledger's events after ?after= as JSON lines
// (application/x-ndjson), with an empty line after every idle heartbeat
// interval, until the client leaves, the ledger's stream ends, or the server
// closes.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	var after uint64
	if v := r.URL.Query().Get("after"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			writeError(w, http.StatusBadRequest, "after must be a block number from 0 to the ledger's height")
			return
		}
		after = n
	}
	if n := s.streams.Add(1); n > int64(s.cfg.MaxStreams) {
		s.streams.Add(-1)
		s.m.limit(LimitStreams)
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, "too many event streams are open (--max-streams "+strconv.Itoa(s.cfg.MaxStreams)+"); retry later")
		return
	}
	s.m.streams.Inc()
	defer func() {
		s.streams.Add(-1)
		s.m.streams.Dec()
	}()
	ctx, cancel := mergeCancel(r.Context(), s.streamsCtx)
	defer cancel()
	if h, err := s.ledger.Height(ctx); err != nil {
		s.ledgerError(w, r, err)
		return
	} else if after > h {
		writeError(w, http.StatusBadRequest, "after "+strconv.FormatUint(after, 10)+" is beyond the ledger's height "+strconv.FormatUint(h, 10))
		return
	}
	ch, err := s.ledger.Watch(ctx, after)
	if err != nil {
		s.ledgerError(w, r, err)
		return
	}
	rc := http.NewResponseController(w)
	// A stream outlives the server's read timeout; each write has its own
	// deadline, so that a client that stops reading is dropped.
	_ = rc.SetReadDeadline(time.Time{})
	write := func(f func() error) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(s.cfg.StreamWriteTimeout))
		return f() == nil
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	if !write(func() error { w.WriteHeader(http.StatusOK); return rc.Flush() }) {
		return
	}
	enc := json.NewEncoder(w)
	beat := time.NewTimer(s.cfg.Heartbeat)
	defer beat.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-ch:
			if !ok {
				return
			}
			if !write(func() error { return enc.Encode(ev) }) {
				return
			}
			if len(ch) > 0 {
				continue // flush once the backlog is written
			}
		case <-beat.C:
			if !write(func() error { _, err := w.Write([]byte("\n")); return err }) {
				return
			}
		}
		if !write(rc.Flush) {
			return
		}
		beat.Reset(s.cfg.Heartbeat)
	}
}
