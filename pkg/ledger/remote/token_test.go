package remote_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ledgerfence/ledgerfence/pkg/api"
	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/access"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/remote"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/tokens"
)

func TestTokenOverPlainHTTPOnlyToLoopback(t *testing.T) {
	for _, tc := range []struct {
		url, token string
		ok         bool
	}{
		{"http://127.0.0.1:8787", "t", true},
		{"http://127.8.9.1:8787", "t", true},
		{"http://[::1]:8787", "t", true},
		{"http://localhost:8787", "t", true},
		{"http://LOCALHOST", "t", true},
		{"https://filterd.example:8787", "t", true},
		{"https://10.0.0.5:8787", "t", true},
		{"http://filterd.example:8787", "", true},
		{"http://filterd.example:8787", "t", false},
		{"http://10.0.0.5:8787", "t", false},
		{"http://0.0.0.0:8787", "t", false},
		{"http://[::]:8787", "t", false},
		{"http://localhost.example.com", "t", false},
		{"http://127.0.0.1.example.com", "t", false},
	} {
		t.Run(tc.url+"/"+tc.token, func(t *testing.T) {
			c, err := remote.New(tc.url, remote.WithToken(tc.token))
			if tc.ok {
				if err != nil {
					t.Fatal(err)
				}
				c.Close()
				return
			}
			if !errors.Is(err, ledger.ErrInvalid) || !strings.Contains(err.Error(), "use https") || !strings.Contains(err.Error(), "plain http") {
				t.Fatalf("got %v, want ErrInvalid saying to use https", err)
			}
		})
	}
}

func TestTheWriterIsTheToken(t *testing.T) {
	path := filepath.Join(t.TempDir(), tokens.FileName)
	store, err := tokens.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	hs, _ := filterd(t, api.Config{Writers: store})
	agent, _, err := tokens.Issue(path, access.Identity{ID: "hostagent-hm1", Role: access.RoleHostAgent, Host: "hm1"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	c := client(t, hs.URL, remote.WithToken(agent))
	// a writer named on the context is not sent, let alone recorded
	ctx := ledger.WithWriter(t.Context(), ledger.Writer{ID: "filterd-admin"})
	rec, _, err := c.PutHost(ctx, host("hm1", "JP", "CompanyA"))
	if err != nil || rec.Writer != (ledger.Writer{ID: "hostagent-hm1", Role: access.RoleHostAgent}) {
		t.Fatalf("own host: %+v, %v", rec.Writer, err)
	}
	hist, err := c.History(ctx, ledger.KindHost, "hm1")
	if err != nil || len(hist) != 1 || hist[0].Writer.ID != "hostagent-hm1" || hist[0].Writer.Role != access.RoleHostAgent {
		t.Fatalf("history %+v, %v", hist, err)
	}
	_, _, err = c.PutHost(ctx, host("hm2", "JP", "CompanyA"))
	if !errors.Is(err, ledger.ErrForbidden) || !strings.Contains(err.Error(), "own host") {
		t.Fatalf("another host: %v", err)
	}
	_, _, err = c.PutRegulation(ctx, vm1, filter.Terms{Allow: []filter.Rule{{Country: "JP", Organization: "*"}}})
	if !errors.Is(err, ledger.ErrForbidden) || !strings.Contains(err.Error(), "role is hostagent") {
		t.Fatalf("a regulation: %v", err)
	}
	if _, err := tokens.Revoke(path, "hostagent-hm1", time.Now()); err != nil {
		t.Fatal(err)
	}
	_, _, err = c.PutHost(ctx, host("hm1", "GB", "CompanyA"))
	if !errors.Is(err, ledger.ErrForbidden) || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("revoked: %v", err)
	}
}

func TestRedirectsAreNotFollowed(t *testing.T) {
	var reached atomic.Int32
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached.Add(1)
	}))
	defer elsewhere.Close()
	redirect := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, elsewhere.URL+r.URL.Path, http.StatusTemporaryRedirect)
	}))
	defer redirect.Close()
	for _, opts := range [][]remote.Option{
		{remote.WithToken("secret")},
		{remote.WithToken("secret"), remote.WithHTTPClient(&http.Client{})},
	} {
		_, _, err := client(t, redirect.URL, opts...).PutHost(t.Context(), host("hm1", "JP", "CompanyA"))
		if err == nil || reached.Load() != 0 {
			t.Fatalf("redirected: err %v, the other server reached %d times", err, reached.Load())
		}
	}
}
