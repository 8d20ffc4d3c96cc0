package remote

// The server side of the ledger's HTTP API, next to its client: what a
// filterd serves for remote clients (the host agent, ledgerctl, another
// ledgerfence process) to read and write its ledger, and the REST error
// shape every answer uses. pkg/api mounts these handlers behind its
// authentication.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/access"
	ledgerhead "github.com/ledgerfence/ledgerfence/pkg/ledger/head"
)

// HeaderChanged says whether a write changed the ledger ("true") or was a
// no-op ("false").
const HeaderChanged = "X-Ledgerfence-Changed"

// Limits of the server.
const (
	defaultListLimit = 100
	// maxLookupKeys bounds the subjects and the hosts of one lookup.
	maxLookupKeys = 100_000
	// maxRESTBody is the body limit of writes.
	maxRESTBody = 1 << 20
)

// ServerOptions tune a Server; the hooks are the serving process's.
type ServerOptions struct {
	// Backend names the ledger's backend in GET /v1/ledger.
	Backend string
	// MaxBody bounds a lookup's body.
	MaxBody int64
	// Heartbeat is the event stream's idle heartbeat; StreamWriteTimeout
	// bounds each write to a stream; MaxStreams the streams served at once.
	Heartbeat          time.Duration
	StreamWriteTimeout time.Duration
	MaxStreams         int
	// Info adds the serving process's facts to GET /v1/ledger.
	Info func(*LedgerInfo)
	// OnWrite is told of every write made through the server.
	OnWrite func(kind ledger.Kind, key string)
	// StreamRefused is told of a stream refused past MaxStreams; Streams
	// of each stream opened (+1) and closed (-1).
	StreamRefused func()
	Streams       func(delta int)
	// DecisionFor, when set, names the serving process's decision for
	// Nova's request requestID about VM vm ("" for none): a placement
	// recorded without a decision id gets it.
	DecisionFor func(requestID, vm string) string
}

// Server serves a ledger over HTTP. Its methods are http.HandlerFuncs.
type Server struct {
	l       ledger.Ledger
	log     *zap.Logger
	o       ServerOptions
	streams atomic.Int64

	// streamsCtx ends the event streams on Close (http.Server.Shutdown
	// does not cancel the contexts of requests in flight).
	streamsCtx context.Context
	endStreams context.CancelFunc
}

// NewServer serves l.
func NewServer(l ledger.Ledger, log *zap.Logger, o ServerOptions) *Server {
	if log == nil {
		log = zap.NewNop()
	}
	if o.StreamRefused == nil {
		o.StreamRefused = func() {}
	}
	if o.Streams == nil {
		o.Streams = func(int) {}
	}
	s := &Server{l: l, log: log, o: o}
	s.streamsCtx, s.endStreams = context.WithCancel(context.Background())
	return s
}

// Close ends the event streams being served.
func (s *Server) Close() { s.endStreams() }

func (s *Server) onWrite(kind ledger.Kind, key string) {
	if s.o.OnWrite != nil {
		s.o.OnWrite(kind, key)
	}
}

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

// DecodeBody reads a JSON object strictly: known fields only, nothing after.
func DecodeBody(w http.ResponseWriter, r *http.Request, limit int64, v any) error {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			WriteError(w, http.StatusRequestEntityTooLarge, "request body is larger than "+strconv.FormatInt(limit, 10)+" bytes")
			return err
		}
		WriteError(w, http.StatusBadRequest, "could not read the request body")
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		WriteError(w, http.StatusBadRequest, "body: "+filter.Clip(jsonMessage(err)))
		return err
	}
	if dec.More() {
		WriteError(w, http.StatusBadRequest, "body: trailing data after the JSON object")
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

func (s *Server) PutHost(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("host")
	var in hostInput
	if DecodeBody(w, r, maxRESTBody, &in) != nil {
		return
	}
	if in.Host != "" && in.Host != name {
		WriteError(w, http.StatusBadRequest, "host: the body names "+strconv.Quote(filter.Clip(in.Host))+", the path "+strconv.Quote(filter.Clip(name)))
		return
	}
	h, err := filter.NormalizeHost(filter.Host{Name: name, Country: in.Country, Organizations: in.Organizations, Region: in.Region})
	if err != nil {
		ValidationError(w, err)
		return
	}
	rec, changed, err := s.l.PutHost(r.Context(), h)
	if err != nil {
		LedgerError(s.log, w, r, err)
		return
	}
	s.onWrite(ledger.KindHost, h.Name)
	s.logWrite(r, ledger.KindHost, h.Name, ledger.OpPut, rec.TxID, changed)
	setChanged(w, changed)
	WriteJSON(w, http.StatusOK, rec)
}

func (s *Server) GetHost(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("host")
	if err := filter.ValidateHostName(name); err != nil {
		ValidationError(w, err)
		return
	}
	rec, err := s.l.GetHost(r.Context(), name)
	if err != nil {
		LedgerError(s.log, w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, rec)
}

func (s *Server) ListHosts(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit := defaultListLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxListLimit {
			WriteError(w, http.StatusBadRequest, "limit must be an integer from 1 to "+strconv.Itoa(maxListLimit))
			return
		}
		limit = n
	}
	after := q.Get("after")
	if len(after) > filter.MaxHostNameLen {
		WriteError(w, http.StatusBadRequest, "after is longer than a host name may be")
		return
	}
	page, err := s.l.ListHosts(r.Context(), after, limit)
	if err != nil {
		LedgerError(s.log, w, r, err)
		return
	}
	if page.Hosts == nil {
		page.Hosts = []ledger.HostRecord{}
	}
	WriteJSON(w, http.StatusOK, page)
}

// subject parses the {subject} path value, answering 400 when it is of no
// known form.
func subject(w http.ResponseWriter, r *http.Request) (filter.Subject, bool) {
	sub, err := filter.ParseSubject(r.PathValue("subject"))
	if err != nil {
		ValidationError(w, err)
		return "", false
	}
	return sub, true
}

func (s *Server) PutRegulation(w http.ResponseWriter, r *http.Request) {
	sub, ok := subject(w, r)
	if !ok {
		return
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRESTBody))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			WriteError(w, http.StatusRequestEntityTooLarge, "request body is larger than "+strconv.Itoa(maxRESTBody)+" bytes")
			return
		}
		WriteError(w, http.StatusBadRequest, "could not read the request body")
		return
	}
	terms, err := filter.ParseTerms(data)
	if err != nil {
		ValidationError(w, err)
		return
	}
	rec, changed, err := s.l.PutRegulation(r.Context(), sub, terms)
	if err != nil {
		LedgerError(s.log, w, r, err)
		return
	}
	s.onWrite(ledger.KindRegulation, string(sub))
	s.logWrite(r, ledger.KindRegulation, string(sub), ledger.OpPut, rec.TxID, changed)
	setChanged(w, changed)
	WriteJSON(w, http.StatusOK, rec)
}

func (s *Server) GetRegulation(w http.ResponseWriter, r *http.Request) {
	sub, ok := subject(w, r)
	if !ok {
		return
	}
	rec, err := s.l.GetRegulation(r.Context(), sub)
	if err != nil {
		LedgerError(s.log, w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, rec)
}

func (s *Server) DeleteRegulation(w http.ResponseWriter, r *http.Request) {
	sub, ok := subject(w, r)
	if !ok {
		return
	}
	if err := s.l.DeleteRegulation(r.Context(), sub); err != nil {
		LedgerError(s.log, w, r, err)
		return
	}
	s.onWrite(ledger.KindRegulation, string(sub))
	s.logWrite(r, ledger.KindRegulation, string(sub), ledger.OpDelete, "", true)
	w.WriteHeader(http.StatusNoContent)
}

// historyBody is the body of the history endpoints.
type historyBody struct {
	History []ledger.Change `json:"history"`
}

func (s *Server) history(w http.ResponseWriter, r *http.Request, kind ledger.Kind, key string) {
	changes, err := s.l.History(r.Context(), kind, key)
	if err != nil {
		LedgerError(s.log, w, r, err)
		return
	}
	if changes == nil {
		changes = []ledger.Change{}
	}
	WriteJSON(w, http.StatusOK, historyBody{History: changes})
}

func (s *Server) HostHistory(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("host")
	if err := filter.ValidateHostName(name); err != nil {
		ValidationError(w, err)
		return
	}
	s.history(w, r, ledger.KindHost, name)
}

func (s *Server) RegulationHistory(w http.ResponseWriter, r *http.Request) {
	sub, ok := subject(w, r)
	if !ok {
		return
	}
	s.history(w, r, ledger.KindRegulation, string(sub))
}

// LedgerInfo is the body of GET /v1/ledger: the backend and its height
// (the Server's), and what the serving process adds (ServerOptions.Info).
type LedgerInfo struct {
	Backend string `json:"backend"`
	// Writable says whether the server accepts writes for this backend.
	Writable    bool   `json:"writable"`
	Height      uint64 `json:"height"`
	CacheReady  bool   `json:"cache_ready"`
	CacheHeight uint64 `json:"cache_height"`
	// DenyUnregulated is filterd's decision option, so that its clients
	// (ledgerctl check and migrate) decide as it does.
	DenyUnregulated bool `json:"deny_unregulated"`
}

func (s *Server) Info(w http.ResponseWriter, r *http.Request) {
	h, err := s.l.Height(r.Context())
	if err != nil {
		LedgerError(s.log, w, r, err)
		return
	}
	info := LedgerInfo{Backend: s.o.Backend, Height: h}
	if s.o.Info != nil {
		s.o.Info(&info)
	}
	WriteJSON(w, http.StatusOK, info)
}

// lookupInput is the body of POST /v1/lookup.
type lookupInput struct {
	Subjects []string `json:"subjects"`
	Hosts    []string `json:"hosts"`
}

func (s *Server) Lookup(w http.ResponseWriter, r *http.Request) {
	var in lookupInput
	if DecodeBody(w, r, s.o.MaxBody, &in) != nil {
		return
	}
	if len(in.Subjects) > maxLookupKeys || len(in.Hosts) > maxLookupKeys {
		WriteError(w, http.StatusBadRequest, "a lookup asks for at most "+strconv.Itoa(maxLookupKeys)+" subjects and as many hosts")
		return
	}
	subjects := make([]filter.Subject, len(in.Subjects))
	for i, v := range in.Subjects {
		sub, err := filter.ParseSubject(v)
		if err != nil {
			ValidationError(w, err)
			return
		}
		subjects[i] = sub
	}
	// Host names are not checked: one that cannot be registered is simply
	// absent from the answer, as the ledger's Lookup has it.
	lk, err := s.l.Lookup(r.Context(), subjects, in.Hosts)
	if err != nil {
		LedgerError(s.log, w, r, err)
		return
	}
	out := lookupBody{Height: lk.Height, RequireAttested: lk.RequireAttested, Regulations: lk.Regulations, Hosts: lk.Hosts}
	if out.Regulations == nil {
		out.Regulations = map[filter.Subject]ledger.RegulationRecord{}
	}
	if out.Hosts == nil {
		out.Hosts = map[string]ledger.HostRecord{}
	}
	WriteJSON(w, http.StatusOK, out)
}

// events streams the ledger's events after ?after= as JSON lines
// (application/x-ndjson), with an empty line after every idle heartbeat
// interval, until the client leaves, the ledger's stream ends, or the server
// closes.
func (s *Server) Events(w http.ResponseWriter, r *http.Request) {
	var after uint64
	if v := r.URL.Query().Get("after"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			WriteError(w, http.StatusBadRequest, "after must be a block number from 0 to the ledger's height")
			return
		}
		after = n
	}
	if n := s.streams.Add(1); n > int64(s.o.MaxStreams) {
		s.streams.Add(-1)
		s.o.StreamRefused()
		w.Header().Set("Retry-After", "5")
		WriteError(w, http.StatusServiceUnavailable, "too many event streams are open (--max-streams "+strconv.Itoa(s.o.MaxStreams)+"); retry later")
		return
	}
	s.o.Streams(1)
	defer func() {
		s.streams.Add(-1)
		s.o.Streams(-1)
	}()
	ctx, cancel := mergeCancel(r.Context(), s.streamsCtx)
	defer cancel()
	if h, err := s.l.Height(ctx); err != nil {
		LedgerError(s.log, w, r, err)
		return
	} else if after > h {
		WriteError(w, http.StatusBadRequest, "after "+strconv.FormatUint(after, 10)+" is beyond the ledger's height "+strconv.FormatUint(h, 10))
		return
	}
	ch, err := s.l.Watch(ctx, after)
	if err != nil {
		LedgerError(s.log, w, r, err)
		return
	}
	rc := http.NewResponseController(w)
	// A stream outlives the server's read timeout; each write has its own
	// deadline, so that a client that stops reading is dropped.
	_ = rc.SetReadDeadline(time.Time{})
	write := func(f func() error) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(s.o.StreamWriteTimeout))
		return f() == nil
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	if !write(func() error { w.WriteHeader(http.StatusOK); return rc.Flush() }) {
		return
	}
	enc := json.NewEncoder(w)
	beat := time.NewTimer(s.o.Heartbeat)
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
		beat.Reset(s.o.Heartbeat)
	}
}

// HeadSource is a ledger that signs its heads: the embedded ledger (through
// filterd's backend). A ledger that is not one, or answers SignedHead with
// ledger.ErrNotFound, serves no heads (404).
type HeadSource interface {
	// SignedHead returns the latest signed head.
	SignedHead(ctx context.Context) (ledgerhead.Signed, error)
	// HashAt returns the hash of the entry at height (ErrNotFound above
	// the ledger's height).
	HashAt(ctx context.Context, height uint64) (string, error)
}

// ledgerHead serves GET /v1/ledger/head: the latest signed head (height,
// hash, time, key id, public key, signature), and with ?at=N the hash of the
// ledger's entry at height N ({"height": N, "hash": "..."}, unsigned), with
// which a client that remembers a head checks that the ledger still holds
// it.
func (s *Server) Head(w http.ResponseWriter, r *http.Request) {
	hs, ok := s.l.(HeadSource)
	if !ok {
		WriteError(w, http.StatusNotFound, "this filterd's "+s.o.Backend+" ledger publishes no signed heads")
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	if v := r.URL.Query().Get("at"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			WriteError(w, http.StatusBadRequest, "at must be a height (a block number)")
			return
		}
		hash, err := hs.HashAt(r.Context(), n)
		if err != nil {
			LedgerError(s.log, w, r, err)
			return
		}
		WriteJSON(w, http.StatusOK, ledgerhead.Head{Height: n, Hash: hash})
		return
	}
	sh, err := hs.SignedHead(r.Context())
	if err != nil {
		LedgerError(s.log, w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, sh)
}

// errorBody is every error's JSON.
type errorBody struct {
	Error string `json:"error"`
}

// WriteJSON answers v as JSON with status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // messages read "<admin token>", not "\u003c..."
	if err := enc.Encode(v); err != nil {
		status = http.StatusInternalServerError
		buf.Reset()
		buf.WriteString(`{"error":"internal error"}` + "\n")
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// WriteError answers {"error": msg} with status.
func WriteError(w http.ResponseWriter, status int, msg string) {
	WriteJSON(w, status, errorBody{Error: msg})
}

// LedgerError answers a ledger error with the status of its kind. The texts
// of ledger errors are safe for clients (package ledger's contract); any
// other error is logged and answered as an internal error.
func LedgerError(log *zap.Logger, w http.ResponseWriter, r *http.Request, err error) {
	var status int
	switch {
	case errors.Is(err, ledger.ErrNotFound):
		status = http.StatusNotFound
	case errors.Is(err, ledger.ErrInvalid):
		status = http.StatusBadRequest
	case errors.Is(err, ledger.ErrForbidden):
		status = http.StatusForbidden
		wr := writerOf(r.Context())
		log.Warn("ledger write refused", zap.String("method", r.Method), zap.String("path", r.URL.Path),
			zap.String("writer", wr.String()), zap.String("role", wr.Role), zap.Error(err))
	case errors.Is(err, ledger.ErrUnavailable), errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		log.Warn("ledger unavailable", zap.String("method", r.Method), zap.String("path", r.URL.Path), zap.Error(err))
		WriteError(w, http.StatusServiceUnavailable, "the ledger could not answer; retry later")
		return
	default:
		log.Error("ledger call failed", zap.String("method", r.Method), zap.String("path", r.URL.Path), zap.Error(err))
		WriteError(w, http.StatusInternalServerError, "internal error")
		return
	}
	msg := err.Error()
	var le *ledger.Error
	if errors.As(err, &le) {
		msg = le.Error()
	}
	WriteError(w, status, msg)
}

// ValidationError answers 400 with a pkg/filter validation message.
func ValidationError(w http.ResponseWriter, err error) {
	var ve *filter.ValidationError
	if errors.As(err, &ve) {
		WriteError(w, http.StatusBadRequest, ve.Error())
		return
	}
	WriteError(w, http.StatusBadRequest, "invalid input")
}
