package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/ledgerfence/ledgerfence/pkg/cache"
	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/embedded"
)

const (
	adminToken = "admin-secret"
	vm1UUID    = "6f1c0d3e-8b2a-4c1d-9e7f-0a1b2c3d4e5f"
	// project1 is the project of ../nova/testdata/nova_request.json.
	project1 = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
)

// flakyLedger is the embedded ledger with a switch that makes its reads fail
// as an unreachable ledger's would.
type flakyLedger struct {
	ledger.Ledger
	down atomic.Bool
	hang atomic.Bool // lookups wait for their context to end
}

func (f *flakyLedger) Lookup(ctx context.Context, subjects []filter.Subject, hosts []string) (ledger.Lookup, error) {
	if f.hang.Load() {
		<-ctx.Done()
		return ledger.Lookup{}, ledger.Errorf(ledger.ErrUnavailable, ctx.Err(), "no answer")
	}
	if f.down.Load() {
		return ledger.Lookup{}, ledger.Errorf(ledger.ErrUnavailable, errors.New("dial tcp 10.0.0.5:7051: connection refused"), "peer unreachable")
	}
	return f.Ledger.Lookup(ctx, subjects, hosts)
}

// env is a Server over the embedded ledger and a running cache.
type env struct {
	t      testing.TB
	ledger *flakyLedger
	cache  *cache.Cache
	srv    *Server
	reg    *prometheus.Registry
}

func newEnv(t testing.TB, cfg Config) *env {
	t.Helper()
	return newEnvLog(t, cfg, zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel)))
}

func newEnvLog(t testing.TB, cfg Config, log *zap.Logger) *env {
	t.Helper()
	l, err := embedded.Open(filepath.Join(t.TempDir(), embedded.FileName))
	if err != nil {
		t.Fatal(err)
	}
	fl := &flakyLedger{Ledger: l}
	reg := prometheus.NewRegistry()
	c, err := cache.New(fl, log, reg, cache.Config{MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.AdminToken == "" {
		cfg.AdminToken = adminToken
	}
	if cfg.Backend == "" {
		cfg.Backend, cfg.Writable = "embedded", true
	}
	srv, err := New(fl, c, log, reg, reg, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = c.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		srv.Close()
		if err := l.Close(); err != nil {
			t.Error(err)
		}
	})
	waitFor(t, "the cache filled", c.Ready)
	return &env{t: t, ledger: fl, cache: c, srv: srv, reg: reg}
}

// do sends a request to the server's handler; token "" sends none.
func (e *env) do(method, path, token string, body []byte) *httptest.ResponseRecorder {
	e.t.Helper()
	req := httptest.NewRequest(method, path, bytes.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	rec := httptest.NewRecorder()
	e.srv.ServeHTTP(rec, req)
	return rec
}

// must sends a request and fails the test unless it gets status.
func (e *env) must(status int, method, path, token string, body []byte) *httptest.ResponseRecorder {
	e.t.Helper()
	rec := e.do(method, path, token, body)
	if rec.Code != status {
		e.t.Fatalf("%s %s: status %d, want %d; body %s", method, path, rec.Code, status, rec.Body)
	}
	return rec
}

func (e *env) putHost(name, country string, orgs ...string) {
	e.t.Helper()
	b, _ := json.Marshal(map[string]any{"country": country, "organizations": orgs})
	e.must(http.StatusOK, http.MethodPut, "/v1/hosts/"+name, adminToken, b)
}

func (e *env) putRegulation(subject, body string) {
	e.t.Helper()
	e.must(http.StatusOK, http.MethodPut, "/v1/regulations/"+subject, adminToken, []byte(body))
}

// seedTable4 registers the seed paper's five hosts and VM1's regulation.
func (e *env) seedTable4() {
	e.t.Helper()
	e.putHost("hm1", "JP", "CompanyA", "CompanyB")
	e.putHost("hm2", "JP", "CompanyA")
	e.putHost("hm3", "DE", "CompanyA")
	e.putHost("hm4", "GB", "CompanyC")
	e.putHost("hm5", "GB", "CompanyB")
	e.putRegulation("vm:"+vm1UUID, `{"countries": ["JP", "GB"], "organizations": ["CompanyA", "CompanyB"]}`)
}

func (e *env) height() uint64 {
	e.t.Helper()
	h, err := e.ledger.Height(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	return h
}

// novaRequest returns ../nova/testdata/nova_request.json as a generic
// document to edit.
func novaRequest(t testing.TB) map[string]any {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "nova", "testdata", "nova_request.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func specData(m map[string]any) map[string]any {
	return m["spec"].(map[string]any)["nova_object.data"].(map[string]any)
}

// withHosts sets the request's candidate hosts.
func withHosts(m map[string]any, names ...string) map[string]any {
	hosts := make([]any, len(names))
	weights := map[string]any{}
	for i, n := range names {
		hosts[i] = map[string]any{"host": n, "hypervisor_hostname": n + ".example.org"}
		weights[n] = float64(i)
	}
	m["hosts"] = hosts
	m["weights"] = weights
	return m
}

func encode(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// answer decodes Nova's answer strictly: exactly one key, "hosts".
func answer(t testing.TB, rec *httptest.ResponseRecorder) []string {
	t.Helper()
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(rec.Body.Bytes(), &raw); err != nil {
		t.Fatalf("answer %q: %v", rec.Body, err)
	}
	if len(raw) != 1 || raw["hosts"] == nil {
		t.Fatalf("answer %s: want exactly the key hosts", rec.Body)
	}
	var hosts []string
	if err := json.Unmarshal(raw["hosts"], &hosts); err != nil || hosts == nil {
		t.Fatalf("answer %s: hosts is not a list of strings", rec.Body)
	}
	return hosts
}

func decisionOf(t testing.TB, e *env, rec *httptest.ResponseRecorder) Decision {
	t.Helper()
	id := rec.Header().Get(HeaderDecision)
	if id == "" {
		t.Fatal("no decision id header")
	}
	var d Decision
	if err := json.Unmarshal(e.must(http.StatusOK, http.MethodGet, "/v1/decisions/"+id, "", nil).Body.Bytes(), &d); err != nil {
		t.Fatal(err)
	}
	return d
}

// waitFor polls cond until it holds, failing the test after a generous
// deadline (a hang, not a timing assertion).
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func httptestRequest(method, path, body string) *http.Request {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+adminToken)
	return req
}

func httptestRecorder() *httptest.ResponseRecorder { return httptest.NewRecorder() }

func (e *env) serve(req *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	e.srv.ServeHTTP(rec, req)
	return rec
}

// notReady is a cache that has not been filled.
type notReady struct{ Resolver }

func (notReady) Ready() bool { return false }
