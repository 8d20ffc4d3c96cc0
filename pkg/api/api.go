// Package api serves filterd's HTTP API: Nova's external-scheduler webhook
// (POST /scheduler/nova/external), the REST API under /v1/ (hosts,
// regulations, history, what-if checks, recent decisions), /metrics,
// /healthz and /readyz.
//
// The webhook decides from a cache of the ledger (package cache) with
// pkg/filter's Evaluate, and fails closed: when the ledger cannot answer for
// a VM, Nova gets 200 {"hosts": []}, never an error that SAP's Nova would
// answer by trying every host. Every webhook answer carries a decision id
// (header X-Ledgerfence-Decision); the decision is logged, counted and kept
// in a bounded store served at GET /v1/decisions/{id}.
//
// Besides DESIGN.md's table, the REST API serves what a ledger client needs
// (package ledger/remote): GET /v1/ledger (backend, writability, height),
// POST /v1/lookup (a batched read) and GET /v1/events?after=N (the ledger's
// events as JSON lines, an empty line after each idle heartbeat), and
// GET /v1/decisions?limit=N (the most recent decisions, newest first).
//
// REST errors are {"error": "..."} with a 4xx or 5xx status; their text never
// holds internal detail. Writes need a backend that accepts writes through
// filterd (the embedded ledger) and a bearer token: a writer token (package
// tokens), whose identity and role the ledger records and checks with
// package access's rules, or the operator's admin token, which no rule
// checks. The writer recorded comes from the token alone: a client cannot
// name it (an X-Ledgerfence-Writer header is ignored). Reads are open unless a
// read token is configured; then the read token, the admin token or a writer
// token is needed.
package api

import (
	"context"
	"crypto/subtle"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/ledgerfence/ledgerfence/pkg/api/ui"
	"github.com/ledgerfence/ledgerfence/pkg/cache"
	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/access"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/remote"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/tokens"
	"github.com/ledgerfence/ledgerfence/pkg/nova"
)

// Headers.
const (
	// HeaderDecision carries the decision id of every webhook answer.
	HeaderDecision = "X-Ledgerfence-Decision"
	// HeaderChanged says whether a write changed the ledger ("true") or was
	// a no-op ("false").
	HeaderChanged = remote.HeaderChanged
)

// Defaults of Config.
const (
	// DefaultMaxBodyBytes is the webhook's body limit: Nova's request for
	// 10,000 hosts with long names and weights is about 2 MiB.
	DefaultMaxBodyBytes = 8 << 20
	// DefaultDecisions is how many recent decisions are kept.
	DefaultDecisions = 1000
	// DefaultDecisionBytes bounds the memory of the decision store: 1,000
	// decisions of 1,000 hosts (about 13 KiB each) fit.
	DefaultDecisionBytes = 16 << 20
	// DefaultMaxBuffered bounds the webhook bodies held in memory at once:
	// a hundred requests of 1,000 hosts (about 130 KiB each) fit in the
	// half kept for bodies up to DefaultLargeBody.
	DefaultMaxBuffered = 32 << 20
	// DefaultLargeBody is the size above which a body may use only half of
	// --max-buffered: Nova's request for 5,000 hosts.
	DefaultLargeBody = 1 << 20
	// DefaultMaxInFlight bounds the webhook requests being decided at
	// once; on two cores a thousand-host decision takes well under a
	// millisecond, so a queue of 64 is already 30 ms of work.
	DefaultMaxInFlight = 64
	// DefaultMaxRESTInFlight: heavy REST reads answered at once; a core's
	// worth, so that the other is the webhook's.
	DefaultMaxRESTInFlight = 2
	// DefaultMaxLargeInFlight: large bodies are decided one at a time, so
	// that a flood of them leaves ordinary requests a core.
	DefaultMaxLargeInFlight = 1
	// DefaultReadTimeout bounds the time to receive a webhook body, well
	// below Nova's own timeout, so that a slow body gets {"hosts": []}
	// before Nova gives up.
	DefaultReadTimeout = 5 * time.Second
	// DefaultMaxStreams bounds the event streams served at once.
	DefaultMaxStreams = 64
	// DefaultStreamWriteTimeout bounds a write to an event stream: a
	// client that does not read for that long is dropped.
	DefaultStreamWriteTimeout = 30 * time.Second
	// DefaultDecisionTimeout bounds the ledger lookups of one decision, so
	// that filterd fails closed before Nova gives up on it (SAP's Nova then
	// takes every host).
	DefaultDecisionTimeout = 2 * time.Second
	// DefaultWriter is the writer recorded for writes made with the admin
	// token (role access.RoleOperator).
	DefaultWriter = "filterd-admin"
	// DefaultHeartbeat is the idle interval after which GET /v1/events
	// writes an empty line, so that clients can tell a quiet stream from a
	// dead one.
	DefaultHeartbeat = 15 * time.Second
	// maxRESTBody is the body limit of REST requests other than checks.
	maxRESTBody = 1 << 20
)

// Config is the API's configuration. Zero values take the defaults.
type Config struct {
	// DenyUnregulated denies every host to a VM no regulation applies to.
	DenyUnregulated bool
	// AdminToken is the operator's token: its writes are recorded as
	// DefaultWriter and checked by no rule. Host agents and VM managers
	// hold writer tokens (Writers) instead.
	AdminToken string
	// Writers, when set, authenticates writer tokens: their writes are made
	// by the token's identity (access.WithIdentity), which the ledger checks
	// and records. With neither AdminToken nor Writers, writes are refused.
	Writers Writers
	// ReadToken, when set, is required (or the admin token, or a writer
	// token) for reads.
	ReadToken string
	// WebhookToken, when set, is required for the webhook.
	WebhookToken string
	// Backend names the ledger backend, for GET /v1/ledger.
	Backend string
	// Writable says whether the backend accepts writes through filterd
	// (embedded: yes; fabric: writers sign their own transactions).
	Writable bool
	// MaxBodyBytes is the webhook's (and checks') body limit.
	MaxBodyBytes int64
	// MaxBuffered bounds the webhook bodies held at once; bodies over
	// LargeBody may use only half of it.
	MaxBuffered int64
	LargeBody   int64
	// MaxRESTInFlight bounds the heavy REST reads answered at once.
	MaxRESTInFlight int
	// MaxInFlight bounds the webhook requests being decided at once;
	// MaxLargeInFlight those with a body over LargeBody.
	MaxInFlight      int
	MaxLargeInFlight int
	// ReadTimeout bounds the time to receive a webhook request.
	ReadTimeout time.Duration
	// MaxStreams bounds the event streams served at once; StreamWriteTimeout
	// bounds each write to one.
	MaxStreams         int
	StreamWriteTimeout time.Duration
	// Decisions and DecisionBytes bound the decision store.
	Decisions     int
	DecisionBytes int
	// Heartbeat is the event stream's idle heartbeat.
	Heartbeat time.Duration
	// DecisionTimeout bounds the ledger lookups of one decision (webhook
	// and checks); past it the decision fails closed.
	DecisionTimeout time.Duration
	// Publisher, when set, is given every decision that denied a host.
	Publisher Publisher
	// DecisionLog, when set, takes the decision lines (one summary per
	// decision; one per denied host at debug level) instead of the
	// server's logger, e.g. a tee to pkg/decisionlog's file.
	DecisionLog *zap.Logger
	// Clock is time.Now by default.
	Clock func() time.Time
}

func (c *Config) defaults() error {
	if c.MaxBodyBytes < 0 || c.Decisions < 0 || c.DecisionBytes < 0 || c.Heartbeat < 0 || c.DecisionTimeout < 0 ||
		c.MaxBuffered < 0 || c.LargeBody < 0 || c.MaxInFlight < 0 || c.MaxLargeInFlight < 0 || c.MaxRESTInFlight < 0 || c.ReadTimeout < 0 || c.MaxStreams < 0 || c.StreamWriteTimeout < 0 {
		return errors.New("api: negative config value")
	}
	for _, d := range []struct {
		v   *int64
		def int64
	}{{&c.MaxBuffered, DefaultMaxBuffered}, {&c.LargeBody, DefaultLargeBody}} {
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	for _, d := range []struct {
		v   *int
		def int
	}{{&c.MaxInFlight, DefaultMaxInFlight}, {&c.MaxLargeInFlight, DefaultMaxLargeInFlight}, {&c.MaxRESTInFlight, DefaultMaxRESTInFlight}, {&c.MaxStreams, DefaultMaxStreams}, {&c.DecisionBytes, DefaultDecisionBytes}} {
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
	}{{&c.ReadTimeout, DefaultReadTimeout}, {&c.StreamWriteTimeout, DefaultStreamWriteTimeout}} {
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.Decisions == 0 {
		c.Decisions = DefaultDecisions
	}
	if c.Heartbeat == 0 {
		c.Heartbeat = DefaultHeartbeat
	}
	if c.DecisionTimeout == 0 {
		c.DecisionTimeout = DefaultDecisionTimeout
	}
	if c.Backend == "" {
		c.Backend = "unknown"
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	return nil
}

// Resolver answers from the ledger's cache; *cache.Cache is one.
type Resolver interface {
	// Resolve fills q; an error means the ledger cannot answer for q.
	Resolve(ctx context.Context, q *cache.Query) error
	// Invalidate forgets a record after a write made through the API.
	Invalidate(kind ledger.Kind, key string)
	// Ready reports whether the cache has been filled.
	Ready() bool
	// Stale reports whether the cache's entries are no longer trusted (the
	// event stream has been down too long): each decision then asks the
	// ledger.
	Stale() bool
	// Height is the ledger height of the cache's view.
	Height() uint64
}

// Writers authenticates writer tokens; *tokens.Store is one. Its errors:
// tokens.ErrUnknown, tokens.ErrRevoked, tokens.ErrFile (no token can be
// checked).
type Writers interface {
	Authenticate(token string) (access.Identity, error)
}

// Server is the HTTP API. It is an http.Handler.
type Server struct {
	cfg       Config
	ledger    ledger.Ledger
	cache     Resolver
	log       *zap.Logger
	m         *metrics
	decisions *decisionStore
	adm       *admission
	rs        *remote.Server // the ledger's HTTP side, for remote clients
	restSlots chan struct{}
	mux       *http.ServeMux
	scratch   sync.Pool
}

// New builds the API over a ledger and its cache. Metrics are registered on
// reg; /metrics serves gatherer.
func New(l ledger.Ledger, c Resolver, log *zap.Logger, reg prometheus.Registerer, gatherer prometheus.Gatherer, cfg Config) (*Server, error) {
	if l == nil || c == nil {
		return nil, errors.New("api: nil ledger or cache")
	}
	if log == nil {
		log = zap.NewNop()
	}
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	if cfg.DecisionLog == nil {
		cfg.DecisionLog = log
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:       cfg,
		ledger:    l,
		cache:     c,
		log:       log,
		m:         m,
		decisions: newDecisionStore(cfg.Decisions, cfg.DecisionBytes),
		adm:       newAdmission(cfg.MaxBuffered, cfg.LargeBody, cfg.MaxInFlight, cfg.MaxLargeInFlight),
		restSlots: make(chan struct{}, cfg.MaxRESTInFlight),
		mux:       http.NewServeMux(),
	}
	s.decisions.evicted = func() { m.limit(LimitDecisionBytes) }
	if err := s.adm.register(reg); err != nil {
		return nil, err
	}
	s.rs = remote.NewServer(l, log, remote.ServerOptions{
		Backend:            cfg.Backend,
		MaxBody:            cfg.MaxBodyBytes,
		Heartbeat:          cfg.Heartbeat,
		StreamWriteTimeout: cfg.StreamWriteTimeout,
		MaxStreams:         cfg.MaxStreams,
		Info: func(info *remote.LedgerInfo) {
			info.Writable = cfg.Writable
			info.CacheReady = c.Ready()
			info.CacheHeight = c.Height()
			info.DenyUnregulated = cfg.DenyUnregulated
		},
		// filterd's own answers see a write before its event arrives.
		OnWrite:       c.Invalidate,
		StreamRefused: func() { m.limit(LimitStreams) },
		// A placement recorded through this filterd names its decision.
		DecisionFor: func(requestID, vm string) string { return s.decisions.forMove(requestID, vm) },
		Streams:     func(d int) { m.streams.Add(float64(d)) },
	})
	s.scratch.New = func() any { return newScratch() }
	s.routes(gatherer)
	return s, nil
}

// Close ends the event streams being served. Call it when the HTTP server
// shuts down (http.Server.RegisterOnShutdown).
func (s *Server) Close() { s.rs.Close() }

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// methods dispatches by method and answers 405 for the others.
type methods map[string]http.HandlerFunc

func (m methods) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h, ok := m[r.Method]; ok {
		h(w, r)
		return
	}
	allow := make([]string, 0, len(m))
	for _, method := range []string{http.MethodGet, http.MethodPut, http.MethodPost, http.MethodDelete} {
		if _, ok := m[method]; ok {
			allow = append(allow, method)
		}
	}
	w.Header().Set("Allow", strings.Join(allow, ", "))
	remote.WriteError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed: use "+strings.Join(allow, " or "))
}

func (s *Server) routes(gatherer prometheus.Gatherer) {
	handle := func(pattern string, h http.Handler) {
		s.mux.Handle(pattern, s.m.instrument(pattern, h))
	}
	s.mux.HandleFunc(nova.Path, s.webhook)
	handle("/v1/hosts", methods{http.MethodGet: s.read(s.heavy(s.rs.ListHosts))})
	handle("/v1/hosts/{host}", methods{http.MethodGet: s.read(s.rs.GetHost), http.MethodPut: s.write(s.rs.PutHost)})
	handle("/v1/regulations/{subject}", methods{
		http.MethodGet:    s.read(s.rs.GetRegulation),
		http.MethodPut:    s.write(s.rs.PutRegulation),
		http.MethodDelete: s.write(s.rs.DeleteRegulation),
	})
	handle("/v1/hosts/{host}/attest", methods{http.MethodPost: s.write(s.rs.AttestHost)})
	handle("/v1/registry", methods{http.MethodGet: s.read(s.rs.Registry)})
	handle("/v1/proposals", methods{http.MethodGet: s.read(s.rs.ListProposals), http.MethodPost: s.write(s.rs.Propose)})
	handle("/v1/proposals/{id}", methods{http.MethodGet: s.read(s.rs.GetProposal)})
	handle("/v1/proposals/{id}/approve", methods{http.MethodPost: s.write(s.rs.Approve)})
	handle("/v1/bindings/{project}", methods{http.MethodGet: s.read(s.rs.GetBinding), http.MethodPut: s.write(s.rs.BindProject)})
	handle("/v1/history/registry", methods{http.MethodGet: s.read(s.heavy(s.rs.RegistryHistory))})
	handle("/v1/history/proposals/{id}", methods{http.MethodGet: s.read(s.heavy(s.rs.ProposalHistory))})
	handle("/v1/history/bindings/{project}", methods{http.MethodGet: s.read(s.heavy(s.rs.BindingHistory))})
	handle("/v1/history/hosts/{host}", methods{http.MethodGet: s.read(s.heavy(s.rs.HostHistory))})
	handle("/v1/history/regulations/{subject}", methods{http.MethodGet: s.read(s.heavy(s.rs.RegulationHistory))})
	handle("/v1/check", methods{http.MethodPost: s.read(s.heavy(s.check))})
	handle("/v1/decisions", methods{http.MethodGet: s.read(s.listDecisions)})
	handle("/v1/decisions/{id}", methods{http.MethodGet: s.read(s.getDecision)})
	handle("/v1/placements", methods{http.MethodGet: s.read(s.heavy(s.rs.Placements)), http.MethodPost: s.write(s.rs.RecordPlacement)})
	handle("/v1/residency/vm/{id}", methods{http.MethodGet: s.read(s.heavy(s.residencyReport(filter.KindVM)))})
	handle("/v1/residency/project/{id}", methods{http.MethodGet: s.read(s.heavy(s.residencyReport(filter.KindProject)))})
	handle("/v1/ledger", methods{http.MethodGet: s.read(s.rs.Info)})
	handle("/v1/ledger/head", methods{http.MethodGet: s.read(s.rs.Head)})
	handle("/v1/lookup", methods{http.MethodPost: s.read(s.heavy(s.rs.Lookup))})
	handle("/v1/events", methods{http.MethodGet: s.read(s.rs.Events)})
	handle(ui.Prefix, ui.Handler())
	// Browsers ask for /favicon.ico on any page: the page's icon.
	s.mux.Handle("/favicon.ico", methods{http.MethodGet: http.RedirectHandler(ui.Prefix+"favicon.svg", http.StatusMovedPermanently).ServeHTTP})
	s.mux.Handle("/metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}))
	s.mux.Handle("/healthz", methods{http.MethodGet: s.healthz})
	s.mux.Handle("/readyz", methods{http.MethodGet: s.readyz})
	handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && !strings.HasPrefix(r.URL.Path, "/v1/") {
			// A Nova configured with a wrong path gets no host, not an
			// error it would answer by taking every host.
			d := &decision{id: newDecisionID(), time: s.cfg.Clock(), operation: opUnknown}
			w.Header().Set(HeaderDecision, d.id)
			s.undecided(w, r, d, nil, OutcomeRequestInvalid, "no such endpoint: POST "+filter.Clip(r.URL.Path)+
				"; Nova's webhook is "+nova.Path)
			return
		}
		remote.WriteError(w, http.StatusNotFound, "no such endpoint: "+filter.Clip(r.URL.Path))
	}))
}

// heavy bounds the REST reads whose work grows with their input or the
// ledger (checks, lookups, listings, histories) to --max-rest-in-flight at
// once, so that they cannot take the cores and memory the webhook needs;
// past it they get 503.
func (s *Server) heavy(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		select {
		case s.restSlots <- struct{}{}:
			defer func() { <-s.restSlots }()
			h(w, r)
		default:
			s.m.limit(LimitRESTInFlight)
			w.Header().Set("Retry-After", "1")
			remote.WriteError(w, http.StatusServiceUnavailable, "too many REST reads are being answered (--max-rest-in-flight "+
				strconv.Itoa(cap(s.restSlots))+"); retry later")
		}
	}
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	remote.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	if !s.cache.Ready() {
		remote.WriteError(w, http.StatusServiceUnavailable, "not ready: the cache has not been filled from the ledger yet")
		return
	}
	if s.cache.Stale() {
		remote.WriteError(w, http.StatusServiceUnavailable, "not ready: the ledger's event stream has been down for longer than --max-staleness; decisions ask the ledger and fail closed when it does not answer")
		return
	}
	remote.WriteJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// bearer returns the bearer token of r, if any.
func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	const prefix = "Bearer "
	if len(h) <= len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		return "", false
	}
	return strings.TrimSpace(h[len(prefix):]), true
}

// tokenIs compares in constant time; an empty want never matches.
func tokenIs(got, want string) bool {
	return want != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

func unauthorized(w http.ResponseWriter, msg string) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="ledgerfence"`)
	remote.WriteError(w, http.StatusUnauthorized, msg)
}

// read requires the read token, the admin token or a writer token when a
// read token is configured.
func (s *Server) read(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.cfg.ReadToken != "" {
			tok, ok := bearer(r)
			if !ok {
				unauthorized(w, "reads need Authorization: Bearer <read token>")
				return
			}
			if !tokenIs(tok, s.cfg.ReadToken) && !tokenIs(tok, s.cfg.AdminToken) {
				if _, ok := s.writerToken(w, r, tok, "reads need Authorization: Bearer <read token>"); !ok {
					return
				}
			}
		}
		h(w, r)
	}
}

// write requires a writable backend and a writer token or the admin token,
// and makes the write's context name its writer: the token's identity, or
// the operator for the admin token.
func (s *Server) write(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !s.cfg.Writable {
			remote.WriteError(w, http.StatusForbidden, "this filterd serves the "+s.cfg.Backend+
				" ledger, which filterd does not write to: writers sign their own transactions (hostagent, ledgerctl)")
			return
		}
		if s.cfg.AdminToken == "" && s.cfg.Writers == nil {
			remote.WriteError(w, http.StatusForbidden, "writes are disabled: filterd has neither writer tokens nor an admin token")
			return
		}
		const need = "writes need Authorization: Bearer <token>, a writer token (ledgerctl token issue)"
		tok, ok := bearer(r)
		if !ok {
			unauthorized(w, need)
			return
		}
		ctx := r.Context()
		if tokenIs(tok, s.cfg.AdminToken) {
			ctx = ledger.WithWriter(ctx, ledger.Writer{ID: DefaultWriter, Role: access.RoleOperator})
		} else {
			who, ok := s.writerToken(w, r, tok, need)
			if !ok {
				return
			}
			ctx = access.WithIdentity(ctx, who)
		}
		h(w, r.WithContext(ctx))
	}
}

// writerToken authenticates a writer token, answering the request when it
// is refused: 401 for a token unknown or revoked, 503 when the tokens file
// cannot be used. The token itself is never logged.
func (s *Server) writerToken(w http.ResponseWriter, r *http.Request, tok, need string) (access.Identity, bool) {
	if s.cfg.Writers == nil {
		unauthorized(w, need)
		return access.Identity{}, false
	}
	who, err := s.cfg.Writers.Authenticate(tok)
	switch {
	case err == nil:
		return who, true
	case errors.Is(err, tokens.ErrRevoked):
		s.log.Warn("a revoked writer token was presented", zap.String("method", r.Method), zap.String("path", r.URL.Path),
			zap.String("remote", r.RemoteAddr), zap.Error(err))
		unauthorized(w, "this token was revoked")
	case errors.Is(err, tokens.ErrUnknown):
		unauthorized(w, need)
	default:
		s.log.Error("writer tokens cannot be checked; no writer token is accepted", zap.Error(err))
		remote.WriteError(w, http.StatusServiceUnavailable, "writer tokens cannot be checked now; retry later")
	}
	return access.Identity{}, false
}
