package main

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/access"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/access/accesstest"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/remote"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/tokens"
)

// restBackend is filterd's embedded ledger reached over HTTP through its
// REST API, one writer token per identity of the table.
type restBackend struct {
	base    string
	secrets map[string]string
}

func (b restBackend) As(t testing.TB, id accesstest.Identity) ledger.Ledger {
	c, err := remote.New(b.base, remote.WithToken(b.secrets[id.Name]))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func (restBackend) IsWriter(id accesstest.Identity, w ledger.Writer) bool {
	return w.MSP == "" && w.ID == id.Name
}

// startWithTokens runs filterd on a data directory whose tokens file holds
// a writer token for each of ids, issued before filterd starts or while it
// runs (late), and returns its base URL and the tokens by identity.
func startWithTokens(t *testing.T, ids []accesstest.Identity) (string, string, map[string]string) {
	t.Helper()
	data := filepath.Join(t.TempDir(), "data")
	if err := os.MkdirAll(data, 0o750); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(data, tokens.FileName)
	secrets := map[string]string{}
	issue := func(id accesstest.Identity) {
		s, _, err := tokens.Issue(path, access.Identity{ID: id.Name, Role: id.Role, Host: id.Host}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		secrets[id.Name] = s
	}
	half := len(ids) / 2
	for _, id := range ids[:half] {
		issue(id)
	}
	cfg, err := parseConfig([]string{"--listen", "127.0.0.1:0", "--data", data}, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	base := started(t, cfg, &http.Client{Timeout: 10 * time.Second}, "http")
	for _, id := range ids[half:] {
		issue(id) // filterd reads the file again
	}
	return base, path, secrets
}

// TestAccessMatrixOverREST plays package accesstest's table, the one the
// Fabric integration tests play on the chaincode, against filterd's
// embedded ledger over HTTP with a writer token per identity: the same
// writes are allowed and refused, with the same words, and the history
// names the token's identity and role.
func TestAccessMatrixOverREST(t *testing.T) {
	base, _, secrets := startWithTokens(t, accesstest.Identities())
	accesstest.Run(t, context.Background(), restBackend{base: base, secrets: secrets})
}

func TestRevokedTokenIsRefused(t *testing.T) {
	base, path, secrets := startWithTokens(t, []accesstest.Identity{accesstest.HostAgent, accesstest.VMManager})
	ctx := context.Background()
	agent := restBackend{base: base, secrets: secrets}.As(t, accesstest.HostAgent)
	h := filter.Host{Name: accesstest.OwnHost, Country: "JP", Organizations: []string{"CompanyA"}}
	if _, _, err := agent.PutHost(ctx, h); err != nil {
		t.Fatal(err)
	}
	if _, err := tokens.Revoke(path, accesstest.HostAgent.Name, time.Now()); err != nil {
		t.Fatal(err)
	}
	h.Country = "DE"
	_, _, err := agent.PutHost(ctx, h)
	if !errors.Is(err, ledger.ErrForbidden) || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("a revoked token: %v", err)
	}
	vmm := restBackend{base: base, secrets: secrets}.As(t, accesstest.VMManager)
	if got, err := vmm.GetHost(ctx, accesstest.OwnHost); err != nil || got.Country != "JP" {
		t.Fatalf("after the revoked write: %+v, %v", got, err)
	}
}

func TestUnusableTokensFileStopsFilterd(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	if err := os.MkdirAll(data, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data, tokens.FileName), []byte(`{"version": 1, "tokens": []}`), 0o666); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(data, tokens.FileName), 0o666); err != nil {
		t.Fatal(err)
	}
	cfg, err := parseConfig([]string{"--listen", "127.0.0.1:0", "--data", data}, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	err = run(ctx, cfg, zap.NewNop(), nil)
	if err == nil || !strings.Contains(err.Error(), "writer tokens") || !strings.Contains(err.Error(), "written by others") {
		t.Fatalf("run: %v", err)
	}
}
