package api

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ledgerfence/ledgerfence/pkg/ledger"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/access"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/tokens"
)

// issue makes a writer token in the tokens file at path.
func issue(t *testing.T, path, id, role, host string) string {
	t.Helper()
	secret, _, err := tokens.Issue(path, access.Identity{ID: id, Role: role, Host: host}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return secret
}

func TestWriterTokens(t *testing.T) {
	path := filepath.Join(t.TempDir(), tokens.FileName)
	store, err := tokens.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	const readToken = "reader-token"
	e := newEnv(t, Config{Writers: store, ReadToken: readToken})
	agent := issue(t, path, "hostagent-hm1", access.RoleHostAgent, "hm1")
	alice := issue(t, path, "alice", access.RoleVMManager, "")
	hm1 := []byte(`{"country": "JP", "organizations": ["CompanyA"]}`)
	vm := "/v1/regulations/vm:" + vm1UUID

	// the host agent writes its own host, recorded under its token's name and role
	req := httptestRequest(http.MethodPut, "/v1/hosts/hm1", string(hm1))
	req.Header.Set("Authorization", "Bearer "+agent)
	req.Header.Set("X-Ledgerfence-Writer", "filterd-admin") // ignored
	rec := e.serve(req)
	if rec.Code != http.StatusOK {
		t.Fatalf("agent's own host: %d %s", rec.Code, rec.Body)
	}
	if w := decodeInto[ledger.HostRecord](t, rec.Body.Bytes()).Writer; w != (ledger.Writer{ID: "hostagent-hm1", Role: access.RoleHostAgent}) {
		t.Errorf("writer %+v", w)
	}
	// ... and nothing else
	for _, tc := range []struct {
		method, path, body string
		words              []string
	}{
		{http.MethodPut, "/v1/hosts/hm2", string(hm1), []string{"own host", "hm1", "hm2"}},
		{http.MethodPut, vm, `{"allow": ["JP.CompanyA"]}`, []string{"creating a regulation", "role is hostagent"}},
	} {
		rec := e.must(http.StatusForbidden, tc.method, tc.path, agent, []byte(tc.body))
		msg := errorText(t, rec.Body.Bytes())
		for _, w := range tc.words {
			if !strings.Contains(msg, w) {
				t.Errorf("%s %s: %q does not say %q", tc.method, tc.path, msg, w)
			}
		}
	}
	e.must(http.StatusOK, http.MethodPut, vm, alice, []byte(`{"allow": ["JP.CompanyA"]}`))
	e.must(http.StatusForbidden, http.MethodDelete, vm, agent, nil)
	hist := decodeInto[historyBody](t, e.must(http.StatusOK, http.MethodGet, "/v1/history/regulations/vm:"+vm1UUID, readToken, nil).Body.Bytes())
	if len(hist.History) != 1 || hist.History[0].Writer != (ledger.Writer{ID: "alice", Role: access.RoleVMManager}) {
		t.Errorf("history %+v", hist.History)
	}

	// a writer token reads where a read token is required; a guess does not
	e.must(http.StatusOK, http.MethodGet, "/v1/hosts/hm1", agent, nil)
	e.must(http.StatusUnauthorized, http.MethodGet, "/v1/hosts/hm1", "guess", nil)

	// revoked: refused at once, for writes and reads
	if _, err := tokens.Revoke(path, "hostagent-hm1", time.Now()); err != nil {
		t.Fatal(err)
	}
	rec = e.must(http.StatusUnauthorized, http.MethodPut, "/v1/hosts/hm1", agent, hm1)
	if msg := errorText(t, rec.Body.Bytes()); !strings.Contains(msg, "revoked") {
		t.Errorf("revoked token: %q", msg)
	}
	e.must(http.StatusUnauthorized, http.MethodGet, "/v1/hosts/hm1", agent, nil)
	e.must(http.StatusUnauthorized, http.MethodPut, "/v1/hosts/hm1", "lfw_never-issued", hm1)

	// a tokens file that cannot be used: no writer token counts, the admin's still does
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}
	e.must(http.StatusServiceUnavailable, http.MethodPut, vm, alice, []byte(`{"allow": ["GB.CompanyA"]}`))
	e.must(http.StatusOK, http.MethodPut, vm, adminToken, []byte(`{"allow": ["GB.CompanyA"]}`))
}

func TestWriterTokensWithoutAdminToken(t *testing.T) {
	path := filepath.Join(t.TempDir(), tokens.FileName)
	store, err := tokens.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, Config{Writers: store})
	e.srv.cfg.AdminToken = ""
	hadmin := issue(t, path, "hadmin", access.RoleHostAdmin, "")
	e.must(http.StatusOK, http.MethodPut, "/v1/hosts/hm7", hadmin, []byte(`{"country": "JP", "organizations": ["CompanyA"]}`))
	e.must(http.StatusUnauthorized, http.MethodPut, "/v1/hosts/hm7", adminToken, []byte(`{"country": "GB", "organizations": ["CompanyA"]}`))
	e.must(http.StatusUnauthorized, http.MethodPut, "/v1/hosts/hm7", "", []byte(`{"country": "GB", "organizations": ["CompanyA"]}`))
}
