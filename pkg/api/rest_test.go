package api

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ledgerfence/ledgerfence/pkg/decide"
	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/access"
	"github.com/ledgerfence/ledgerfence/pkg/nova"
)

func decodeInto[T any](t *testing.T, data []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatalf("%s: %v", data, err)
	}
	return v
}

func errorText(t *testing.T, data []byte) string {
	t.Helper()
	var raw map[string]any
	if err := json.Unmarshal(data, &raw); err != nil {
		t.Fatalf("error body %q is not JSON", data)
	}
	msg, ok := raw["error"].(string)
	if !ok || len(raw) != 1 || msg == "" {
		t.Fatalf("error body %s: want exactly {\"error\": \"...\"}", data)
	}
	return msg
}

func TestHosts(t *testing.T) {
	e := newEnv(t, Config{})
	rec := e.must(http.StatusOK, http.MethodPut, "/v1/hosts/hm1", adminToken,
		[]byte(`{"country": "jp", "organizations": ["CompanyB", "CompanyA", "CompanyB"], "region": "r1"}`))
	if rec.Header().Get(HeaderChanged) != "true" {
		t.Errorf("%s = %q, want true", HeaderChanged, rec.Header().Get(HeaderChanged))
	}
	got := decodeInto[ledger.HostRecord](t, rec.Body.Bytes())
	want := filter.Host{Name: "hm1", Country: "JP", Organizations: []string{"CompanyA", "CompanyB"}, Region: "r1"}
	if !got.Host.Equal(want) || got.TxID == "" || got.Writer != (ledger.Writer{ID: DefaultWriter, Role: access.RoleOperator}) {
		t.Errorf("stored %+v, want %+v by %s", got, want, DefaultWriter)
	}
	// The same facts again: a no-op.
	rec = e.must(http.StatusOK, http.MethodPut, "/v1/hosts/hm1", adminToken,
		[]byte(`{"host": "hm1", "country": "JP", "organizations": ["CompanyA", "CompanyB"], "region": "r1"}`))
	if rec.Header().Get(HeaderChanged) != "false" {
		t.Errorf("unchanged write: %s = %q, want false", HeaderChanged, rec.Header().Get(HeaderChanged))
	}
	got = decodeInto[ledger.HostRecord](t, e.must(http.StatusOK, http.MethodGet, "/v1/hosts/hm1", "", nil).Body.Bytes())
	if !got.Host.Equal(want) {
		t.Errorf("GET = %+v", got)
	}
	e.must(http.StatusNotFound, http.MethodGet, "/v1/hosts/nope", "", nil)

	for _, n := range []string{"hm2", "hm3", "hm4"} {
		e.putHost(n, "GB", "CompanyC")
	}
	// A client cannot name its writer: the header is ignored.
	req := httptestRequest(http.MethodPut, "/v1/hosts/hm5", `{"country": "GB", "organizations": ["CompanyB"]}`)
	req.Header.Set("X-Ledgerfence-Writer", "hostagent/hm5")
	rec = e.serve(req)
	if rec.Code != http.StatusOK || decodeInto[ledger.HostRecord](t, rec.Body.Bytes()).Writer.ID != DefaultWriter {
		t.Errorf("write naming its writer: %d %s", rec.Code, rec.Body)
	}
	page := decodeInto[ledger.HostPage](t, e.must(http.StatusOK, http.MethodGet, "/v1/hosts?limit=2", "", nil).Body.Bytes())
	var names []string
	for {
		for _, h := range page.Hosts {
			names = append(names, h.Name)
		}
		if page.Next == "" {
			break
		}
		page = decodeInto[ledger.HostPage](t, e.must(http.StatusOK, http.MethodGet, "/v1/hosts?limit=2&after="+page.Next, "", nil).Body.Bytes())
	}
	if want := []string{"hm1", "hm2", "hm3", "hm4", "hm5"}; !slices.Equal(names, want) {
		t.Errorf("listed %v, want %v", names, want)
	}
	e.must(http.StatusBadRequest, http.MethodGet, "/v1/hosts?limit=0", "", nil)
	e.must(http.StatusBadRequest, http.MethodGet, "/v1/hosts?limit=x", "", nil)

	hist := decodeInto[historyBody](t, e.must(http.StatusOK, http.MethodGet, "/v1/history/hosts/hm1", "", nil).Body.Bytes())
	if len(hist.History) != 1 || hist.History[0].Op != ledger.OpPut || hist.History[0].TxID == "" || hist.History[0].Writer.ID == "" {
		t.Errorf("history = %+v, want one put with who and tx id", hist.History)
	}
}

func TestRegulations(t *testing.T) {
	forms := []struct{ name, body string }{
		{"allow objects", `{"allow": [{"country": "JP", "organization": "CompanyA"}, {"country": "GB", "organization": "CompanyA"}, {"country": "JP", "organization": "CompanyB"}, {"country": "GB", "organization": "CompanyB"}]}`},
		{"country and organisation lists", `{"countries": ["JP", "GB"], "organizations": ["CompanyA", "CompanyB"]}`},
		{"seed identifiers", `{"allow": ["JP.CompanyA", "JP.CompanyB", "GB.CompanyA", "GB.CompanyB"]}`},
	}
	e := newEnv(t, Config{})
	subject := "vm:" + strings.ToUpper(vm1UUID)
	var first []filter.Rule
	for i, f := range forms {
		t.Run(f.name, func(t *testing.T) {
			rec := e.must(http.StatusOK, http.MethodPut, "/v1/regulations/"+subject, adminToken, []byte(f.body))
			got := decodeInto[ledger.RegulationRecord](t, rec.Body.Bytes())
			if got.Subject != filter.VMSubject(vm1UUID) || len(got.Allow) != 4 {
				t.Fatalf("stored %+v", got)
			}
			if i == 0 {
				first = got.Allow
				return
			}
			if !slices.Equal(got.Allow, first) || rec.Header().Get(HeaderChanged) != "false" {
				t.Errorf("form %q stored %v (changed %s), want %v unchanged", f.name, got.Allow, rec.Header().Get(HeaderChanged), first)
			}
		})
	}
	got := decodeInto[ledger.RegulationRecord](t, e.must(http.StatusOK, http.MethodGet, "/v1/regulations/"+subject, "", nil).Body.Bytes())
	if got.Owner == "" || got.Version != 1 {
		t.Errorf("GET = %+v, want an owner and version 1", got)
	}
	e.must(http.StatusNoContent, http.MethodDelete, "/v1/regulations/"+subject, adminToken, nil)
	e.must(http.StatusNotFound, http.MethodGet, "/v1/regulations/"+subject, "", nil)
	e.must(http.StatusNotFound, http.MethodDelete, "/v1/regulations/"+subject, adminToken, nil)
	hist := decodeInto[historyBody](t, e.must(http.StatusOK, http.MethodGet, "/v1/history/regulations/"+subject, "", nil).Body.Bytes())
	if len(hist.History) != 2 || hist.History[1].Op != ledger.OpDelete {
		t.Errorf("history = %+v, want a put and a delete", hist.History)
	}
}

func TestRESTBadInput(t *testing.T) {
	cases := []struct {
		name   string
		method string
		path   string
		token  string
		body   string
		status int
		msg    string
	}{
		{name: "invalid country", method: "PUT", path: "/v1/hosts/hm9", token: adminToken, body: `{"country": "XX", "organizations": ["CompanyA"]}`, status: 400, msg: "country"},
		{name: "lower-case nonsense country", method: "PUT", path: "/v1/hosts/hm9", token: adminToken, body: `{"country": "Japan", "organizations": ["CompanyA"]}`, status: 400, msg: "country"},
		{name: "invalid organisation", method: "PUT", path: "/v1/hosts/hm9", token: adminToken, body: `{"country": "JP", "organizations": ["Company A"]}`, status: 400, msg: "organizations"},
		{name: "no organisation", method: "PUT", path: "/v1/hosts/hm9", token: adminToken, body: `{"country": "JP", "organizations": []}`, status: 400, msg: "organisation"},
		{name: "wildcard organisation on a host", method: "PUT", path: "/v1/hosts/hm9", token: adminToken, body: `{"country": "JP", "organizations": ["*"]}`, status: 400, msg: "organizations"},
		{name: "host body of the wrong type", method: "PUT", path: "/v1/hosts/hm9", token: adminToken, body: `{"country": 81, "organizations": ["CompanyA"]}`, status: 400, msg: "country"},
		{name: "host body with an unknown field", method: "PUT", path: "/v1/hosts/hm9", token: adminToken, body: `{"country": "JP", "orgs": ["CompanyA"]}`, status: 400, msg: "orgs"},
		{name: "host body naming another host", method: "PUT", path: "/v1/hosts/hm9", token: adminToken, body: `{"host": "hm8", "country": "JP", "organizations": ["CompanyA"]}`, status: 400, msg: "hm8"},
		{name: "malformed host body", method: "PUT", path: "/v1/hosts/hm9", token: adminToken, body: `{"country": "JP",`, status: 400, msg: "body"},
		{name: "invalid host name", method: "PUT", path: "/v1/hosts/hm%209", token: adminToken, body: `{"country": "JP", "organizations": ["CompanyA"]}`, status: 400, msg: "host"},
		{name: "invalid country in a regulation", method: "PUT", path: "/v1/regulations/vm:" + vm1UUID, token: adminToken, body: `{"countries": ["JP", "ZZ"], "organizations": ["CompanyA"]}`, status: 400, msg: "country"},
		{name: "invalid organisation in a regulation", method: "PUT", path: "/v1/regulations/project:p1", token: adminToken, body: `{"allow": ["JP.Company A"]}`, status: 400, msg: "organization"},
		{name: "regulation of no known form", method: "PUT", path: "/v1/regulations/project:p1", token: adminToken, body: `{"permit": ["JP.CompanyA"]}`, status: 400, msg: "regulation"},
		{name: "unknown subject kind", method: "PUT", path: "/v1/regulations/user:alice", token: adminToken, body: `{"allow": ["JP.CompanyA"]}`, status: 400, msg: "subject"},
		{name: "subject without a kind", method: "PUT", path: "/v1/regulations/" + vm1UUID, token: adminToken, body: `{"allow": ["JP.CompanyA"]}`, status: 400, msg: "subject"},
		{name: "VM subject that is not a UUID", method: "PUT", path: "/v1/regulations/vm:vm1", token: adminToken, body: `{"allow": ["JP.CompanyA"]}`, status: 400, msg: "subject"},
		{name: "unknown subject form on read", method: "GET", path: "/v1/regulations/tenant:x", status: 400, msg: "subject"},
		{name: "unknown subject form on delete", method: "DELETE", path: "/v1/regulations/tenant:x", token: adminToken, status: 400, msg: "subject"},
		{name: "host write without a token", method: "PUT", path: "/v1/hosts/hm9", body: `{"country": "JP", "organizations": ["CompanyA"]}`, status: 401, msg: "writer token"},
		{name: "host write with a wrong token", method: "PUT", path: "/v1/hosts/hm9", token: "guess", body: `{"country": "JP", "organizations": ["CompanyA"]}`, status: 401, msg: "writer token"},
		{name: "regulation write without a token", method: "PUT", path: "/v1/regulations/vm:" + vm1UUID, body: `{"allow": ["JP.CompanyA"]}`, status: 401, msg: "writer token"},
		{name: "delete without a token", method: "DELETE", path: "/v1/regulations/vm:" + vm1UUID, status: 401, msg: "writer token"},
		{name: "wrong method", method: "POST", path: "/v1/hosts/hm1", token: adminToken, body: `{}`, status: 405, msg: "GET or PUT"},
		{name: "unknown endpoint", method: "GET", path: "/v1/nothing", status: 404, msg: "no such endpoint"},
		{name: "check without a VM or project", method: "POST", path: "/v1/check", body: `{"hosts": ["hm1"]}`, status: 400, msg: "instance_uuid"},
		{name: "check with an invalid UUID", method: "POST", path: "/v1/check", body: `{"instance_uuid": "vm1"}`, status: 400, msg: "instance_uuid"},
		{name: "check with an invalid host", method: "POST", path: "/v1/check", body: `{"instance_uuid": "` + vm1UUID + `", "hosts": ["a b"]}`, status: 400, msg: "host"},
		{name: "decision unknown", method: "GET", path: "/v1/decisions/nope", status: 404, msg: "decision"},
	}
	e := newEnv(t, Config{})
	e.seedTable4()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := e.height()
			var body []byte
			if tc.body != "" {
				body = []byte(tc.body)
			}
			rec := e.do(tc.method, tc.path, tc.token, body)
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d; body %s", rec.Code, tc.status, rec.Body)
			}
			if msg := errorText(t, rec.Body.Bytes()); !strings.Contains(msg, tc.msg) {
				t.Errorf("error %q, want it to mention %q", msg, tc.msg)
			}
			if after := e.height(); after != before {
				t.Errorf("ledger height %d -> %d: something was stored", before, after)
			}
		})
	}
	// Nothing of the refused writes is readable either.
	e.must(http.StatusNotFound, http.MethodGet, "/v1/hosts/hm9", "", nil)
	e.must(http.StatusNotFound, http.MethodGet, "/v1/regulations/project:p1", "", nil)
}

func TestReadToken(t *testing.T) {
	e := newEnv(t, Config{ReadToken: "reader"})
	e.seedTable4()
	for _, tc := range []struct {
		name   string
		token  string
		status int
	}{
		{"no token", "", http.StatusUnauthorized},
		{"wrong token", "guess", http.StatusUnauthorized},
		{"read token", "reader", http.StatusOK},
		{"admin token", adminToken, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, path := range []string{"/v1/hosts", "/v1/hosts/hm1", "/v1/regulations/vm:" + vm1UUID, "/v1/history/hosts/hm1", "/v1/decisions", "/v1/ledger"} {
				if rec := e.do(http.MethodGet, path, tc.token, nil); rec.Code != tc.status {
					t.Errorf("GET %s: status %d, want %d", path, rec.Code, tc.status)
				}
			}
		})
	}
	// The read token does not write; health and metrics stay open.
	e.must(http.StatusUnauthorized, http.MethodPut, "/v1/hosts/hm9", "reader", []byte(`{"country": "JP", "organizations": ["CompanyA"]}`))
	e.must(http.StatusOK, http.MethodGet, "/healthz", "", nil)
	e.must(http.StatusOK, http.MethodGet, "/metrics", "", nil)
}

func TestWritesRefused(t *testing.T) {
	t.Run("backend filterd does not write", func(t *testing.T) {
		e := newEnv(t, Config{Backend: "fabric", Writable: false})
		rec := e.must(http.StatusForbidden, http.MethodPut, "/v1/hosts/hm1", adminToken, []byte(`{"country": "JP", "organizations": ["CompanyA"]}`))
		if msg := errorText(t, rec.Body.Bytes()); !strings.Contains(msg, "fabric") {
			t.Errorf("error %q does not say why", msg)
		}
		info := decodeInto[LedgerInfo](t, e.must(http.StatusOK, http.MethodGet, "/v1/ledger", "", nil).Body.Bytes())
		if info.Writable || info.Backend != "fabric" {
			t.Errorf("ledger info = %+v", info)
		}
	})
	t.Run("neither writer tokens nor an admin token", func(t *testing.T) {
		e := newEnv(t, Config{})
		e.srv.cfg.AdminToken = ""
		rec := e.must(http.StatusForbidden, http.MethodPut, "/v1/hosts/hm1", "", []byte(`{"country": "JP", "organizations": ["CompanyA"]}`))
		if msg := errorText(t, rec.Body.Bytes()); !strings.Contains(msg, "neither writer tokens nor an admin token") {
			t.Errorf("error %q does not say how to enable writes", msg)
		}
	})
}

func TestCheck(t *testing.T) {
	e := newEnv(t, Config{})
	e.seedTable4()
	for _, tc := range []struct {
		name    string
		body    string
		allowed []string
		reasons map[string]filter.Reason
	}{
		{
			name:    "named hosts",
			body:    `{"instance_uuid": "` + vm1UUID + `", "hosts": ["hm3", "hm1", "ghost", "hm1"]}`,
			allowed: []string{"hm1"},
			reasons: map[string]filter.Reason{"hm3": filter.CountryNotAllowed, "hm1": "", "ghost": filter.HostUnregistered},
		},
		{
			name:    "every known host",
			body:    `{"instance_uuid": "` + vm1UUID + `", "project_id": "p1"}`,
			allowed: []string{"hm1", "hm2", "hm5"},
			reasons: map[string]filter.Reason{"hm1": "", "hm2": "", "hm3": filter.CountryNotAllowed, "hm4": filter.OrganizationNotAllowed, "hm5": ""},
		},
		{
			name:    "project only, unregulated",
			body:    `{"project_id": "p1", "hosts": ["hm3"]}`,
			allowed: []string{"hm3"},
			reasons: map[string]filter.Reason{"hm3": ""},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := decodeInto[decide.Report](t, e.must(http.StatusOK, http.MethodPost, "/v1/check", "", []byte(tc.body)).Body.Bytes())
			if !slices.Equal(res.Allowed, tc.allowed) {
				t.Errorf("allowed = %v, want %v", res.Allowed, tc.allowed)
			}
			if len(res.Verdicts) != len(tc.reasons) {
				t.Fatalf("verdicts = %+v, want %d", res.Verdicts, len(tc.reasons))
			}
			for _, v := range res.Verdicts {
				if r, ok := tc.reasons[v.Host]; !ok || r != v.Reason || (r != "" && v.Detail == "") {
					t.Errorf("verdict %+v, want reason %q with a detail", v, r)
				}
			}
		})
	}
	e.ledger.down.Store(true)
	rec := e.must(http.StatusServiceUnavailable, http.MethodPost, "/v1/check", "", []byte(`{"instance_uuid": "0d7e7a47-3c5b-4e8b-9a61-5f0b8d6c2e11", "hosts": ["hm1"]}`))
	if msg := errorText(t, rec.Body.Bytes()); strings.Contains(msg, "10.0.0.5") {
		t.Errorf("error %q leaks the cause", msg)
	}
}

// A check refused halfway through its host list must not leave those hosts
// marked as seen in the memory the next request reuses: they would be
// dropped from its answer as repeats.
func TestRefusedCheckLeavesNoHostsBehind(t *testing.T) {
	e := newEnv(t, Config{})
	e.seedTable4()
	for range 20 { // the pool hands the memory back to the next request, most often
		e.must(http.StatusBadRequest, http.MethodPost, "/v1/check", "",
			[]byte(`{"instance_uuid": "`+vm1UUID+`", "hosts": ["hm1", "hm2", "hm5", "a b"]}`))
		rec := e.must(http.StatusOK, http.MethodPost, nova.Path, "", encode(t, novaRequest(t)))
		if got, want := answer(t, rec), []string{"hm1", "hm2", "hm5"}; !slices.Equal(got, want) {
			t.Fatalf("hosts = %v after a refused check, want %v", got, want)
		}
	}
}

func TestHealthAndMetrics(t *testing.T) {
	e := newEnv(t, Config{})
	e.must(http.StatusOK, http.MethodGet, "/healthz", "", nil)
	e.must(http.StatusOK, http.MethodGet, "/readyz", "", nil)
	e.must(http.StatusMethodNotAllowed, http.MethodPost, "/readyz", "", nil)
	e.seedTable4()
	body := e.must(http.StatusOK, http.MethodGet, "/metrics", "", nil).Body.String()
	for _, name := range []string{
		"ledgerfence_webhook_requests_total", "ledgerfence_hosts_denied_total", "ledgerfence_webhook_request_duration_seconds",
		"ledgerfence_ledger_query_duration_seconds", "ledgerfence_cache_entries", "ledgerfence_cache_age_seconds",
		"ledgerfence_event_stream_lag_seconds", "ledgerfence_ledger_up", "ledgerfence_api_requests_total",
	} {
		if !strings.Contains(body, "\n"+name) {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	// Routes are labelled by pattern, never by the path's host or subject.
	if strings.Contains(body, `route="/v1/hosts/hm1"`) || !strings.Contains(body, `route="/v1/hosts/{host}"`) {
		t.Error("api_requests_total is not labelled by route pattern")
	}
	if got := testutil.ToFloat64(e.srv.m.httpCount.WithLabelValues("/v1/hosts/{host}", "PUT", "200")); got != 5 {
		t.Errorf("api_requests_total{PUT hosts 200} = %v, want 5", got)
	}
}

func TestReadyBeforeFill(t *testing.T) {
	s := &Server{cache: notReady{}}
	rec := httptestRecorder()
	s.readyz(rec, nil)
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("readyz before the cache is filled: %d, want 503", rec.Code)
	}
}

// staleCache is a filled cache whose event stream has been down too long.
type staleCache struct{ Resolver }

func (staleCache) Ready() bool { return true }
func (staleCache) Stale() bool { return true }

func TestNotReadyWhileStale(t *testing.T) {
	s := &Server{cache: staleCache{}}
	rec := httptestRecorder()
	s.readyz(rec, nil)
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "--max-staleness") {
		t.Errorf("readyz while stale: %d %s, want 503 naming --max-staleness", rec.Code, rec.Body)
	}
}
