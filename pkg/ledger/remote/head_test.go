package remote_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zaptest"

	"github.com/ledgerfence/ledgerfence/pkg/api"
	"github.com/ledgerfence/ledgerfence/pkg/cache"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/embedded"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/head"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/remote"
)

// signing serves, until stop is called, the embedded ledger in dir signed
// with the key kept there, as filterd does.
func signing(t *testing.T, dir string) (url string, l *embedded.Ledger, stop func()) {
	t.Helper()
	s, _, err := head.LoadOrCreateSigner(dir)
	if err != nil {
		t.Fatal(err)
	}
	l, err = embedded.Open(filepath.Join(dir, embedded.FileName), embedded.WithHeadSigner(s))
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	c, err := cache.New(l, zaptest.NewLogger(t), reg, cache.Config{})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := api.New(l, c, zaptest.NewLogger(t), reg, reg, api.Config{Backend: "embedded", Writable: true, AdminToken: token})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	return hs.URL, l, func() {
		srv.Close()
		hs.Close()
		if err := l.Close(); err != nil {
			t.Error(err)
		}
	}
}

func putHosts(t *testing.T, l *embedded.Ledger, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, _, err := l.PutHost(context.Background(), host(n, "JP", "CompanyA")); err != nil {
			t.Fatal(err)
		}
	}
}

func copyFiles(t *testing.T, from, to string, names ...string) {
	t.Helper()
	for _, n := range names {
		data, err := os.ReadFile(filepath.Join(from, n))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, n), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// TestWitnessOverREST: a client that remembers the last signed head it saw
// refuses the filterd's ledger once it was rolled back or rewritten, even
// when the ledger file and its head file were replaced together (so that
// filterd itself starts), and accepts it as it grows.
func TestWitnessOverREST(t *testing.T) {
	ctx := context.Background()
	ledgerFiles := []string{embedded.FileName, embedded.HeadFileName}
	for _, tc := range []struct {
		name   string
		change func(t *testing.T, dir, snapshot string)
		want   error
	}{
		{"grown", func(t *testing.T, dir, _ string) {
			_, l, stop := signing(t, dir)
			putHosts(t, l, "hm4")
			stop()
		}, nil},
		{"rolled back past the head seen", func(t *testing.T, dir, snapshot string) {
			copyFiles(t, snapshot, dir, ledgerFiles...)
		}, head.ErrRollback},
		{"rolled back and written again", func(t *testing.T, dir, snapshot string) {
			copyFiles(t, snapshot, dir, ledgerFiles...)
			_, l, stop := signing(t, dir)
			putHosts(t, l, "hm3-forged", "hm4")
			stop()
		}, head.ErrFork},
		{"rewritten from scratch with the same key", func(t *testing.T, dir, _ string) {
			for _, f := range ledgerFiles {
				os.Remove(filepath.Join(dir, f))
			}
			_, l, stop := signing(t, dir)
			putHosts(t, l, "hm1", "hm2", "hm3-forged")
			stop()
		}, head.ErrFork},
		{"a new key", func(t *testing.T, dir, _ string) {
			os.Remove(filepath.Join(dir, head.KeyFile))
		}, head.ErrKeyChanged},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, snapshot := t.TempDir(), t.TempDir()
			_, l, stop := signing(t, dir)
			putHosts(t, l, "hm1", "hm2")
			stop()
			copyFiles(t, dir, snapshot, ledgerFiles...)
			url, l, stop := signing(t, dir)
			putHosts(t, l, "hm3")
			state := filepath.Join(t.TempDir(), "head.json")
			w, err := head.NewWitness(state, nil)
			if err != nil {
				t.Fatal(err)
			}
			seen, err := w.Check(ctx, client(t, url))
			if err != nil || seen.Height != 3 {
				t.Fatalf("first check: %v at %d", err, seen.Height)
			}
			stop()

			tc.change(t, dir, snapshot)
			url, _, stop = signing(t, dir)
			defer stop()
			w, err = head.NewWitness(state, nil)
			if err != nil {
				t.Fatal(err)
			}
			got, err := w.Check(ctx, client(t, url))
			if tc.want == nil {
				if err != nil || got.Height != 4 {
					t.Fatalf("Check = %v at %d, want accepted at 4", err, got.Height)
				}
				return
			}
			if !errors.Is(err, tc.want) || !errors.Is(err, head.ErrRefused) {
				t.Fatalf("Check = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestSignedHeadOfAnUnsignedLedger(t *testing.T) {
	hs, _ := filterd(t, api.Config{})
	c := client(t, hs.URL, remote.WithToken(token))
	if _, err := c.SignedHead(context.Background()); !errors.Is(err, head.ErrNoHeads) {
		t.Errorf("SignedHead of a ledger that signs none: %v, want ErrNoHeads", err)
	}
	if h, err := c.HashAt(context.Background(), 0); err != nil || h != head.ZeroHash {
		t.Errorf("HashAt(0) = %q, %v", h, err)
	}
}
