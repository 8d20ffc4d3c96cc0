package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ledgerfence/ledgerfence/pkg/cloud"
	"github.com/ledgerfence/ledgerfence/pkg/decide"
	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/embedded"
)

const (
	vm1 = "11111111-1111-4111-8111-111111111111"
	vm2 = "22222222-2222-4222-8222-222222222222"
)

// fakeNova knows some servers and records the migrations asked of it.
type fakeNova struct {
	servers  map[string]cloud.Server
	migrated []string // "kind target"
	fail     bool
	cause    string
}

func (n *fakeNova) GetServer(ctx context.Context, id string) (cloud.Server, error) {
	s, ok := n.servers[id]
	if !ok {
		return cloud.Server{}, fmt.Errorf("%w: server %s does not exist", cloud.ErrNotFound, id)
	}
	return s, nil
}

func (n *fakeNova) Migrate(ctx context.Context, id, kind, target string, fo cloud.FollowOptions) (cloud.Outcome, error) {
	n.migrated = append(n.migrated, kind+" "+target)
	s := n.servers[id]
	out := cloud.Outcome{FromHost: s.Host, ToHost: s.Host}
	if !fo.Wait {
		return out, nil
	}
	if fo.Progress != nil {
		fo.Progress(cloud.Progress{Server: cloud.Server{Status: "MIGRATING", TaskState: "migrating", Host: s.Host}, Migration: &cloud.Migration{Status: "running", SourceHost: s.Host}})
	}
	if n.fail {
		out.Migration = &cloud.Migration{Status: "error"}
		out.Cause = n.cause
		return out, nil
	}
	if target == "" {
		target = "gb-1"
	}
	out.OK, out.ToHost, out.Migration = true, target, &cloud.Migration{Status: "completed"}
	s.Host = target
	n.servers[id] = s
	return out, nil
}

type harness struct {
	t    *testing.T
	dir  string
	env  map[string]string
	nova *fakeNova
}

func newHarness(t *testing.T) *harness {
	h := &harness{t: t, dir: t.TempDir(), nova: &fakeNova{servers: map[string]cloud.Server{
		vm1: {ID: vm1, ProjectID: "p1", Host: "de-1", Status: "ACTIVE"},
	}}}
	h.env = map[string]string{"LEDGERFENCE_LEDGER": "embedded", "LEDGERFENCE_DATA": h.dir, "USER": "alice"}
	return h
}

// seed registers hosts directly in the embedded ledger.
func (h *harness) seed(hosts ...filter.Host) {
	l, err := embedded.Open(filepath.Join(h.dir, embedded.FileName))
	if err != nil {
		h.t.Fatal(err)
	}
	defer l.Close()
	for _, x := range hosts {
		if _, _, err := l.PutHost(context.Background(), x); err != nil {
			h.t.Fatal(err)
		}
	}
}

func (h *harness) run(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	a := newApp(&out, &errb, func(k string) string { return h.env[k] })
	a.openNova = func(ctx context.Context) (nova, error) {
		if _, err := cloud.CredentialsFromEnv(func(k string) string { return h.env[k] }); err != nil {
			return nil, err
		}
		return h.nova, nil
	}
	a.followEvery = time.Millisecond
	code = a.run(context.Background(), args)
	return code, out.String(), errb.String()
}

func (h *harness) withNova() {
	h.env["OS_AUTH_URL"], h.env["OS_USERNAME"], h.env["OS_PASSWORD"] = "http://keystone/v3", "admin", "x"
}

func TestRegulationInputForms(t *testing.T) {
	want := []filter.Rule{{Country: "GB", Organization: "CompanyA"}, {Country: "GB", Organization: "CompanyB"}, {Country: "JP", Organization: "CompanyA"}, {Country: "JP", Organization: "CompanyB"}}
	file := func(body string) string {
		p := filepath.Join(t.TempDir(), "regulation.json")
		os.WriteFile(p, []byte(body), 0o600)
		return p
	}
	tests := []struct {
		name string
		args []string
	}{
		{"allow flags", []string{"--allow", "JP.CompanyA", "--allow", "jp.CompanyB", "--allow", "GB.CompanyA,GB.CompanyB"}},
		{"countries and organisations", []string{"--countries", "JP,GB", "--organizations", "CompanyA", "--organizations", "CompanyB"}},
		{"file, allow objects", []string{"--file", file(`{"allow":[{"country":"JP","organization":"CompanyA"},{"country":"JP","organization":"CompanyB"},{"country":"GB","organization":"CompanyA"},{"country":"GB","organization":"CompanyB"}]}`)}},
		{"file, lists", []string{"--file", file(`{"countries":["JP","GB"],"organizations":["CompanyA","CompanyB"]}`)}},
		{"file, seed identifiers", []string{"--file", file(`{"allow":["JP.CompanyA","JP.CompanyB","GB.CompanyA","GB.CompanyB"]}`)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			code, out, errs := h.run(append([]string{"regulation", "set", "vm:" + vm1, "-o", "json"}, tc.args...)...)
			if code != exitOK {
				t.Fatalf("exit %d: %s", code, errs)
			}
			var rec ledger.RegulationRecord
			if err := json.Unmarshal([]byte(out), &rec); err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(rec.Allow) != fmt.Sprint(want) || rec.Owner != "alice" || rec.Version != 1 {
				t.Fatalf("stored %+v", rec)
			}
			// The same again writes nothing.
			code, _, errs = h.run(append([]string{"regulation", "set", "vm:" + vm1}, tc.args...)...)
			if code != exitOK || !strings.Contains(errs, "unchanged") {
				t.Fatalf("second set: exit %d, %q", code, errs)
			}
		})
	}
}

func TestRegulationLifecycle(t *testing.T) {
	h := newHarness(t)
	steps := []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"regulation", "set", "--project", "p1", "--allow", "JP.All"}, exitOK, "JP.*"},
		{[]string{"regulation", "get", "project:p1"}, exitOK, "alice"},
		{[]string{"regulation", "set", "project:p1", "--allow", "GB.CompanyA"}, exitOK, "GB.CompanyA"},
		{[]string{"regulation", "history", "project:p1"}, exitOK, "v2 GB.CompanyA"},
		{[]string{"regulation", "delete", "project:p1"}, exitOK, "deleted"},
		{[]string{"regulation", "get", "project:p1"}, exitError, ""},
		{[]string{"regulation", "delete", "project:p1"}, exitError, ""},
		{[]string{"regulation", "history", "project:p1", "-o", "json"}, exitOK, `"op": "delete"`},
	}
	for i, s := range steps {
		code, out, errs := h.run(s.args...)
		if code != s.code || !strings.Contains(out, s.out) {
			t.Fatalf("step %d %v: exit %d (want %d), stdout %q, stderr %q", i, s.args, code, s.code, out, errs)
		}
	}
}

func TestBadInput(t *testing.T) {
	closed := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		return addr
	}()
	tests := []struct {
		name string
		env  map[string]string
		nova bool
		args []string
		code int
		msg  string
	}{
		{name: "no command", args: nil, code: exitUsage, msg: "usage"},
		{name: "unknown command", args: []string{"frobnicate"}, code: exitUsage, msg: "unknown command"},
		{name: "invalid country", args: []string{"regulation", "set", "vm:" + vm1, "--allow", "XX.CompanyA"}, code: exitUsage, msg: `"XX" is not an ISO 3166-1`},
		{name: "invalid organisation", args: []string{"regulation", "set", "vm:" + vm1, "--allow", "JP.Comp any"}, code: exitUsage, msg: "outside [A-Za-z0-9._-]"},
		{name: "identifier without a dot", args: []string{"regulation", "set", "vm:" + vm1, "--allow", "JPCompanyA"}, code: exitUsage, msg: "CountryCode.OrganizationCode"},
		{name: "two forms", args: []string{"regulation", "set", "vm:" + vm1, "--allow", "JP.A", "--countries", "JP", "--organizations", "A"}, code: exitUsage, msg: "exactly one"},
		{name: "countries without organisations", args: []string{"regulation", "set", "vm:" + vm1, "--countries", "JP"}, code: exitUsage, msg: "go together"},
		{name: "no rules", args: []string{"regulation", "set", "vm:" + vm1}, code: exitUsage, msg: "exactly one"},
		{name: "unknown subject kind", args: []string{"regulation", "get", "tenant:x"}, code: exitUsage, msg: "unknown kind"},
		{name: "vm subject not a UUID", args: []string{"regulation", "set", "vm:not-a-uuid", "--allow", "JP.A"}, code: exitUsage, msg: "not a UUID"},
		{name: "unknown subject", args: []string{"regulation", "get", "vm:" + vm2}, code: exitError, msg: "not found"},
		{name: "unknown host", args: []string{"host", "get", "nowhere"}, code: exitError, msg: "not found"},
		{name: "bad host name", args: []string{"host", "get", "no where"}, code: exitUsage, msg: "outside"},
		{name: "no ledger", env: map[string]string{"LEDGERFENCE_LEDGER": ""}, args: []string{"host", "list"}, code: exitUsage, msg: "no ledger"},
		{name: "bad ledger", args: []string{"host", "list", "--ledger", "ftp://x"}, code: exitUsage, msg: "want the URL of a filterd"},
		{name: "bad output", args: []string{"host", "list", "-o", "yaml"}, code: exitUsage, msg: "want table or json"},
		{name: "fabric without settings", args: []string{"host", "list", "--ledger", "fabric"}, code: exitUsage, msg: "--ledger fabric needs --fabric-peer"},
		{name: "check without vm", args: []string{"check"}, code: exitUsage, msg: "--vm UUID is required"},
		{name: "migrate without credentials", args: []string{"migrate", "--vm", vm1, "--target", "gb-1"}, code: exitUsage, msg: "needs OpenStack credentials"},
		{name: "migrate live and cold", nova: true, args: []string{"migrate", "--vm", vm1, "--live", "--cold"}, code: exitUsage, msg: "not both"},
		{name: "migrate a server that does not exist", nova: true, args: []string{"migrate", "--vm", vm2, "--target", "gb-1"}, code: exitError, msg: "does not exist"},
		{name: "check a server that does not exist", nova: true, args: []string{"check", "--vm", vm2}, code: exitError, msg: "does not exist"},
		{name: "credentials without a password", env: map[string]string{"OS_AUTH_URL": "http://k/v3", "OS_USERNAME": "u"}, args: []string{"migrate", "--vm", vm1}, code: exitUsage, msg: "OS_PASSWORD"},
		{name: "verify without data", env: map[string]string{"LEDGERFENCE_DATA": ""}, args: []string{"verify"}, code: exitUsage, msg: "--data DIR"},
		{name: "verify an empty directory", args: []string{"verify", "--data", "/nonexistent"}, code: exitUsage, msg: "no embedded ledger"},
		{name: "unreachable ledger", args: []string{"regulation", "set", "vm:" + vm1, "--allow", "JP.CompanyA", "--ledger", "http://" + closed}, code: exitUnavailable, msg: "unavailable"},
		{name: "unreachable ledger, read", args: []string{"host", "list", "--ledger", "http://" + closed}, code: exitUnavailable, msg: "unavailable"},
		{name: "unreachable Keystone", env: map[string]string{"OS_AUTH_URL": "http://" + closed + "/v3", "OS_USERNAME": "u", "OS_PASSWORD": "p", "OS_PROJECT_NAME": "admin", "OS_USER_DOMAIN_NAME": "Default"}, args: []string{"check", "--vm", vm1, "--real-nova"}, code: exitUnavailable, msg: "Keystone"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			if tc.nova {
				h.withNova()
			}
			for k, v := range tc.env {
				h.env[k] = v
			}
			var code int
			var out, errs string
			if len(tc.args) > 0 && tc.args[len(tc.args)-1] == "--real-nova" {
				// Through the real gophercloud client.
				var ob, eb bytes.Buffer
				a := newApp(&ob, &eb, func(k string) string { return h.env[k] })
				code = a.run(context.Background(), tc.args[:len(tc.args)-1])
				out, errs = ob.String(), eb.String()
			} else {
				code, out, errs = h.run(tc.args...)
			}
			if code != tc.code {
				t.Fatalf("exit %d, want %d; stderr %q", code, tc.code, errs)
			}
			if !strings.Contains(errs, tc.msg) {
				t.Fatalf("stderr %q does not say %q", errs, tc.msg)
			}
			if tc.code != exitOK && tc.code != exitUsage || strings.HasPrefix(tc.name, "invalid") {
				if n := strings.Count(strings.TrimSpace(errs), "\n"); n > 1 {
					t.Errorf("error is not short: %q", errs)
				}
			}
			_ = out
			if len(h.nova.migrated) != 0 {
				t.Fatalf("a migration was asked for: %v", h.nova.migrated)
			}
			// Nothing was written.
			if _, err := os.Stat(filepath.Join(h.dir, embedded.FileName)); err == nil {
				l, err := embedded.Open(filepath.Join(h.dir, embedded.FileName))
				if err != nil {
					t.Fatal(err)
				}
				defer l.Close()
				if ht, _ := l.Height(context.Background()); ht != 0 {
					t.Fatalf("ledger height %d after bad input", ht)
				}
			}
		})
	}
}

var table4Hosts = []filter.Host{
	{Name: "de-1", Country: "DE", Organizations: []string{"CompanyA"}},
	{Name: "jp-c", Country: "JP", Organizations: []string{"CompanyC"}},
	{Name: "jp-1", Country: "JP", Organizations: []string{"CompanyA"}},
	{Name: "gb-1", Country: "GB", Organizations: []string{"CompanyA", "CompanyB"}},
}

func TestCheck(t *testing.T) {
	h := newHarness(t)
	h.seed(table4Hosts...)
	if code, _, errs := h.run("regulation", "set", "vm:"+vm1, "--countries", "JP,GB", "--organizations", "CompanyA,CompanyB"); code != 0 {
		t.Fatal(errs)
	}
	tests := []struct {
		name    string
		args    []string
		code    int
		verdict map[string]filter.Reason
	}{
		{"every host: seed Table 4", []string{"--vm", vm1}, exitDenied, map[string]filter.Reason{
			"de-1": filter.CountryNotAllowed, "jp-c": filter.OrganizationNotAllowed, "jp-1": "", "gb-1": ""}},
		{"compliant hosts only", []string{"--vm", vm1, "--host", "jp-1", "--host", "gb-1"}, exitOK, map[string]filter.Reason{"jp-1": "", "gb-1": ""}},
		{"unregistered host", []string{"--vm", vm1, "--host", "nowhere"}, exitDenied, map[string]filter.Reason{"nowhere": filter.HostUnregistered}},
		{"project regulation narrows", []string{"--vm", vm1, "--project", "p1", "--host", "jp-1,gb-1"}, exitDenied, map[string]filter.Reason{"jp-1": "", "gb-1": filter.CountryNotAllowed}},
		{"unregulated VM passes everywhere", []string{"--vm", vm2, "--host", "de-1"}, exitOK, map[string]filter.Reason{"de-1": ""}},
	}
	if code, _, errs := h.run("regulation", "set", "project:p1", "--allow", "JP.All"); code != 0 {
		t.Fatal(errs)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := h.run(append([]string{"check", "-o", "json"}, tc.args...)...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d: %s", code, tc.code, errs)
			}
			var res decide.Report
			if err := json.Unmarshal([]byte(out), &res); err != nil {
				t.Fatalf("%v: %q", err, out)
			}
			got := map[string]filter.Reason{}
			for _, r := range res.Verdicts {
				got[r.Host] = r.Reason
				if r.Allowed != (r.Reason == "") {
					t.Errorf("%s: allowed=%v reason=%q", r.Host, r.Allowed, r.Reason)
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.verdict) {
				t.Fatalf("verdicts %v, want %v", got, tc.verdict)
			}
		})
	}
	t.Run("table", func(t *testing.T) {
		_, out, _ := h.run("check", "--vm", vm1, "--host", "de-1")
		for _, s := range []string{"HOST", "COUNTRY", "ORGANIZATIONS", "VERDICT", "REASON", "de-1", "DE", "CompanyA", "denied", "country_not_allowed"} {
			if !strings.Contains(out, s) {
				t.Errorf("table lacks %q:\n%s", s, out)
			}
		}
	})
	t.Run("project from Nova", func(t *testing.T) {
		h.withNova()
		defer delete(h.env, "OS_AUTH_URL")
		code, out, _ := h.run("check", "--vm", vm1, "--host", "gb-1", "-o", "json")
		if code != exitDenied || !strings.Contains(out, `"project_id": "p1"`) {
			t.Fatalf("exit %d: %s", code, out)
		}
	})
}

func TestMigrate(t *testing.T) {
	h := newHarness(t)
	h.seed(table4Hosts...)
	h.withNova()
	h.run("regulation", "set", "vm:"+vm1, "--countries", "JP,GB", "--organizations", "CompanyA,CompanyB")

	t.Run("refuses a non-compliant target", func(t *testing.T) {
		code, _, errs := h.run("migrate", "--vm", vm1, "--target", "jp-c", "--wait")
		if code != exitDenied || !strings.Contains(errs, "organization_not_allowed") || !strings.Contains(errs, "no migration was asked for") {
			t.Fatalf("exit %d: %s", code, errs)
		}
		if len(h.nova.migrated) != 0 {
			t.Fatalf("migrations asked: %v", h.nova.migrated)
		}
	})
	t.Run("refuses when the ledger cannot be read", func(t *testing.T) {
		l, err := embedded.Open(filepath.Join(h.dir, embedded.FileName))
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close() // holds the file lock: the ledger is unavailable to ledgerctl
		code, _, errs := h.run("migrate", "--vm", vm1, "--target", "gb-1")
		if code != exitUnavailable || !strings.Contains(errs, "no migration was asked for") {
			t.Fatalf("exit %d: %s", code, errs)
		}
		if len(h.nova.migrated) != 0 {
			t.Fatalf("migrations asked: %v", h.nova.migrated)
		}
	})
	t.Run("compliant live migration", func(t *testing.T) {
		code, out, errs := h.run("migrate", "--vm", vm1, "--target", "gb-1", "--wait")
		if code != exitOK || !strings.Contains(out, "de-1 -> gb-1") || !strings.Contains(errs, "migration=running") {
			t.Fatalf("exit %d: %s %s", code, out, errs)
		}
		if fmt.Sprint(h.nova.migrated) != "[live gb-1]" {
			t.Fatalf("migrations asked: %v", h.nova.migrated)
		}
	})
	t.Run("cold migration without target", func(t *testing.T) {
		h.nova.migrated = nil
		code, out, errs := h.run("migrate", "--vm", vm1, "--cold", "-o", "json")
		if code != exitOK || !strings.Contains(out, `"requested": true`) || !strings.Contains(errs, "Nova's scheduler picks") ||
			!strings.Contains(errs, "compliant hosts besides gb-1: jp-1") {
			t.Fatalf("exit %d: %s %s", code, out, errs)
		}
		if fmt.Sprint(h.nova.migrated) != "[cold ]" {
			t.Fatalf("migrations asked: %v", h.nova.migrated)
		}
	})
	t.Run("failed migration", func(t *testing.T) {
		h.nova.fail, h.nova.cause = true, "Timed out during operation: cannot acquire state change lock"
		code, _, errs := h.run("migrate", "--vm", vm1, "--wait")
		if code != exitError || !strings.Contains(errs, "status error: Timed out") {
			t.Fatalf("exit %d: %s", code, errs)
		}
	})
	t.Run("no valid host", func(t *testing.T) {
		h.nova.fail, h.nova.cause = true, "No valid host was found. There are not enough hosts available."
		code, out, errs := h.run("migrate", "--vm", vm1, "--wait", "-o", "json")
		if code != exitDenied || !strings.Contains(errs, "refused by Nova's scheduler") || !strings.Contains(out, `"cause": "No valid host`) {
			t.Fatalf("exit %d: %s %s", code, out, errs)
		}
	})
}

func TestVerify(t *testing.T) {
	h := newHarness(t)
	h.seed(table4Hosts...)
	code, out, errs := h.run("verify")
	if code != exitOK || !strings.Contains(out, "ok: 4 entries, 4 hosts") {
		t.Fatalf("exit %d: %s %s", code, out, errs)
	}
	// Rewrite a host in the file behind the chain's back.
	path := filepath.Join(h.dir, embedded.FileName)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.LastIndex(data, []byte(`"country":"DE"`))
	if i < 0 {
		t.Fatal("record not found in the file")
	}
	copy(data[i:], `"country":"JP"`)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errs = h.run("verify", "-o", "json")
	if code != exitDenied || !strings.Contains(out, `"ok": false`) {
		t.Fatalf("tampered file: exit %d: %s %s", code, out, errs)
	}
}

// ledgerctl's settings come from flags, the environment and a --config
// file, in that order; a command's operands from the command line only.
func TestSettingsPrecedence(t *testing.T) {
	h := newHarness(t)
	h.seed(table4Hosts...)
	if code, _, errs := h.run("regulation", "set", "vm:"+vm1, "--countries", "JP,GB", "--organizations", "CompanyA,CompanyB"); code != 0 {
		t.Fatal(errs)
	}
	file := filepath.Join(t.TempDir(), "ledgerctl.yaml")
	if err := os.WriteFile(file, []byte("ledger: embedded\ndata: "+h.dir+"\noutput: json\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	h.env = map[string]string{"LEDGERFENCE_CONFIG": file, "USER": "alice", "LEDGERFENCE_HOST": "jp-1"}
	// The file's output (json) and ledger; LEDGERFENCE_HOST is not --host.
	code, out, errs := h.run("check", "--vm", vm1)
	var res decide.Report
	if err := json.Unmarshal([]byte(out), &res); err != nil || len(res.Verdicts) != len(table4Hosts) {
		t.Fatalf("exit %d, %d verdicts (%v): %s %s", code, len(res.Verdicts), err, out, errs)
	}
	// The environment over the file, the flag over both.
	h.env["LEDGERFENCE_OUTPUT"] = "table"
	if _, out, _ := h.run("check", "--vm", vm1, "--host", "jp-1"); !strings.Contains(out, "VERDICT") {
		t.Errorf("LEDGERFENCE_OUTPUT=table over the file's json: %s", out)
	}
	if _, out, _ := h.run("check", "--vm", vm1, "--host", "jp-1", "-o", "json"); !strings.HasPrefix(strings.TrimSpace(out), "{") {
		t.Errorf("-o json over LEDGERFENCE_OUTPUT=table: %s", out)
	}
	h.env["LEDGERFENCE_TIMEOUT"] = "soon"
	if code, _, errs := h.run("check", "--vm", vm1); code != exitUsage || !strings.Contains(errs, "not a duration") {
		t.Errorf("a bad LEDGERFENCE_TIMEOUT: exit %d, %s", code, errs)
	}
}
