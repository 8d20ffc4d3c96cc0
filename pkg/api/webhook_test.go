package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"

	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/nova"
)

func TestWebhookTable4(t *testing.T) {
	e := newEnv(t, Config{})
	e.seedTable4()
	rec := e.must(http.StatusOK, http.MethodPost, nova.Path, "", encode(t, novaRequest(t)))
	if got, want := answer(t, rec), []string{"hm1", "hm2", "hm5"}; !slices.Equal(got, want) {
		t.Errorf("hosts = %v, want %v", got, want)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}

	d := decisionOf(t, e, rec)
	want := map[string]filter.Reason{
		"hm1": "", "hm2": "", "hm3": filter.CountryNotAllowed, "hm4": filter.OrganizationNotAllowed, "hm5": "",
	}
	if len(d.Verdicts) != len(want) {
		t.Fatalf("verdicts = %+v, want 5", d.Verdicts)
	}
	for _, v := range d.Verdicts {
		if r, ok := want[v.Host]; !ok || v.Reason != r || v.Allowed != (r == "") {
			t.Errorf("verdict %+v, want reason %q", v, r)
		}
		if !v.Allowed && (v.Detail == "" || v.Regulation != filter.VMSubject(vm1UUID)) {
			t.Errorf("denied verdict %+v lacks its detail or regulation", v)
		}
	}
	if d.InstanceUUID != vm1UUID || d.ProjectID != project1 || d.Operation != nova.OpLiveMigrate ||
		d.RequestID != "req-0c4b5a69-1d2e-4f3a-9b8c-7d6e5f4a3b2c" || d.Outcome != OutcomeAllowedSome {
		t.Errorf("decision input = %+v", d)
	}
	if d.LedgerHeight != e.height() || d.LedgerHeight == 0 {
		t.Errorf("ledger height = %d, want %d", d.LedgerHeight, e.height())
	}
	if d.Summary != "3/5 hosts eligible: 1 country_not_allowed, 1 organization_not_allowed" {
		t.Errorf("summary = %q", d.Summary)
	}

	if got := testutil.ToFloat64(e.srv.m.requests[nova.OpLiveMigrate][OutcomeAllowedSome]); got != 1 {
		t.Errorf("webhook_requests_total{live_migrate,allowed_some} = %v, want 1", got)
	}
	for reason, n := range map[filter.Reason]float64{filter.CountryNotAllowed: 1, filter.OrganizationNotAllowed: 1, filter.HostUnregistered: 0} {
		if got := testutil.ToFloat64(e.srv.m.denied[reason]); got != n {
			t.Errorf("hosts_denied_total{%s} = %v, want %v", reason, got, n)
		}
	}
	if n := testutil.CollectAndCount(e.reg, "ledgerfence_webhook_request_duration_seconds"); n != 1 {
		t.Errorf("duration histogram series = %d, want 1", n)
	}
}

func TestWebhookProjectRegulationIntersects(t *testing.T) {
	e := newEnv(t, Config{})
	e.seedTable4()
	// The project allows Japan only: VM1's grant of GB is narrowed away.
	e.putRegulation("project:"+project1, `{"allow": ["JP.All"]}`)
	rec := e.must(http.StatusOK, http.MethodPost, nova.Path, "", encode(t, novaRequest(t)))
	if got, want := answer(t, rec), []string{"hm1", "hm2"}; !slices.Equal(got, want) {
		t.Errorf("hosts = %v, want %v", got, want)
	}
	d := decisionOf(t, e, rec)
	for _, v := range d.Verdicts {
		switch v.Host {
		case "hm5":
			if v.Reason != filter.CountryNotAllowed || v.Regulation != filter.ProjectSubject(project1) {
				t.Errorf("%s: %+v, want country_not_allowed by the project", v.Host, v)
			}
		}
	}
	if len(d.Regulations) != 2 {
		t.Errorf("regulations applied = %v, want the VM's and the project's", d.Regulations)
	}
}

func TestWebhookAnswers(t *testing.T) {
	many := make([]string, 10_000)
	for i := range many {
		many[i] = fmt.Sprintf("compute-%05d", i)
	}
	many[17], many[4242], many[9999] = "hm5", "hm1", "hm4"
	otherVM := "0d7e7a47-3c5b-4e8b-9a61-5f0b8d6c2e11"

	cases := []struct {
		name    string
		edit    func(m map[string]any)
		want    []string
		outcome string
		op      string
	}{
		{
			name:    "10,000 hosts",
			edit:    func(m map[string]any) { withHosts(m, many...) },
			want:    []string{"hm5", "hm1"},
			outcome: OutcomeAllowedSome,
			op:      nova.OpLiveMigrate,
		},
		{
			name: "10,000 hosts, unregulated VM",
			edit: func(m map[string]any) {
				withHosts(m, many...)
				specData(m)["instance_uuid"] = otherVM
				specData(m)["project_id"] = "p2"
			},
			want:    many,
			outcome: OutcomeAllowedAll,
			op:      nova.OpLiveMigrate,
		},
		{
			name:    "duplicate hosts answered once, in first order",
			edit:    func(m map[string]any) { withHosts(m, "hm5", "hm3", "hm1", "hm5", "hm1", "hm5") },
			want:    []string{"hm5", "hm1"},
			outcome: OutcomeAllowedSome,
			op:      nova.OpLiveMigrate,
		},
		{
			name:    "empty host list",
			edit:    func(m map[string]any) { withHosts(m) },
			want:    []string{},
			outcome: OutcomeNoHosts,
			op:      nova.OpLiveMigrate,
		},
		{
			name:    "null host list",
			edit:    func(m map[string]any) { m["hosts"] = nil },
			want:    []string{},
			outcome: OutcomeNoHosts,
			op:      nova.OpLiveMigrate,
		},
		{
			name:    "unregistered hosts",
			edit:    func(m map[string]any) { withHosts(m, "ghost1", "hm2", "ghost2") },
			want:    []string{"hm2"},
			outcome: OutcomeAllowedSome,
			op:      nova.OpLiveMigrate,
		},
		{
			name:    "every host denied",
			edit:    func(m map[string]any) { withHosts(m, "hm3", "hm4") },
			want:    []string{},
			outcome: OutcomeDeniedAll,
			op:      nova.OpLiveMigrate,
		},
		{
			name: "boot: no _nova_check_type, no weights, upper-case UUID",
			edit: func(m map[string]any) {
				delete(specData(m)["scheduler_hints"].(map[string]any), "_nova_check_type")
				delete(m, "weights")
				specData(m)["instance_uuid"] = strings.ToUpper(vm1UUID)
			},
			want:    []string{"hm1", "hm2", "hm5"},
			outcome: OutcomeAllowedSome,
			op:      nova.OpCreate,
		},
		{
			name: "operation as a string",
			edit: func(m map[string]any) {
				specData(m)["scheduler_hints"].(map[string]any)["_nova_check_type"] = "rebuild"
			},
			want:    []string{"hm1", "hm2", "hm5"},
			outcome: OutcomeAllowedSome,
			op:      nova.OpRebuild,
		},
		{
			name:    "weights of another type: not read",
			edit:    func(m map[string]any) { m["weights"] = []any{"hm1"} },
			want:    []string{"hm1", "hm2", "hm5"},
			outcome: OutcomeAllowedSome,
			op:      nova.OpLiveMigrate,
		},
		{
			name: "unknown fields and null scheduler hints",
			edit: func(m map[string]any) {
				m["future_field"] = map[string]any{"x": 1}
				specData(m)["scheduler_hints"] = nil
			},
			want:    []string{"hm1", "hm2", "hm5"},
			outcome: OutcomeAllowedSome,
			op:      nova.OpCreate,
		},
	}
	e := newEnv(t, Config{})
	e.seedTable4()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := novaRequest(t)
			tc.edit(m)
			before := testutil.ToFloat64(e.srv.m.requests[tc.op][tc.outcome])
			rec := e.must(http.StatusOK, http.MethodPost, nova.Path, "", encode(t, m))
			if got := answer(t, rec); !slices.Equal(got, tc.want) {
				t.Errorf("hosts = %d %v, want %d", len(got), head(got), len(tc.want))
			}
			if len(tc.want) == 0 && rec.Body.String() != `{"hosts":[]}`+"\n" {
				t.Errorf("body = %q, want exactly {\"hosts\":[]}", rec.Body)
			}
			if got := testutil.ToFloat64(e.srv.m.requests[tc.op][tc.outcome]) - before; got != 1 {
				t.Errorf("webhook_requests_total{%s,%s} grew by %v, want 1", tc.op, tc.outcome, got)
			}
		})
	}
}

func head(s []string) []string {
	if len(s) > 8 {
		return s[:8]
	}
	return s
}

func TestWebhookBadInput(t *testing.T) {
	const limit = 64 << 10
	big := withHosts(novaRequest(t))
	var names []string
	for i := range 2000 {
		names = append(names, fmt.Sprintf("compute-node-%05d.example.org", i))
	}
	withHosts(big, names...)

	cases := []struct {
		name    string
		method  string
		body    []byte
		status  int
		outcome string
		msg     string
		op      string // the operation label; opUnknown when not decoded
	}{
		{name: "malformed JSON", body: []byte(`{"spec": {"nova_object.data": {"instance_uuid": "x"`), status: 200, outcome: OutcomeRequestInvalid, msg: "malformed"},
		{name: "not JSON", body: []byte("instance_uuid=6f1c0d3e"), status: 200, outcome: OutcomeRequestInvalid, msg: "malformed"},
		{name: "empty body", body: []byte{}, status: 200, outcome: OutcomeRequestInvalid, msg: "malformed"},
		{name: "hosts of the wrong type", body: edited(t, func(m map[string]any) { m["hosts"] = "hm1,hm2" }), status: 200, outcome: OutcomeRequestInvalid, msg: "hosts"},
		{name: "host name of the wrong type", body: edited(t, func(m map[string]any) { m["hosts"] = []any{map[string]any{"host": 42}} }), status: 200, outcome: OutcomeRequestInvalid, msg: "host"},
		{name: "instance_uuid of the wrong type", body: edited(t, func(m map[string]any) { specData(m)["instance_uuid"] = 7 }), status: 200, outcome: OutcomeRequestInvalid, msg: "instance_uuid"},
		{name: "spec of the wrong type", body: edited(t, func(m map[string]any) { m["spec"] = []any{1} }), status: 200, outcome: OutcomeRequestInvalid, msg: "spec"},
		{name: "missing instance_uuid", body: edited(t, func(m map[string]any) { delete(specData(m), "instance_uuid") }), status: 200, outcome: OutcomeRequestInvalid, msg: "instance_uuid"},
		{name: "instance_uuid not a UUID", body: edited(t, func(m map[string]any) { specData(m)["instance_uuid"] = "vm1" }), status: 200, outcome: OutcomeRequestInvalid, msg: "instance_uuid", op: nova.OpLiveMigrate},
		{name: "invalid project_id", body: edited(t, func(m map[string]any) { specData(m)["project_id"] = "p 1/../x" }), status: 200, outcome: OutcomeRequestInvalid, msg: "project_id", op: nova.OpLiveMigrate},
		{name: "host without a name", body: edited(t, func(m map[string]any) { m["hosts"] = []any{map[string]any{"hypervisor_hostname": "x"}} }), status: 200, outcome: OutcomeRequestInvalid, msg: "host name"},
		{name: "wrong method", method: http.MethodGet, status: 405, outcome: OutcomeMethodNotAllowed, msg: "POST"},
		{name: "wrong method PUT", method: http.MethodPut, body: encode(t, novaRequest(t)), status: 405, outcome: OutcomeMethodNotAllowed, msg: "POST"},
		{name: "body over the limit", body: encode(t, big), status: 200, outcome: OutcomeRequestInvalid, msg: "larger than --max-body"},
	}
	e := newEnv(t, Config{MaxBodyBytes: limit})
	e.seedTable4()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			method := tc.method
			if method == "" {
				method = http.MethodPost
			}
			op := tc.op
			if op == "" {
				op = opUnknown
			}
			before := testutil.ToFloat64(e.srv.m.requests[op][tc.outcome])
			rec := e.do(method, nova.Path, "", tc.body)
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d; body %s", rec.Code, tc.status, rec.Body)
			}
			if tc.status == http.StatusOK {
				// Nova's answer, and the decision says why.
				if rec.Body.String() != emptyAnswer {
					t.Errorf("body %q, want %q", rec.Body, emptyAnswer)
				}
				d := decisionOf(t, e, rec)
				if d.Outcome != tc.outcome || !strings.Contains(d.Error, tc.msg) || d.Allowed != 0 {
					t.Errorf("decision %+v: want outcome %s and an error with %q", d, tc.outcome, tc.msg)
				}
			} else {
				var eb errorBody
				if err := json.Unmarshal(rec.Body.Bytes(), &eb); err != nil || !strings.Contains(eb.Error, tc.msg) {
					t.Errorf("body %s: want {\"error\": ...%s...}", rec.Body, tc.msg)
				}
			}
			if rec.Header().Get(HeaderDecision) == "" {
				t.Error("no decision id header")
			}
			if tc.status == 405 && rec.Header().Get("Allow") != http.MethodPost {
				t.Errorf("Allow = %q, want POST", rec.Header().Get("Allow"))
			}
			if got := testutil.ToFloat64(e.srv.m.requests[op][tc.outcome]) - before; got != 1 {
				t.Errorf("outcome %s counted %v times, want 1", tc.outcome, got)
			}
		})
	}
	if big := len(encode(t, big)); big <= limit {
		t.Fatalf("the oversized body is only %d bytes", big)
	}
}

func edited(t testing.TB, edit func(m map[string]any)) []byte {
	m := novaRequest(t)
	edit(m)
	return encode(t, m)
}

func TestWebhookDefaultLimitFits10000Hosts(t *testing.T) {
	m := novaRequest(t)
	names := make([]string, 10_000)
	for i := range names {
		names[i] = fmt.Sprintf("compute-node-%05d.region-one.cloud.example.org", i)
	}
	withHosts(m, names...)
	if n := len(encode(t, m)); n*2 > DefaultMaxBodyBytes {
		t.Errorf("a 10,000-host request is %d bytes; the default limit %d leaves less than 2x", n, DefaultMaxBodyBytes)
	}
}

func TestWebhookFailsClosed(t *testing.T) {
	e := newEnv(t, Config{})
	e.seedTable4()
	e.ledger.down.Store(true)
	rec := e.must(http.StatusOK, http.MethodPost, nova.Path, "", encode(t, novaRequest(t)))
	if rec.Body.String() != `{"hosts":[]}`+"\n" {
		t.Errorf("body = %q, want {\"hosts\":[]}", rec.Body)
	}
	d := decisionOf(t, e, rec)
	if d.Outcome != OutcomeFailClosed || d.Error == "" || strings.Contains(d.Error, "10.0.0.5") {
		t.Errorf("decision = %+v: want fail_closed with a safe error", d)
	}
	for _, v := range d.Verdicts {
		if v.Allowed || v.Reason != filter.LedgerUnavailable {
			t.Errorf("verdict %+v, want ledger_unavailable", v)
		}
	}
	if got := testutil.ToFloat64(e.srv.m.requests[nova.OpLiveMigrate][OutcomeFailClosed]); got != 1 {
		t.Errorf("fail_closed count = %v, want 1", got)
	}
	if got := testutil.ToFloat64(e.srv.m.denied[filter.LedgerUnavailable]); got != 5 {
		t.Errorf("hosts_denied_total{ledger_unavailable} = %v, want 5", got)
	}
	if err := testutil.GatherAndCompare(e.reg, strings.NewReader(`
# HELP ledgerfence_ledger_up 1 if the last ledger call answered, 0 if it failed.
# TYPE ledgerfence_ledger_up gauge
ledgerfence_ledger_up 0
`), "ledgerfence_ledger_up"); err != nil {
		t.Error(err)
	}

	// Once the ledger answers, the VM is decided again, and its verdicts are
	// cached: they keep serving when the ledger goes away again.
	e.ledger.down.Store(false)
	rec = e.must(http.StatusOK, http.MethodPost, nova.Path, "", encode(t, novaRequest(t)))
	if got, want := answer(t, rec), []string{"hm1", "hm2", "hm5"}; !slices.Equal(got, want) {
		t.Fatalf("hosts = %v, want %v", got, want)
	}
	e.ledger.down.Store(true)
	rec = e.must(http.StatusOK, http.MethodPost, nova.Path, "", encode(t, novaRequest(t)))
	if got, want := answer(t, rec), []string{"hm1", "hm2", "hm5"}; !slices.Equal(got, want) {
		t.Errorf("cached VM while the ledger is down: hosts = %v, want %v", got, want)
	}
	// A VM the cache has never seen fails closed.
	rec = e.must(http.StatusOK, http.MethodPost, nova.Path, "", edited(t, func(m map[string]any) {
		specData(m)["instance_uuid"] = "0d7e7a47-3c5b-4e8b-9a61-5f0b8d6c2e11"
	}))
	if got := answer(t, rec); len(got) != 0 {
		t.Errorf("unknown VM while the ledger is down: hosts = %v, want none", got)
	}
}

// A ledger that does not answer must not keep Nova waiting past the
// decision timeout: SAP's Nova would then take every host.
func TestWebhookDecisionTimeout(t *testing.T) {
	e := newEnv(t, Config{DecisionTimeout: 20 * time.Millisecond})
	e.seedTable4()
	e.ledger.hang.Store(true)
	rec := e.must(http.StatusOK, http.MethodPost, nova.Path, "", edited(t, func(m map[string]any) {
		specData(m)["instance_uuid"] = "0d7e7a47-3c5b-4e8b-9a61-5f0b8d6c2e11"
	}))
	if got := answer(t, rec); len(got) != 0 {
		t.Errorf("hosts = %v, want none", got)
	}
	if d := decisionOf(t, e, rec); d.Outcome != OutcomeFailClosed {
		t.Errorf("outcome = %s, want fail_closed", d.Outcome)
	}
}

func TestWebhookUnregulated(t *testing.T) {
	for _, tc := range []struct {
		name   string
		deny   bool
		want   []string
		reason filter.Reason
	}{
		{name: "pass by default", want: []string{"hm3", "ghost", "hm4"}},
		{name: "denied with DenyUnregulated", deny: true, want: []string{}, reason: filter.VMUnregulated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, Config{DenyUnregulated: tc.deny})
			e.seedTable4()
			rec := e.must(http.StatusOK, http.MethodPost, nova.Path, "", edited(t, func(m map[string]any) {
				specData(m)["instance_uuid"] = "0d7e7a47-3c5b-4e8b-9a61-5f0b8d6c2e11"
				withHosts(m, "hm3", "ghost", "hm4")
			}))
			if got := answer(t, rec); !slices.Equal(got, tc.want) {
				t.Errorf("hosts = %v, want %v", got, tc.want)
			}
			d := decisionOf(t, e, rec)
			if d.Regulated {
				t.Error("decision says regulated")
			}
			for _, v := range d.Verdicts {
				if v.Reason != tc.reason {
					t.Errorf("verdict %+v, want reason %q", v, tc.reason)
				}
			}
		})
	}
}

func TestWebhookToken(t *testing.T) {
	e := newEnv(t, Config{WebhookToken: "nova-secret"})
	e.seedTable4()
	body := encode(t, novaRequest(t))
	for _, tc := range []struct {
		name  string
		token string
		hosts []string
	}{
		// SAP's Nova takes every host on a 401: a request without the
		// token is answered, with no host.
		{"no token", "", []string{}},
		{"wrong token", "guess", []string{}},
		{"admin token is not the webhook's", adminToken, []string{}},
		{"webhook token", "nova-secret", []string{"hm1", "hm2", "hm5"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := testutil.ToFloat64(e.srv.m.requests[opUnknown][OutcomeUnauthorized])
			rec := e.must(http.StatusOK, http.MethodPost, nova.Path, tc.token, body)
			if got := answer(t, rec); !slices.Equal(got, tc.hosts) {
				t.Fatalf("hosts %v, want %v", got, tc.hosts)
			}
			want := 1.0 // each refused request
			if len(tc.hosts) > 0 {
				want = 0
			}
			if got := testutil.ToFloat64(e.srv.m.requests[opUnknown][OutcomeUnauthorized]) - before; got != want {
				t.Errorf("unauthorized counted %v times, want %v", got, want)
			}
		})
	}
}

func TestWebhookEventsReachCache(t *testing.T) {
	e := newEnv(t, Config{})
	e.seedTable4()
	body := encode(t, novaRequest(t))
	e.must(http.StatusOK, http.MethodPost, nova.Path, "", body)
	// A change written behind filterd's back arrives through the event
	// stream.
	if _, _, err := e.ledger.PutHost(t.Context(), filter.Host{Name: "hm3", Country: "JP", Organizations: []string{"CompanyB"}}); err != nil {
		t.Fatal(err)
	}
	want := e.height()
	waitFor(t, "the event in the cache", func() bool { return e.cache.Height() >= want })
	rec := e.must(http.StatusOK, http.MethodPost, nova.Path, "", body)
	if got, want := answer(t, rec), []string{"hm1", "hm2", "hm3", "hm5"}; !slices.Equal(got, want) {
		t.Errorf("hosts = %v, want %v", got, want)
	}
}

func TestDecisionStoreBounded(t *testing.T) {
	e := newEnv(t, Config{Decisions: 3})
	e.seedTable4()
	body := encode(t, novaRequest(t))
	var ids []string
	for range 5 {
		ids = append(ids, e.must(http.StatusOK, http.MethodPost, nova.Path, "", body).Header().Get(HeaderDecision))
	}
	for i, id := range ids {
		status := http.StatusOK
		if i < 2 {
			status = http.StatusNotFound
		}
		e.must(status, http.MethodGet, "/v1/decisions/"+id, "", nil)
	}
	var list decisionList
	if err := json.Unmarshal(e.must(http.StatusOK, http.MethodGet, "/v1/decisions?limit=10", "", nil).Body.Bytes(), &list); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range list.Decisions {
		got = append(got, d.ID)
		if d.Verdicts != nil {
			t.Error("listing carries verdicts")
		}
	}
	if want := []string{ids[4], ids[3], ids[2]}; !slices.Equal(got, want) {
		t.Errorf("listed %v, want newest first %v", got, want)
	}

	// The byte bound: each decision below is about 1,300 bytes, so a
	// 3,000-byte store keeps two of them.
	s := newDecisionStore(10, 3000)
	evicted := 0
	s.evicted = func() { evicted++ }
	for i := range 4 {
		s.add(&decision{id: fmt.Sprint(i), n: 3, verdicts: make([]byte, 1000)})
	}
	if _, ok := s.get("1"); ok {
		t.Error("decision 1 kept beyond the byte bound")
	}
	if _, ok := s.get("3"); !ok || s.bytes > 3000 || s.n != 2 {
		t.Errorf("bytes kept = %d in %d decisions, want <= 3000 in 2 with the newest decision", s.bytes, s.n)
	}
	if evicted != 2 {
		t.Errorf("evictions for bytes counted %d, want 2", evicted)
	}
	// A decision larger than the whole bound is kept without its verdicts.
	s.add(&decision{id: "huge", n: 5000, verdicts: make([]byte, 10_000)})
	if d, ok := s.get("huge"); !ok || len(d.verdicts) != 0 || d.n != 5000 || s.bytes > 3000 {
		t.Errorf("a decision over the bound: kept %v with %d verdict bytes, store %d bytes", ok, len(d.verdicts), s.bytes)
	}
}

// A full store packs a new decision's verdicts into an evicted decision's
// memory, and the verdicts of the decisions it keeps never change.
func TestDecisionStoreReusesEvictedVerdicts(t *testing.T) {
	s := newDecisionStore(2, 1<<20)
	verdicts := func(i int) []filter.Verdict {
		return []filter.Verdict{
			{Host: fmt.Sprintf("host-%d", i), Allowed: i%2 == 0},
			{Host: strings.Repeat("h", i), Reason: filter.CountryNotAllowed, Country: "DE"},
		}
	}
	check := func(when string, from, to int) {
		t.Helper()
		for j := max(0, from); j <= to; j++ {
			d, ok := s.get(fmt.Sprint(j))
			if !ok {
				t.Fatalf("%s, decision %d is not kept", when, j)
			}
			if got := unpackVerdicts(d.verdicts, d.n, nil); !slices.Equal(got, verdicts(j)) {
				t.Errorf("%s, decision %d reads %+v, want %+v", when, j, got, verdicts(j))
			}
		}
	}
	reused := 0
	for i := range 10 {
		buf := s.buffer()
		if buf != nil {
			reused++
		}
		packed := packVerdicts(buf, verdicts(i), nil)
		check(fmt.Sprintf("decision %d packed", i), i-2, i-1)
		s.add(&decision{id: fmt.Sprint(i), n: 2, verdicts: packed})
		check(fmt.Sprintf("decision %d stored", i), i-1, i)
	}
	// The third decision is packed before the first is evicted.
	if reused != 7 {
		t.Errorf("%d decisions packed into an evicted one's memory, want 7 (all but the first three)", reused)
	}
}

func TestPackVerdicts(t *testing.T) {
	vm := filter.VMSubject(vm1UUID)
	prj := filter.ProjectSubject("p1")
	vs := []filter.Verdict{
		{Host: "hm1", Allowed: true},
		{Host: "hm3", Reason: filter.CountryNotAllowed, Subject: vm, Country: "DE"},
		{Host: "hm4", Reason: filter.OrganizationNotAllowed, Subject: prj, Country: "GB", Organization: "CompanyC"},
		{Host: "ghost", Reason: filter.HostUnregistered},
		{Host: strings.Repeat("h", 300), Reason: filter.CountryNotAllowed, Subject: "vm:elsewhere", Country: "FR"},
		{Host: "", Reason: filter.LedgerUnavailable},
		{Host: "x", Reason: filter.VMUnregulated},
		{Host: "é\u0000", Allowed: true},
	}
	got := unpackVerdicts(packVerdicts(nil, vs, []filter.Subject{vm, prj}), len(vs), []filter.Subject{vm, prj})
	if !slices.Equal(got, vs) {
		t.Errorf("round trip:\n got %+v\nwant %+v", got, vs)
	}
	if got := unpackVerdicts(packVerdicts(nil, vs, nil)[:20], len(vs), nil); len(got) > len(vs) {
		t.Errorf("truncated form decoded to %d verdicts", len(got))
	}
}

// FuzzWebhook: whatever the body, the webhook answers 200 with Nova's
// answer, which never names a host that was not in the request, and names
// none for a body nova.Decode refuses.
func FuzzWebhook(f *testing.F) {
	f.Add(edited(f, func(map[string]any) {}))
	f.Add(edited(f, func(m map[string]any) { withHosts(m, "hm1", "hm1", "x", "hm5") }))
	f.Add(edited(f, func(m map[string]any) { specData(m)["scheduler_hints"] = map[string]any{"_nova_check_type": nil} }))
	f.Add([]byte(`{"spec":{"nova_object.data":{"instance_uuid":"6f1c0d3e-8b2a-4c1d-9e7f-0a1b2c3d4e5f"}},"hosts":[{"host":"hm3"},{"host":"hm1"}]}`))
	f.Add([]byte(`{"hosts":[{"host":"\u0000"}],"spec":{"nova_object.data":{"instance_uuid":"6F1C0D3E-8B2A-4C1D-9E7F-0A1B2C3D4E5F","project_id":""}}}`))
	f.Add([]byte(`{"spec":{"nova_object.data":{"instance_uuid":"0d7e7a47-3c5b-4e8b-9a61-5f0b8d6c2e11"}},"hosts":[{"host":"a<b>&\u2028\u00e9\"\\\u0001"},{"host":"\ud800"}]}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`null`))
	e := newEnvLog(f, Config{}, zap.NewNop())
	e.seedTable4()
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := httptest.NewRecorder()
		e.srv.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, nova.Path, bytes.NewReader(body)))
		if rec.Code != http.StatusOK {
			t.Fatalf("status %d for %q", rec.Code, body)
		}
		req, err := nova.Decode(body)
		if err != nil {
			if rec.Body.String() != emptyAnswer {
				t.Fatalf("answer %q for a body nova.Decode refuses (%v): %q", rec.Body, err, body)
			}
			return
		}
		asked := map[string]bool{}
		for _, h := range req.Hosts {
			asked[h.Host] = true
		}
		var got struct {
			Hosts []string `json:"hosts"`
		}
		dec := json.NewDecoder(bytes.NewReader(rec.Body.Bytes()))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&got); err != nil || got.Hosts == nil {
			t.Fatalf("answer %q: %v", rec.Body, err)
		}
		if want, _ := json.Marshal(nova.Response{Hosts: got.Hosts}); rec.Body.String() != string(want)+"\n" {
			t.Fatalf("answer %q is not nova.Response's encoding %q", rec.Body, want)
		}
		seen := map[string]bool{}
		for _, h := range got.Hosts {
			if !asked[h] {
				t.Fatalf("answer names %q, which the request did not", h)
			}
			if seen[h] {
				t.Fatalf("answer names %q twice", h)
			}
			seen[h] = true
		}
	})
}

// Concurrent webhooks, decision reads and writes (run with -race).
func TestConcurrentRequests(t *testing.T) {
	e := newEnv(t, Config{Decisions: 1000})
	e.seedTable4()
	body := encode(t, novaRequest(t))
	errs := make(chan error, 8)
	for w := range 8 {
		go func() {
			for i := range 20 {
				rec := httptest.NewRecorder()
				e.srv.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, nova.Path, bytes.NewReader(body)))
				if rec.Code != http.StatusOK || rec.Body.String() != `{"hosts":["hm1","hm2","hm5"]}`+"\n" {
					errs <- fmt.Errorf("webhook: %d %s", rec.Code, rec.Body)
					return
				}
				get := httptest.NewRecorder()
				e.srv.ServeHTTP(get, httptest.NewRequest(http.MethodGet, "/v1/decisions/"+rec.Header().Get(HeaderDecision), nil))
				if get.Code != http.StatusOK {
					errs <- fmt.Errorf("decision just answered: %d", get.Code)
					return
				}
				e.srv.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/v1/decisions?limit=50", nil))
				if w == 0 && i%5 == 0 {
					put := httptest.NewRecorder()
					req := httptestRequest(http.MethodPut, "/v1/hosts/hm2", fmt.Sprintf(`{"country": "JP", "organizations": ["CompanyA"], "region": "r%d"}`, i))
					e.srv.ServeHTTP(put, req)
					if put.Code != http.StatusOK {
						errs <- fmt.Errorf("write: %d %s", put.Code, put.Body)
						return
					}
				}
			}
			errs <- nil
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// appendAnswer must write what encoding/json writes for nova.Response,
// whatever the names hold.
func TestAppendAnswerIsEncodingJSON(t *testing.T) {
	names := []string{"hm1", "compute-01.example.org", "a<b", "a&b", `a"b`, `a\b`, "ホスト", "a\u2028b", "a\x01b", "\xff", ""}
	for c := range 256 {
		names = append(names, "x"+string(rune(c)), "y"+string([]byte{byte(c)}))
	}
	var verdicts []filter.Verdict
	var allowed []string
	for i, n := range names {
		verdicts = append(verdicts, filter.Verdict{Host: n, Allowed: i%3 != 1})
		if i%3 != 1 {
			allowed = append(allowed, n)
		}
	}
	want, err := json.Marshal(nova.Response{Hosts: allowed})
	if err != nil {
		t.Fatal(err)
	}
	if got := appendAnswer([]byte("stale"), verdicts)[len("stale"):]; string(got) != string(want)+"\n" {
		t.Errorf("appendAnswer = %s\nencoding/json: %s", got, want)
	}
	if got := appendAnswer(nil, nil); string(got) != "{\"hosts\":[]}\n" {
		t.Errorf("no verdicts: %s", got)
	}
}

// blockedWriter is a client that does not read its answer: Write waits.
type blockedWriter struct {
	*httptest.ResponseRecorder
	writing chan struct{}
	unblock chan struct{}
}

func (b *blockedWriter) Write(p []byte) (int, error) {
	close(b.writing)
	<-b.unblock
	return b.ResponseRecorder.Write(p)
}

// A client slow to read its answer holds neither the budget of bodies, nor
// a place among the requests being decided, nor the large requests' turn.
func TestAnswerLeavesAfterTheAdmissionIsReleased(t *testing.T) {
	e := newEnv(t, Config{})
	e.seedTable4()
	names := make([]string, largeHosts+1) // decided in the large requests' turn
	for i := range names {
		names[i] = fmt.Sprintf("compute-%05d", i)
	}
	body := edited(t, func(m map[string]any) { withHosts(m, names...) })
	w := &blockedWriter{ResponseRecorder: httptest.NewRecorder(), writing: make(chan struct{}), unblock: make(chan struct{})}
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.srv.ServeHTTP(w, httptest.NewRequest(http.MethodPost, nova.Path, bytes.NewReader(body)))
	}()
	<-w.writing
	e.srv.adm.mu.Lock()
	buffered := e.srv.adm.buffered
	e.srv.adm.mu.Unlock()
	if n := e.srv.adm.inFlight.Load(); n != 0 || buffered != 0 || len(e.srv.adm.large) != 0 {
		t.Errorf("while the answer is written: %d in flight, %d bytes buffered, %d large turns held; want none", n, buffered, len(e.srv.adm.large))
	}
	close(w.unblock)
	<-done
	if got := answer(t, w.ResponseRecorder); len(got) != 0 {
		t.Errorf("hosts %v, want none (unregistered)", got)
	}
}

// A POST to any path but the REST API's is answered as the webhook answers
// what it cannot decide: a Nova configured with a wrong URL gets no host.
func TestWrongPathFailsClosed(t *testing.T) {
	e := newEnv(t, Config{})
	e.seedTable4()
	body := encode(t, novaRequest(t))
	for _, path := range []string{nova.Path + "/", "/scheduler/nova", "/scheduler/external", "/"} {
		rec := e.must(http.StatusOK, http.MethodPost, path, "", body)
		if rec.Body.String() != emptyAnswer {
			t.Errorf("POST %s: %q, want %q", path, rec.Body, emptyAnswer)
		}
		if d := decisionOf(t, e, rec); d.Outcome != OutcomeRequestInvalid || !strings.Contains(d.Error, "no such endpoint") {
			t.Errorf("POST %s: decision %+v", path, d)
		}
	}
	if rec := e.do(http.MethodPost, "/v1/nothing", "", body); rec.Code != http.StatusNotFound {
		t.Errorf("POST /v1/nothing: %d, want 404", rec.Code)
	}
}

// Client text stored in a decision and echoed is clipped.
func TestDecisionClipsClientText(t *testing.T) {
	e := newEnv(t, Config{})
	e.seedTable4()
	rec := e.must(http.StatusOK, http.MethodPost, nova.Path, "", edited(t, func(m map[string]any) {
		m["context"] = map[string]any{"global_request_id": strings.Repeat("\u0001", 100_000)}
		specData(m)["instance_uuid"] = strings.Repeat("x", 100_000)
	}))
	d := decisionOf(t, e, rec)
	if len(d.RequestID) > filter.ClipLen+3 || len(d.InstanceUUID) > filter.ClipLen+3 || len(d.Error) > 4*filter.ClipLen {
		t.Errorf("decision keeps %d bytes of request id, %d of instance, %d of error", len(d.RequestID), len(d.InstanceUUID), len(d.Error))
	}
}
