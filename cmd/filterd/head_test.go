package main

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zaptest"

	"github.com/ledgerfence/ledgerfence/pkg/cache"
	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/embedded"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/head"
	"github.com/ledgerfence/ledgerfence/pkg/notify"
)

// session runs filterd on cfg, calls fn with its base URL, and stops it.
func session(t *testing.T, cfg config, fn func(base string)) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() { done <- run(ctx, cfg, zaptest.NewLogger(t), func(a net.Addr) { addr <- a }) }()
	select {
	case a := <-addr:
		fn("http://" + a.String())
	case err := <-done:
		t.Fatalf("run: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run after a signal: %v", err)
	}
}

func putHosts(t *testing.T, base string, names ...string) {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second}
	for _, n := range names {
		if resp, body := call(t, client, http.MethodPut, base+"/v1/hosts/"+n, "s3cret", `{"country": "JP", "organizations": ["CompanyA"]}`); resp.StatusCode != http.StatusOK {
			t.Fatalf("PUT %s: %d %s", n, resp.StatusCode, body)
		}
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestRunSignsHeads: filterd signs its ledger's head with the key in its
// data directory and serves it, and the hash at any height, behind the read
// token.
func TestRunSignsHeads(t *testing.T) {
	cfg := testConfig(t)
	cfg.ReadToken = "reader"
	client := &http.Client{Timeout: 10 * time.Second}
	base := started(t, cfg, client, "http")
	putHosts(t, base, "hm1", "hm2", "hm3")

	if resp, _ := call(t, client, http.MethodGet, base+"/v1/ledger/head", "", ""); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET /v1/ledger/head without the read token: %d, want 401", resp.StatusCode)
	}
	resp, body := call(t, client, http.MethodGet, base+"/v1/ledger/head", "reader", "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/ledger/head: %d %s", resp.StatusCode, body)
	}
	s, err := head.ParseSigned([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := head.ReadPublicKeyFile(filepath.Join(cfg.Data, head.PublicKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Verify(pub); err != nil || s.Height != 3 {
		t.Fatalf("signed head %+v: %v; want height 3 under the data directory's key", s, err)
	}
	if fi, err := os.Stat(filepath.Join(cfg.Data, head.KeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("signing key: %v, mode %v", err, fi.Mode())
	}
	for at, want := range map[string]int{"3": http.StatusOK, "0": http.StatusOK, "4": http.StatusNotFound, "x": http.StatusBadRequest} {
		resp, body := call(t, client, http.MethodGet, base+"/v1/ledger/head?at="+at, "reader", "")
		if resp.StatusCode != want {
			t.Errorf("?at=%s: %d %s, want %d", at, resp.StatusCode, body, want)
		}
		if at == "3" {
			var h head.Head
			if json.Unmarshal([]byte(body), &h) != nil || h != s.Head {
				t.Errorf("?at=3 = %s, want %v", body, s.Head)
			}
		}
	}
}

// TestRunRefusesWhatIsNotTheLedger: filterd does not start on a data
// directory whose ledger file is missing, empty, truncated, damaged, rolled
// back, rewritten or without its head file, and says why.
func TestRunRefusesWhatIsNotTheLedger(t *testing.T) {
	// A ledger of two sessions: three hosts, then one more.
	cfg := testConfig(t)
	session(t, cfg, func(base string) { putHosts(t, base, "hm1", "hm2", "hm3") })
	db, hf := filepath.Join(cfg.Data, embedded.FileName), filepath.Join(cfg.Data, embedded.HeadFileName)
	older := filepath.Join(t.TempDir(), "older.db")
	copyFile(t, db, older)
	session(t, cfg, func(base string) { putHosts(t, base, "hm4") })
	good := t.TempDir()
	for _, f := range []string{embedded.FileName, embedded.HeadFileName, head.KeyFile, head.PublicKeyFile} {
		copyFile(t, filepath.Join(cfg.Data, f), filepath.Join(good, f))
	}

	for _, tc := range []struct {
		name   string
		damage func(t *testing.T)
		want   string
	}{
		{"the ledger file removed", func(t *testing.T) { os.Remove(db) }, "is missing"},
		{"an empty ledger file", func(t *testing.T) { os.WriteFile(db, nil, 0o600) }, "empty"},
		{"the ledger file cut short", func(t *testing.T) { os.Truncate(db, 10000) }, "damaged"},
		{"the last write rolled back", func(t *testing.T) { copyFile(t, older, db) }, "rolled back"},
		{"the head file removed", func(t *testing.T) { os.Remove(hf) }, "no head file"},
		{"a new empty ledger in its place", func(t *testing.T) {
			os.Remove(db)
			os.Remove(hf)
			l, err := embedded.Open(db)
			if err != nil {
				t.Fatal(err)
			}
			l.Close()
			copyFile(t, filepath.Join(good, embedded.HeadFileName), hf)
		}, "rolled back"},
		{"a host rewritten in the file", func(t *testing.T) {
			data, _ := os.ReadFile(db)
			i := strings.LastIndex(string(data), `"country":"JP"`)
			copy(data[i:], `"country":"DE"`)
			os.WriteFile(db, data, 0o600)
		}, "does not match its hash chain"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, f := range []string{embedded.FileName, embedded.HeadFileName} {
				copyFile(t, filepath.Join(good, f), filepath.Join(cfg.Data, f))
			}
			tc.damage(t)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			listened := false
			err := run(ctx, cfg, zaptest.NewLogger(t), func(net.Addr) { listened = true })
			if err == nil || !strings.Contains(err.Error(), tc.want) || listened {
				t.Errorf("run = %v (served: %v), want a refusal saying %q", err, listened, tc.want)
			}
		})
	}

	// The untouched directory still serves its four hosts.
	for _, f := range []string{embedded.FileName, embedded.HeadFileName} {
		copyFile(t, filepath.Join(good, f), filepath.Join(cfg.Data, f))
	}
	session(t, cfg, func(base string) {
		client := &http.Client{Timeout: 10 * time.Second}
		if resp, body := call(t, client, http.MethodGet, base+"/v1/hosts/hm4", "", ""); resp.StatusCode != http.StatusOK {
			t.Errorf("hm4 after the refusals: %d %s", resp.StatusCode, body)
		}
	})
}

// TestRunPublishesHeads: with --nats, every new head is published, signed.
func TestRunPublishesHeads(t *testing.T) {
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	if !ns.ReadyForConnections(20 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	heads := make(chan notify.LedgerHead, 16)
	if _, err := notify.Subscribe(nc, func(h notify.LedgerHead) { heads <- h }, nil); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t)
	cfg.NATS = ns.ClientURL()
	base := started(t, cfg, &http.Client{Timeout: 10 * time.Second}, "http")
	pub, err := head.ReadPublicKeyFile(filepath.Join(cfg.Data, head.PublicKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	putHosts(t, base, "hm1", "hm2")
	deadline := time.After(20 * time.Second)
	for {
		select {
		case h := <-heads:
			if err := h.Signed().Verify(pub); err != nil {
				t.Fatalf("published head %+v: %v", h, err)
			}
			if h.Height == 2 {
				return
			}
		case <-deadline:
			t.Fatal("the head at height 2 was not published")
		}
	}
}

func TestDamageGuard(t *testing.T) {
	c, err := cache.New(fakeSource{}, nil, prometheus.NewRegistry(), cache.Config{})
	if err != nil {
		t.Fatal(err)
	}
	damaged := ledger.Errorf(ledger.ErrUnavailable, embedded.ErrCorrupt, "damaged")
	g := damageGuard{c, func() error { return damaged }}
	if g.Ready() {
		t.Error("ready on a damaged ledger")
	}
	if err := g.Resolve(context.Background(), &cache.Query{}); !errors.Is(err, ledger.ErrUnavailable) {
		t.Errorf("Resolve on a damaged ledger = %v, want ErrUnavailable", err)
	}
}

// fakeSource is a ledger that has nothing.
type fakeSource struct{}

func (fakeSource) ListHosts(context.Context, string, int) (ledger.HostPage, error) {
	return ledger.HostPage{}, nil
}
func (fakeSource) Lookup(context.Context, []filter.Subject, []string) (ledger.Lookup, error) {
	return ledger.Lookup{}, nil
}
func (fakeSource) Height(context.Context) (uint64, error) { return 0, nil }
func (fakeSource) Watch(ctx context.Context, _ uint64) (<-chan ledger.Event, error) {
	ch := make(chan ledger.Event)
	go func() { <-ctx.Done(); close(ch) }()
	return ch, nil
}
