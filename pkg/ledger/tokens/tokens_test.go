package tokens

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ledgerfence/ledgerfence/pkg/ledger/access"
)

var t0 = time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)

func agent(host string) access.Identity {
	return access.Identity{ID: DefaultID(access.RoleHostAgent, host), Role: access.RoleHostAgent, Host: host}
}

func TestIssueAuthenticateRevoke(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	store, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Authenticate("lfw_anything"); !errors.Is(err, ErrUnknown) {
		t.Fatalf("no file: %v", err)
	}
	secret, tok, err := Issue(path, agent("hm1"), t0)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(secret, Prefix) || len(secret) != len(Prefix)+43 || tok.ID != "hostagent-hm1" || tok.Host != "hm1" || !tok.Issued.Equal(t0) {
		t.Fatalf("issued %q %+v", secret, tok)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), secret) || strings.Contains(string(data), secret[len(Prefix):]) {
		t.Fatal("the file holds the token")
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", fi.Mode())
	}

	// the store sees the new token without being opened again
	who, err := store.Authenticate(secret)
	if err != nil || who != (access.Identity{ID: "hostagent-hm1", Role: access.RoleHostAgent, Host: "hm1"}) {
		t.Fatalf("authenticate: %+v, %v", who, err)
	}
	for _, bad := range []string{"", secret + "x", secret[:len(secret)-1], strings.ToUpper(secret)} {
		if _, err := store.Authenticate(bad); !errors.Is(err, ErrUnknown) {
			t.Errorf("%q: %v", bad, err)
		}
	}

	second, _, err := Issue(path, access.Identity{ID: "alice", Role: access.RoleVMManager}, t0)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := Issue(path, access.Identity{ID: "alice", Role: access.RolePolicyAdmin}, t0); !errors.Is(err, ErrExists) {
		t.Fatalf("a second token for alice: %v", err)
	}
	if _, err := Revoke(path, "hostagent-hm1", t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Authenticate(secret); !errors.Is(err, ErrRevoked) || !strings.Contains(err.Error(), "hostagent-hm1") {
		t.Fatalf("revoked: %v", err)
	}
	if who, err := store.Authenticate(second); err != nil || who.ID != "alice" || who.Role != access.RoleVMManager {
		t.Fatalf("alice after hm1's revocation: %+v, %v", who, err)
	}
	if _, err := Revoke(path, "hostagent-hm1", t0); !errors.Is(err, ErrNoIdentity) {
		t.Fatalf("revoked twice: %v", err)
	}
	if _, err := Revoke(path, "nobody", t0); !errors.Is(err, ErrNoIdentity) {
		t.Fatalf("revoke nobody: %v", err)
	}
	// a new token for the revoked identity; the old one stays refused
	third, _, err := Issue(path, agent("hm1"), t0.Add(2*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Authenticate(third); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Authenticate(secret); !errors.Is(err, ErrRevoked) {
		t.Fatalf("the first token after a new one: %v", err)
	}
	list, err := List(path)
	if err != nil || len(list) != 3 || list[0].Revoked == nil || list[1].Revoked != nil || list[2].Revoked != nil {
		t.Fatalf("list %+v, %v", list, err)
	}
}

func TestIssueRefuses(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	for _, tc := range []struct {
		name string
		who  access.Identity
		word string
	}{
		{"no name", access.Identity{Role: access.RoleVMManager}, "1 to 128"},
		{"long name", access.Identity{ID: strings.Repeat("a", MaxIDLen+1), Role: access.RoleVMManager}, "1 to 128"},
		{"slash in the name", access.Identity{ID: "ops/alice", Role: access.RoleVMManager}, "outside"},
		{"the admin token's writer", access.Identity{ID: "filterd-admin", Role: access.RolePolicyAdmin}, "operator"},
		{"the embedded ledger's writer", access.Identity{ID: "embedded", Role: access.RolePolicyAdmin}, "operator"},
		{"unknown role", access.Identity{ID: "x", Role: "admin"}, "want one of"},
		{"the operator's role", access.Identity{ID: "x", Role: access.RoleOperator}, "want one of"},
		{"no role", access.Identity{ID: "x"}, "want one of"},
		{"host agent without a host", access.Identity{ID: "x", Role: access.RoleHostAgent}, "names the one host"},
		{"vm manager with a host", access.Identity{ID: "x", Role: access.RoleVMManager, Host: "hm1"}, "only a hostagent"},
		{"bad host", access.Identity{ID: "x", Role: access.RoleHostAgent, Host: "h m"}, "outside"},
		{"an MSP", access.Identity{MSP: "Org1MSP", ID: "x", Role: access.RoleVMManager}, "one organisation"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := Issue(path, tc.who, t0)
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.word) {
				t.Fatalf("got %v, want ErrInvalid saying %q", err, tc.word)
			}
		})
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused issue made the file: %v", err)
	}
}

func TestUnusableFileRefusesEveryToken(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	secret, _, err := Issue(path, agent("hm1"), t0)
	if err != nil {
		t.Fatal(err)
	}
	store, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	good, _ := os.ReadFile(path)
	for _, tc := range []struct {
		name  string
		spoil func()
	}{
		{"not JSON", func() { os.WriteFile(path+".new", []byte("{"), 0o600); os.Rename(path+".new", path) }},
		{"another format", func() {
			os.WriteFile(path+".new", []byte(strings.Replace(string(good), `"version": 1`, `"version": 2`, 1)), 0o600)
			os.Rename(path+".new", path)
		}},
		{"writable by others", func() { os.Chmod(path, 0o666) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.spoil()
			if _, err := store.Authenticate(secret); !errors.Is(err, ErrFile) {
				t.Fatalf("got %v, want ErrFile", err)
			}
			if _, err := Open(path); !errors.Is(err, ErrFile) {
				t.Fatalf("Open: %v", err)
			}
			if _, _, err := Issue(path, agent("hm2"), t0); !errors.Is(err, ErrFile) {
				t.Fatalf("Issue over it: %v", err)
			}
			// mended: accepted again
			os.WriteFile(path+".new", good, 0o600)
			os.Rename(path+".new", path)
			if _, err := store.Authenticate(secret); err != nil {
				t.Fatalf("mended: %v", err)
			}
		})
	}
	// removed: no token
	os.Remove(path)
	if _, err := store.Authenticate(secret); !errors.Is(err, ErrUnknown) {
		t.Fatalf("removed: %v", err)
	}
}

func TestConcurrentIssues(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	var wg sync.WaitGroup
	secrets := make([]string, 8)
	for i := range secrets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, _, err := Issue(path, agent("hm"+string(rune('a'+i))), t0)
			if err != nil {
				t.Error(err)
			}
			secrets[i] = s
		}()
	}
	wg.Wait()
	store, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range secrets {
		if who, err := store.Authenticate(s); err != nil || who.Host != "hm"+string(rune('a'+i)) {
			t.Errorf("token %d: %+v, %v", i, who, err)
		}
	}
}

func TestDefaultID(t *testing.T) {
	if DefaultID(access.RoleHostAgent, "hm1") != "hostagent-hm1" || DefaultID(access.RoleVMManager, "") != "" ||
		DefaultID(access.RoleHostAgent, strings.Repeat("h", 200)) != "" {
		t.Error("default ids")
	}
}
