package main

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/ledgerfence/ledgerfence/pkg/api"
	"github.com/ledgerfence/ledgerfence/pkg/cache"
	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/embedded"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/head"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/tokens"
)

func fileSHA(t *testing.T, path string) [32]byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(data)
}

// signedLedger writes hosts into the embedded ledger in dir, its heads
// signed with the key kept there, and returns its signed head.
func signedLedger(t *testing.T, dir string, hosts ...filter.Host) head.Signed {
	t.Helper()
	s, _, err := head.LoadOrCreateSigner(dir)
	if err != nil {
		t.Fatal(err)
	}
	l, err := embedded.Open(filepath.Join(dir, embedded.FileName), embedded.WithHeadSigner(s))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for _, h := range hosts {
		if _, _, err := l.PutHost(context.Background(), h); err != nil {
			t.Fatal(err)
		}
	}
	sh, err := l.SignedHead(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return sh
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

var ledgerFiles = []string{embedded.FileName, embedded.HeadFileName}

func TestVerifyHeads(t *testing.T) {
	h := newHarness(t)
	older := t.TempDir()
	signedLedger(t, h.dir, table4Hosts[:3]...)
	copyFiles(t, h.dir, older, ledgerFiles...)
	kept := signedLedger(t, h.dir, table4Hosts[3])
	path := filepath.Join(h.dir, embedded.FileName)
	keptFile := filepath.Join(t.TempDir(), "head.json")
	data, _ := json.Marshal(kept)
	if err := os.WriteFile(keptFile, data, 0o600); err != nil {
		t.Fatal(err)
	}

	before := fileSHA(t, path)
	code, out, errs := h.run("verify", "--expect-head", kept.Head.String(), "--expect-head-file", keptFile)
	if code != exitOK || !strings.Contains(out, "ok: 4 entries, 4 hosts, 0 regulations, head "+kept.Head.String()) {
		t.Fatalf("verify of the ledger as it is: exit %d: %s %s", code, out, errs)
	}
	if fileSHA(t, path) != before {
		t.Fatal("verify changed the ledger file")
	}

	bad := kept
	sig, _ := base64.StdEncoding.DecodeString(bad.Signature)
	sig[0] ^= 1
	bad.Signature = base64.StdEncoding.EncodeToString(sig)
	badFile := filepath.Join(t.TempDir(), "bad.json")
	data, _ = json.Marshal(bad)
	if err := os.WriteFile(badFile, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out, errs := h.run("verify", "--expect-head-file", badFile); code != exitDenied || !strings.Contains(errs, "signature does not verify") {
		t.Errorf("a head with a wrong signature: exit %d: %s %s", code, out, errs)
	}
	other := t.TempDir()
	otherKey, _, _ := head.LoadOrCreateSigner(other)
	if code, _, errs := h.run("verify", "--expect-head-file", keptFile, "--head-key", otherKey.PublicKeyBase64()); code != exitDenied || !strings.Contains(errs, "another key") {
		t.Errorf("a head checked against another key: exit %d: %s", code, errs)
	}

	// The last write rolled back, with the head file of that time too: the
	// file is consistent, and only the head kept elsewhere tells.
	copyFiles(t, older, h.dir, ledgerFiles...)
	if code, out, errs := h.run("verify"); code != exitOK {
		t.Fatalf("a rolled-back directory verifies on its own: exit %d: %s %s", code, out, errs)
	}
	before = fileSHA(t, path)
	for _, args := range [][]string{{"--expect-head", kept.Head.String()}, {"--expect-head-file", keptFile}} {
		code, out, errs := h.run(append([]string{"verify"}, args...)...)
		if code != exitDenied || !strings.Contains(out, "rolled back") {
			t.Errorf("verify %v of the rolled-back ledger: exit %d: %s %s", args, code, out, errs)
		}
	}
	if fileSHA(t, path) != before {
		t.Fatal("verify changed the ledger file")
	}

	// The chain rewritten from its first entry, hashes recomputed, head file
	// and all, with the same key: the kept head is not in it.
	for _, f := range ledgerFiles {
		os.Remove(filepath.Join(h.dir, f))
	}
	forged := slices.Clone(table4Hosts[:4])
	forged[3].Country = "JP"
	signedLedger(t, h.dir, forged...)
	if code, out, errs := h.run("verify", "--expect-head-file", keptFile, "-o", "json"); code != exitDenied || !strings.Contains(out, "rewritten") {
		t.Errorf("verify of the rewritten ledger: exit %d: %s %s", code, out, errs)
	}
}

func TestVerifyAndAdoptWithoutHeadFile(t *testing.T) {
	h := newHarness(t)
	kept := signedLedger(t, h.dir, table4Hosts...)
	if err := os.Remove(filepath.Join(h.dir, embedded.HeadFileName)); err != nil {
		t.Fatal(err)
	}
	if code, out, errs := h.run("verify"); code != exitDenied || !strings.Contains(out, "no head file") {
		t.Fatalf("verify without a head file: exit %d: %s %s", code, out, errs)
	}
	wrong := kept.Head
	wrong.Hash = strings.Repeat("a", 64)
	if code, _, errs := h.run("adopt", "--expect-head", wrong.String()); code != exitDenied {
		t.Fatalf("adopt against another head: exit %d: %s", code, errs)
	}
	if code, out, errs := h.run("adopt", "--expect-head", kept.Head.String()); code != exitOK || !strings.Contains(out, "adopted") {
		t.Fatalf("adopt: exit %d: %s %s", code, out, errs)
	}
	if code, out, errs := h.run("verify"); code != exitOK {
		t.Fatalf("verify after adopt: exit %d: %s %s", code, out, errs)
	}
	if code, _, errs := h.run("adopt"); code != exitDenied || !strings.Contains(errs, "already has a head file") {
		t.Errorf("adopt over a head file: exit %d: %s", code, errs)
	}
}

func TestVerifyDamagedFile(t *testing.T) {
	h := newHarness(t)
	signedLedger(t, h.dir, table4Hosts...)
	path := filepath.Join(h.dir, embedded.FileName)
	for _, tc := range []struct {
		name string
		data func([]byte) []byte
	}{
		{"empty", func([]byte) []byte { return nil }},
		{"cut short", func(b []byte) []byte { return b[:10000] }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data, _ := os.ReadFile(path)
			defer os.WriteFile(path, data, 0o600)
			if err := os.WriteFile(path, tc.data(data), 0o600); err != nil {
				t.Fatal(err)
			}
			if code, out, errs := h.run("verify"); code != exitDenied || !strings.Contains(out, "damaged") {
				t.Errorf("exit %d: %s %s", code, out, errs)
			}
		})
	}
}

// serve serves the embedded ledger in dir as filterd does, with the writer
// tokens of dir, until the test ends or stop is called.
func serve(t *testing.T, dir string) (url string, stop func()) {
	t.Helper()
	s, _, err := head.LoadOrCreateSigner(dir)
	if err != nil {
		t.Fatal(err)
	}
	l, err := embedded.Open(filepath.Join(dir, embedded.FileName), embedded.WithHeadSigner(s))
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	c, err := cache.New(l, zap.NewNop(), reg, cache.Config{})
	if err != nil {
		t.Fatal(err)
	}
	writers, err := tokens.Open(filepath.Join(dir, tokens.FileName))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := api.New(l, c, zap.NewNop(), reg, reg, api.Config{Backend: "embedded", Writable: true, AdminToken: "t", Writers: writers})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	done := false
	stop = func() {
		if !done {
			done = true
			srv.Close()
			hs.Close()
			l.Close()
		}
	}
	t.Cleanup(stop)
	return hs.URL, stop
}

// TestRemoteHeads: ledgerctl remembers the last signed head of the filterd
// it talks to and refuses the filterd's ledger once it went back.
func TestRemoteHeads(t *testing.T) {
	h := newHarness(t)
	dir := t.TempDir()
	older := t.TempDir()
	signedLedger(t, dir, table4Hosts[:2]...)
	copyFiles(t, dir, older, ledgerFiles...)
	signedLedger(t, dir, table4Hosts[2:]...)
	state := filepath.Join(t.TempDir(), "state", "head.json")
	h.env["LEDGERFENCE_HEAD_STATE"] = state

	url, stop := serve(t, dir)
	code, out, errs := h.run("head", "--ledger", url, "-o", "json")
	if code != exitOK {
		t.Fatalf("head: exit %d: %s %s", code, out, errs)
	}
	var seen head.Signed
	if err := json.Unmarshal([]byte(out), &seen); err != nil || seen.Height != 4 {
		t.Fatalf("head = %s (%v)", out, err)
	}
	if code, _, errs := h.run("host", "list", "--ledger", url); code != exitOK {
		t.Fatalf("host list: exit %d: %s", code, errs)
	}
	stop()

	// The filterd's directory rolled back, ledger and head file together:
	// filterd starts, and ledgerctl refuses it.
	copyFiles(t, older, dir, ledgerFiles...)
	url, _ = serve(t, dir)
	code, out, errs = h.run("host", "list", "--ledger", url)
	if code != exitDenied || !strings.Contains(errs, "went back") || !strings.Contains(errs, state) {
		t.Fatalf("host list on the rolled-back ledger: exit %d: %s %s", code, out, errs)
	}
	if code, _, _ := h.run("host", "list", "--ledger", url, "--head-state", "none"); code != exitOK {
		t.Errorf("host list without the remembered head: exit %d", code)
	}
}

func TestDefaultHeadState(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	a := defaultHeadState(env(map[string]string{"HOME": "/home/u"}), "https://filterd.example:8787")
	b := defaultHeadState(env(map[string]string{"XDG_STATE_HOME": "/s"}), "https://filterd.example:8787/")
	if !strings.HasPrefix(a, "/home/u/.local/state/ledgerfence/heads/filterd.example_8787-") || !strings.HasPrefix(b, "/s/ledgerfence/heads/") ||
		filepath.Base(a) != filepath.Base(b) {
		t.Errorf("default head states %q, %q", a, b)
	}
	if got := defaultHeadState(env(nil), "https://filterd.example"); got != "" {
		t.Errorf("without HOME: %q", got)
	}
	if got := defaultHeadState(env(map[string]string{"HOME": "/h"}), "fabric"); got != "" {
		t.Errorf("for fabric: %q", got)
	}
}
