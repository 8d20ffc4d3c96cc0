package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ledgerfence/ledgerfence/pkg/ledger"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/access"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/tokens"
)

func TestTokenCommands(t *testing.T) {
	h := newHarness(t)
	code, out, errs := h.run("token", "issue", "--role", "hostagent", "--host", "hm1")
	if code != exitOK {
		t.Fatalf("issue: exit %d: %s", code, errs)
	}
	secret := strings.TrimSpace(out)
	if !strings.HasPrefix(secret, tokens.Prefix) || strings.Count(out, "\n") != 1 {
		t.Fatalf("stdout %q: want the token alone", out)
	}
	if !strings.Contains(errs, "hostagent-hm1") || !strings.Contains(errs, "shown this once") || strings.Contains(errs, secret) {
		t.Errorf("stderr %q", errs)
	}
	data, err := os.ReadFile(filepath.Join(h.dir, tokens.FileName))
	if err != nil || strings.Contains(string(data), secret) {
		t.Fatalf("the tokens file holds the token (%v)", err)
	}

	code, out, errs = h.run("token", "issue", "--role", "vmmanager", "--id", "alice@ops", "-o", "json")
	var issued tokenInfo
	if code != exitOK || json.Unmarshal([]byte(out), &issued) != nil || issued.ID != "alice@ops" || issued.Role != "vmmanager" || !strings.HasPrefix(issued.Token, tokens.Prefix) {
		t.Fatalf("issue -o json: exit %d %q %s", code, out, errs)
	}

	for _, tc := range []struct {
		name string
		args []string
		code int
		word string
	}{
		{"unknown role", []string{"--role", "admin", "--id", "x"}, exitUsage, "want one of"},
		{"host agent without a host", []string{"--role", "hostagent"}, exitUsage, "needs --id"},
		{"host agent with --id, without a host", []string{"--role", "hostagent", "--id", "x"}, exitUsage, "names the one host"},
		{"vm manager without a name", []string{"--role", "vmmanager"}, exitUsage, "needs --id"},
		{"vm manager with a host", []string{"--role", "vmmanager", "--id", "bob", "--host", "hm1"}, exitUsage, "only a hostagent"},
		{"a name in use", []string{"--role", "policyadmin", "--id", "alice@ops"}, exitError, "already holds a token"},
		{"the admin's name", []string{"--role", "policyadmin", "--id", "filterd-admin"}, exitUsage, "operator"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := h.run(append([]string{"token", "issue"}, tc.args...)...)
			if code != tc.code || out != "" || !strings.Contains(errs, tc.word) {
				t.Fatalf("exit %d (want %d), stdout %q, stderr %q (want %q)", code, tc.code, out, errs, tc.word)
			}
		})
	}

	if code, out, errs := h.run("token", "revoke", "hostagent-hm1"); code != exitOK || !strings.Contains(out, "revoked the token of hostagent-hm1") {
		t.Fatalf("revoke: exit %d %q %s", code, out, errs)
	}
	if code, _, errs := h.run("token", "revoke", "hostagent-hm1"); code != exitError || !strings.Contains(errs, "no token") {
		t.Fatalf("revoke again: exit %d %s", code, errs)
	}
	code, out, errs = h.run("token", "list")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != exitOK || len(lines) != 3 || !strings.HasPrefix(lines[0], "ID") ||
		!strings.Contains(lines[1], "hostagent-hm1") || strings.HasSuffix(strings.TrimSpace(lines[1]), "-") ||
		!strings.Contains(lines[2], "alice@ops") || !strings.HasSuffix(strings.TrimSpace(lines[2]), "-") {
		t.Fatalf("list: exit %d\n%s%s", code, out, errs)
	}
	if strings.Contains(out, secret) || strings.Contains(out, issued.Token) {
		t.Fatal("list shows a token")
	}
	code, out, _ = h.run("token", "list", "-o", "json")
	var list []map[string]any
	if code != exitOK || json.Unmarshal([]byte(out), &list) != nil || len(list) != 2 || list[0]["revoked"] == nil || list[0]["sha256"] != nil || list[1]["token"] != nil {
		t.Fatalf("list -o json: %s", out)
	}

	delete(h.env, "LEDGERFENCE_DATA")
	if code, _, errs := h.run("token", "list"); code != exitUsage || !strings.Contains(errs, "--data") {
		t.Fatalf("no --data: exit %d %s", code, errs)
	}
}

// TestWriterTokensThroughFilterd: a VM manager's token writes regulations
// as that identity; a host agent's writes its host and nothing else; a
// revoked token is refused, and so is a token sent to a non-loopback http
// URL.
func TestWriterTokensThroughFilterd(t *testing.T) {
	h := newHarness(t)
	url, _ := serve(t, h.dir)
	issue := func(args ...string) string {
		t.Helper()
		code, out, errs := h.run(append([]string{"token", "issue"}, args...)...)
		if code != exitOK {
			t.Fatalf("issue %v: exit %d %s", args, code, errs)
		}
		return strings.TrimSpace(out)
	}
	alice := issue("--role", "vmmanager", "--id", "alice")
	agent := issue("--role", "hostagent", "--host", "hm1")
	h.env = map[string]string{"LEDGERFENCE_LEDGER": url, "LEDGERFENCE_HEAD_STATE": "none", "USER": "mallory"}

	code, out, errs := h.run("regulation", "set", "vm:"+vm1, "--allow", "JP.CompanyA", "--token", alice, "-o", "json")
	var rec ledger.RegulationRecord
	if code != exitOK || json.Unmarshal([]byte(out), &rec) != nil {
		t.Fatalf("alice sets: exit %d %s", code, errs)
	}
	if rec.Owner != "alice" || rec.Writer != (ledger.Writer{ID: "alice", Role: access.RoleVMManager}) {
		t.Errorf("stored %+v: want alice's, not $USER's", rec)
	}
	for _, tc := range []struct {
		name string
		args []string
		code int
		word string
	}{
		{"host agent sets a regulation", []string{"regulation", "set", "vm:" + vm2, "--allow", "JP.CompanyA", "--token", agent}, exitDenied, "role is hostagent"},
		{"host agent deletes one", []string{"regulation", "delete", "vm:" + vm1, "--token", agent}, exitDenied, "only the owner"},
		{"token over plain http elsewhere", []string{"host", "list", "--ledger", "http://filterd.example:8787", "--token", alice}, exitUsage, "use https"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if code, _, errs := h.run(tc.args...); code != tc.code || !strings.Contains(errs, tc.word) {
				t.Fatalf("exit %d (want %d): %s", code, tc.code, errs)
			}
		})
	}
	h.env["LEDGERFENCE_DATA"] = h.dir
	if code, _, errs := h.run("token", "revoke", "alice"); code != exitOK {
		t.Fatalf("revoke: %s", errs)
	}
	delete(h.env, "LEDGERFENCE_DATA")
	if code, _, errs := h.run("regulation", "delete", "vm:"+vm1, "--token", alice); code != exitDenied || !strings.Contains(errs, "revoked") {
		t.Fatalf("revoked token: exit %d %s", code, errs)
	}
}
