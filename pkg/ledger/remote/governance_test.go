package remote_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/ledgerfence/ledgerfence/pkg/api"
	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/access"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/embedded"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/remote"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/tokens"
)

// governanceRoutes mounts the server's governance routes as pkg/api mounts
// them (writes need a writer token, whose identity the rules see, or the
// admin token, the operator's).
func governanceRoutes(mux *http.ServeMux, s *remote.Server, store *tokens.Store) {
	write := func(h http.HandlerFunc) http.HandlerFunc { return authenticated(store, h) }
	mux.HandleFunc("GET /v1/registry", s.Registry)
	mux.HandleFunc("GET /v1/proposals", s.ListProposals)
	mux.HandleFunc("POST /v1/proposals", write(s.Propose))
	mux.HandleFunc("GET /v1/proposals/{id}", s.GetProposal)
	mux.HandleFunc("POST /v1/proposals/{id}/approve", write(s.Approve))
	mux.HandleFunc("GET /v1/bindings/{project}", s.GetBinding)
	mux.HandleFunc("PUT /v1/bindings/{project}", write(s.BindProject))
	mux.HandleFunc("POST /v1/hosts/{host}/attest", write(s.AttestHost))
	mux.HandleFunc("GET /v1/history/registry", s.RegistryHistory)
	mux.HandleFunc("GET /v1/history/proposals/{id}", s.ProposalHistory)
	mux.HandleFunc("GET /v1/history/bindings/{project}", s.BindingHistory)
	mux.HandleFunc("GET /v1/history/hosts/{host}", s.HostHistory)
	mux.HandleFunc("GET /v1/hosts/{host}", s.GetHost)
	mux.HandleFunc("PUT /v1/hosts/{host}", write(s.PutHost))
	mux.HandleFunc("PUT /v1/regulations/{subject}", write(s.PutRegulation))
	mux.HandleFunc("POST /v1/lookup", s.Lookup)
	mux.HandleFunc("GET /v1/ledger", s.Info)
	mux.HandleFunc("GET /v1/events", s.Events)
}

// authenticated makes a write's context name its writer as pkg/api's
// write does: the admin token is the operator's, a writer token its
// identity's.
func authenticated(store *tokens.Store, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok {
			remote.WriteError(w, http.StatusUnauthorized, "writes need Authorization: Bearer <token>")
			return
		}
		ctx := r.Context()
		if tok == token {
			ctx = ledger.WithWriter(ctx, ledger.Writer{ID: api.DefaultWriter, Role: access.RoleOperator})
		} else {
			who, err := store.Authenticate(tok)
			if err != nil {
				remote.WriteError(w, http.StatusUnauthorized, "writes need Authorization: Bearer <token>")
				return
			}
			ctx = access.WithIdentity(ctx, who)
		}
		h(w, r.WithContext(ctx))
	}
}

// governanceServer is a server of the ledger's HTTP side alone, with the
// governance routes, over an embedded ledger; its writer tokens live in
// dir.
func governanceServer(t *testing.T, dir string) string {
	t.Helper()
	l, err := embedded.Open(filepath.Join(dir, embedded.FileName))
	if err != nil {
		t.Fatal(err)
	}
	store, err := tokens.Open(filepath.Join(dir, tokens.FileName))
	if err != nil {
		t.Fatal(err)
	}
	s := remote.NewServer(l, zaptest.NewLogger(t), remote.ServerOptions{
		Backend: "embedded", MaxBody: 1 << 20, MaxStreams: 4, Heartbeat: 50 * time.Millisecond, StreamWriteTimeout: 5 * time.Second,
	})
	mux := http.NewServeMux()
	governanceRoutes(mux, s, store)
	hs := httptest.NewServer(mux)
	t.Cleanup(func() {
		s.Close()
		hs.Close()
		l.Close()
	})
	return hs.URL
}

// apiServer is filterd's whole API (pkg/api) over an embedded ledger, with
// writer tokens in dir; the test is skipped while pkg/api does not mount
// the governance routes.
func apiServer(t *testing.T, dir string) string {
	t.Helper()
	store, err := tokens.Open(filepath.Join(dir, tokens.FileName))
	if err != nil {
		t.Fatal(err)
	}
	hs, _ := filterd(t, api.Config{Writers: store})
	resp, err := http.Get(hs.URL + "/v1/registry")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.Contains(string(body), "no such endpoint") {
		t.Fatal("pkg/api does not mount the governance routes")
	}
	return hs.URL
}

// roleClients issues a writer token per role in dir and returns a client
// per role, and one with the admin token ("operator").
func roleClients(t *testing.T, url, dir string) map[string]*remote.Client {
	t.Helper()
	out := map[string]*remote.Client{"operator": client(t, url, remote.WithToken(token))}
	for _, id := range []access.Identity{
		{ID: "hostagent-hm1", Role: access.RoleHostAgent, Host: "hm1"},
		{ID: "hostadmin", Role: access.RoleHostAdmin},
		{ID: "vmm", Role: access.RoleVMManager},
		{ID: "policy", Role: access.RolePolicyAdmin},
		{ID: "policy2", Role: access.RolePolicyAdmin},
		{ID: "attestor", Role: access.RoleAttestor},
		{ID: "recorder", Role: access.RoleRecorder},
	} {
		secret, _, err := tokens.Issue(filepath.Join(dir, tokens.FileName), id, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		out[id.ID] = client(t, url, remote.WithToken(secret))
	}
	return out
}

func TestGovernanceOverHTTP(t *testing.T) {
	for name, start := range map[string]func(*testing.T, string) string{
		"server routes": governanceServer,
		"filterd api":   apiServer,
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			url := start(t, dir)
			governanceFlows(t, url, roleClients(t, url, dir))
		})
	}
}

func governanceFlows(t *testing.T, url string, as map[string]*remote.Client) {
	ctx := context.Background()
	reader := as["vmm"]
	height := func() uint64 {
		t.Helper()
		h, err := reader.Height(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	// refused asserts a refusal of kind want with words, and that nothing
	// was written.
	refused := func(before uint64, err, want error, words ...string) {
		t.Helper()
		if !errors.Is(err, want) {
			t.Fatalf("err = %v, want %v", err, want)
		}
		for _, w := range words {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%q does not say %q", err, w)
			}
		}
		if h := height(); h != before {
			t.Fatalf("a refused write moved the height from %d to %d", before, h)
		}
	}
	registry := func(requireAttested bool, members map[string][]string) *ledger.Registry {
		r := &ledger.Registry{Members: map[string]ledger.Member{}, RequireAttested: requireAttested}
		for msp, orgs := range members {
			r.Members[msp] = ledger.Member{Organizations: orgs}
		}
		return r
	}

	if _, err := reader.Registry(ctx); !errors.Is(err, ledger.ErrNotFound) {
		t.Fatalf("Registry = %v, want ErrNotFound", err)
	}
	h := height()
	for _, who := range []string{"vmm", "hostagent-hm1", "hostadmin", "attestor", "recorder"} {
		_, err := as[who].Propose(ctx, ledger.Proposal{Kind: ledger.ProposeRegistry, Registry: registry(false, map[string][]string{"": {"*"}})})
		refused(h, err, ledger.ErrForbidden, "proposing a change needs the role policyadmin", "HTTP 403")
	}
	_, err := as["policy"].Propose(ctx, ledger.Proposal{Kind: ledger.ProposeRegistry, Registry: registry(false, map[string][]string{"": {}})})
	refused(h, err, ledger.ErrInvalid, "at least one organisation code", "HTTP 400")

	p, err := as["policy"].Propose(ctx, ledger.Proposal{Kind: ledger.ProposeRegistry, Registry: registry(true, map[string][]string{"": {"CompanyA"}})})
	if err != nil || p.State != ledger.ProposalApplied || p.Approvals[0].Writer != (ledger.Writer{ID: "policy", Role: access.RolePolicyAdmin}) {
		t.Fatalf("Propose = %+v, %v", p, err)
	}
	reg, err := reader.Registry(ctx)
	if err != nil || reg.Version != 1 || reg.Proposal != p.ID || !reg.RequireAttested {
		t.Fatalf("Registry = %+v, %v", reg, err)
	}
	if got, err := reader.GetProposal(ctx, p.ID); err != nil || got.State != ledger.ProposalApplied {
		t.Fatalf("GetProposal = %+v, %v", got, err)
	}

	// Hosts under the registry.
	h = height()
	_, _, err = as["hostagent-hm1"].PutHost(ctx, host("hm1", "JP", "CompanyB"))
	refused(h, err, ledger.ErrForbidden, "may not claim organisation CompanyB", "HTTP 403")
	if _, _, err := as["hostagent-hm1"].PutHost(ctx, host("hm1", "JP", "CompanyA")); err != nil {
		t.Fatal(err)
	}
	lk, err := reader.Lookup(ctx, nil, []string{"hm1"})
	if err != nil || !lk.RequireAttested || len(lk.Hosts) != 1 {
		t.Fatalf("Lookup = %+v, %v; want the registry's require_attested", lk, err)
	}

	// Attestations.
	h = height()
	for _, who := range []string{"hostagent-hm1", "hostadmin", "vmm", "policy", "recorder"} {
		_, _, err := as[who].AttestHost(ctx, "hm1", "JP", []string{"CompanyA"})
		refused(h, err, ledger.ErrForbidden, "attesting a host needs the role attestor", "HTTP 403")
	}
	_, _, err = as["attestor"].AttestHost(ctx, "hm1", "GB", []string{"CompanyA"})
	refused(h, err, ledger.ErrInvalid, "attest the facts as they are now")
	_, _, err = as["attestor"].AttestHost(ctx, "hm9", "GB", []string{"CompanyA"})
	refused(h, err, ledger.ErrNotFound)
	rec, changed, err := as["attestor"].AttestHost(ctx, "hm1", "jp", []string{"CompanyA"})
	if err != nil || !changed || !rec.Attested() || rec.Attestation.Writer.ID != "attestor" {
		t.Fatalf("AttestHost = %+v, %v, %v", rec, changed, err)
	}
	if _, changed, err := as["attestor"].AttestHost(ctx, "hm1", "JP", []string{"CompanyA"}); err != nil || changed {
		t.Fatalf("attesting again: %v, %v", changed, err)
	}
	if got, err := reader.GetHost(ctx, "hm1"); err != nil || !got.Attested() {
		t.Fatalf("GetHost = %+v, %v", got, err)
	}
	if hist, err := reader.History(ctx, ledger.KindHost, "hm1"); err != nil || len(hist) != 2 || hist[1].Op != ledger.OpAttest {
		t.Fatalf("host history = %+v, %v", hist, err)
	}

	// Bindings.
	h = height()
	for _, who := range []string{"vmm", "hostadmin", "attestor", "recorder"} {
		_, _, err := as[who].BindProject(ctx, "p1")
		refused(h, err, ledger.ErrForbidden, "binding a project needs the role policyadmin", "HTTP 403")
	}
	if _, err := reader.GetBinding(ctx, "p1"); !errors.Is(err, ledger.ErrNotFound) {
		t.Fatalf("GetBinding = %v, want ErrNotFound", err)
	}
	b, changed, err := as["policy"].BindProject(ctx, "p1")
	if err != nil || !changed || b.Project != "p1" || b.Writer.ID != "policy" {
		t.Fatalf("BindProject = %+v, %v, %v", b, changed, err)
	}
	if _, changed, err := as["policy2"].BindProject(ctx, "p1"); err != nil || changed {
		t.Fatalf("binding again: %v, %v", changed, err)
	}
	if got, err := reader.GetBinding(ctx, "p1"); err != nil || got.TxID != b.TxID {
		t.Fatalf("GetBinding = %+v, %v", got, err)
	}

	// A move needs another organisation's approval: it stays open.
	mv, err := as["policy"].Propose(ctx, ledger.Proposal{Kind: ledger.ProposeBinding, Binding: &ledger.Binding{Project: "p1", MSP: "OtherMSP"}})
	if err != nil || mv.State != ledger.ProposalOpen || !slices.Equal(mv.Missing(), []string{"OtherMSP"}) {
		t.Fatalf("move: %+v, %v", mv, err)
	}
	if list, err := reader.ListProposals(ctx); err != nil || len(list) != 1 || list[0].ID != mv.ID {
		t.Fatalf("ListProposals = %+v, %v", list, err)
	}
	h = height()
	for _, who := range []string{"vmm", "hostagent-hm1", "attestor", "recorder"} {
		_, err := as[who].Approve(ctx, mv.ID)
		refused(h, err, ledger.ErrForbidden, "approving a proposal needs the role policyadmin", "HTTP 403")
	}
	_, err = as["policy2"].Approve(ctx, mv.ID)
	refused(h, err, ledger.ErrInvalid, "already approved by the ledger's organisation", "HTTP 400")
	_, err = as["policy2"].Approve(ctx, strings.Repeat("ab", 32))
	refused(h, err, ledger.ErrNotFound, "HTTP 404")

	// Regulations of the bound project, and a VM's naming it.
	if _, _, err := as["vmm"].PutRegulation(ctx, filter.ProjectSubject("p1"), filter.Terms{Allow: []filter.Rule{{Country: "JP", Organization: "*"}}, RequireAttested: true}); err != nil {
		t.Fatal(err)
	}
	vr, _, err := as["vmm"].PutRegulation(ctx, vm1, filter.Terms{Allow: []filter.Rule{{Country: "JP", Organization: "*"}}, Project: "p1"})
	if err != nil || vr.Project != "p1" {
		t.Fatalf("VM regulation: %+v, %v", vr, err)
	}

	// The operator's proposal takes effect at once.
	op, err := as["operator"].Propose(ctx, ledger.Proposal{Kind: ledger.ProposeBinding, Binding: &ledger.Binding{Project: "p1", MSP: "OtherMSP"}})
	if err != nil || op.State != ledger.ProposalApplied {
		t.Fatalf("operator's move: %+v, %v", op, err)
	}
	h = height()
	// The project's regulation is now the new organisation's to change.
	_, _, err = as["vmm"].PutRegulation(ctx, filter.ProjectSubject("p1"), filter.Terms{Allow: []filter.Rule{{Country: "GB", Organization: "*"}}})
	refused(h, err, ledger.ErrForbidden, "project p1 is bound to OtherMSP", "HTTP 403")
	vm2 := filter.VMSubject("7f1c0d3e-8b2a-4c1d-9e7f-0a1b2c3d4e5f")
	_, _, err = as["vmm"].PutRegulation(ctx, vm2, filter.Terms{Allow: []filter.Rule{{Country: "JP", Organization: "*"}}, Project: "p1"})
	refused(h, err, ledger.ErrForbidden, "project p1 is bound to OtherMSP", "HTTP 403")
	if got, err := reader.GetProposal(ctx, mv.ID); err != nil || got.State != ledger.ProposalStale {
		t.Fatalf("the overtaken move: %+v, %v", got, err)
	}
	if list, err := reader.ListProposals(ctx); err != nil || len(list) != 0 {
		t.Fatalf("ListProposals = %+v, %v", list, err)
	}

	// Histories.
	if hist, err := reader.History(ctx, ledger.KindRegistry, ledger.RegistryKey); err != nil || len(hist) != 1 || hist[0].Registry.Version != 1 {
		t.Fatalf("registry history = %+v, %v", hist, err)
	}
	if hist, err := reader.History(ctx, ledger.KindBinding, "p1"); err != nil || len(hist) != 2 || hist[1].Binding.Proposal != op.ID {
		t.Fatalf("binding history = %+v, %v", hist, err)
	}
	if hist, err := reader.History(ctx, ledger.KindProposal, mv.ID); err != nil || len(hist) != 1 || hist[0].Proposal.ID != mv.ID {
		t.Fatalf("proposal history = %+v, %v", hist, err)
	}

	// The event stream carries governance's records.
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	events, err := reader.Watch(wctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for end := height(); ; {
		ev, ok := <-events
		if !ok {
			t.Fatalf("the stream ended before block %d; seen %v", end, seen)
		}
		switch {
		case ev.Kind == ledger.KindRegistry && ev.Registry != nil:
			seen["registry"] = true
		case ev.Kind == ledger.KindProposal && ev.Proposal != nil && ev.Proposal.ID == ev.Key:
			seen["proposal"] = true
		case ev.Kind == ledger.KindBinding && ev.Binding != nil && ev.Binding.Project == ev.Key:
			seen["binding"] = true
		case ev.Kind == ledger.KindHost && ev.Op == ledger.OpAttest && ev.Host != nil && ev.Host.Attested():
			seen["attest"] = true
		}
		if ev.Block == end {
			break
		}
	}
	if len(seen) != 4 {
		t.Fatalf("events seen: %v", seen)
	}
	cancel()

	// Bad input: 400 (413 past the bound) with the error shape, nothing
	// written.
	h = height()
	for _, tc := range []struct {
		method, path, body string
		status             int
		words              string
	}{
		{"POST", "/v1/proposals", `{"kind":"registry","registry":{"members":{"":{"organizations":["A"]}}},"extra":1}`, 400, "unknown field"},
		{"POST", "/v1/proposals", `{"kind":"registry"} {}`, 400, "trailing data"},
		{"POST", "/v1/proposals", `{"kind":"registry","registry":{"members":{"bad msp!":{"organizations":["A"]}}}}`, 400, "is not an MSP id"},
		{"POST", "/v1/proposals", `{"kind":"registry","registry":{"members":{"":{"organizations":["` + strings.Repeat("A", 9<<20) + `"]}}}}`, 413, "larger than"},
		{"POST", "/v1/hosts/hm1/attest", `{"country":"Japan","organizations":["CompanyA"]}`, 400, "country"},
		{"POST", "/v1/hosts/hm1/attest", `{"country":"JP","organisations":["CompanyA"]}`, 400, "unknown field"},
		{"POST", "/v1/proposals/" + strings.Repeat("a", 200) + "/approve", ``, 400, "proposal id"},
		{"PUT", "/v1/bindings/" + strings.Repeat("p", 200), ``, 400, "project_id"},
		{"PUT", "/v1/bindings/p2", ``, 401, ""},
	} {
		req, _ := http.NewRequest(tc.method, url+tc.path, bytes.NewReader([]byte(tc.body)))
		if tc.status != 401 {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var eb struct {
			Error string `json:"error"`
		}
		err = json.NewDecoder(resp.Body).Decode(&eb)
		resp.Body.Close()
		if resp.StatusCode != tc.status || err != nil || eb.Error == "" || !strings.Contains(eb.Error, tc.words) {
			t.Errorf("%s %s: %d %q (%v), want %d saying %q", tc.method, tc.path[:min(len(tc.path), 40)], resp.StatusCode, eb.Error, err, tc.status, tc.words)
		}
	}
	if got := height(); got != h {
		t.Fatalf("bad input moved the height from %d to %d", h, got)
	}
}
