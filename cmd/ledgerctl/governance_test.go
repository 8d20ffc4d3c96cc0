package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
)

// The governance commands on the embedded ledger, as its operator: a
// registry takes effect at once (one organisation); hosts wait for
// attestation until another identity attests them; a regulation that
// requires attested facts denies the claimed host in `check`.
func TestGovernanceCommands(t *testing.T) {
	h := newHarness(t)
	h.seed(filter.Host{Name: "jp-1", Country: "JP", Organizations: []string{"CompanyA"}},
		filter.Host{Name: "jp-2", Country: "JP", Organizations: []string{"CompanyA"}})

	reg := filepath.Join(t.TempDir(), "registry.json")
	os.WriteFile(reg, []byte(`{"members":{"":{"organizations":["CompanyA","CompanyB"]}},"require_attested":false}`), 0o600)
	code, out, errs := h.run("registry", "propose", "--file", reg, "-o", "json")
	var ps []ledger.ProposalRecord
	if code != exitOK || json.Unmarshal([]byte(out), &ps) != nil || len(ps) != 1 || ps[0].State != ledger.ProposalApplied {
		t.Fatalf("registry propose: exit %d %s %s", code, out, errs)
	}
	if code, out, _ := h.run("registry", "show"); code != exitOK || !strings.Contains(out, "registry version 1") || !strings.Contains(out, "CompanyA,CompanyB") {
		t.Fatalf("registry show: exit %d %s", code, out)
	}
	// A bad registry file changes nothing.
	os.WriteFile(reg, []byte(`{"members":{"":{"organizations":["Company A"]}}}`), 0o600)
	if code, _, errs := h.run("registry", "propose", "--file", reg); code != exitUsage {
		t.Fatalf("a bad registry: exit %d %s", code, errs)
	}

	if code, out, _ := h.run("host", "pending"); code != exitOK || !strings.Contains(out, "jp-1") || !strings.Contains(out, "jp-2") {
		t.Fatalf("host pending: exit %d %s", code, out)
	}
	// The facts attested must be the record's.
	if code, _, errs := h.run("host", "attest", "jp-1", "--country", "GB", "--organizations", "CompanyA"); code != exitUsage || !strings.Contains(errs, "attest the facts as they are now") {
		t.Fatalf("attesting other facts: exit %d %s", code, errs)
	}
	if code, _, errs := h.run("host", "attest", "jp-1"); code != exitUsage {
		t.Fatalf("attesting without naming the facts: exit %d %s", code, errs)
	}
	if code, out, errs := h.run("host", "attest", "jp-1", "--country", "jp", "--organizations", "CompanyA"); code != exitOK || !strings.Contains(out, "attested") {
		t.Fatalf("host attest: exit %d %s %s", code, out, errs)
	}
	if code, out, _ := h.run("host", "pending"); code != exitOK || strings.Contains(out, "jp-1") || !strings.Contains(out, "jp-2") {
		t.Fatalf("host pending after the attestation: exit %d %s", code, out)
	}
	if code, out, _ := h.run("host", "history", "jp-1"); code != exitOK || !strings.Contains(out, "attested JP CompanyA by alice") {
		t.Fatalf("host history: exit %d %s", code, out)
	}

	if code, out, errs := h.run("regulation", "set", "vm:"+vm1, "--allow", "JP.CompanyA", "--require-attested"); code != exitOK {
		t.Fatalf("regulation set --require-attested: exit %d %s %s", code, out, errs)
	}
	code, out, _ = h.run("check", "--vm", vm1, "--host", "jp-1", "--host", "jp-2", "-o", "json")
	var rep struct {
		Verdicts []struct {
			Host, Reason, Facts string
			Allowed             bool
		}
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || len(rep.Verdicts) != 2 {
		t.Fatalf("check: exit %d %s: %v", code, out, err)
	}
	if v := rep.Verdicts[0]; !v.Allowed || v.Facts != "attested" {
		t.Errorf("jp-1: %+v, want allowed, attested", v)
	}
	if v := rep.Verdicts[1]; v.Allowed || v.Reason != string(filter.HostUnattested) || v.Facts != "claimed" {
		t.Errorf("jp-2: %+v, want denied host_unattested, claimed", v)
	}

	if code, out, errs := h.run("project", "bind", "P-1"); code != exitOK || !strings.Contains(out, "P-1") {
		t.Fatalf("project bind: exit %d %s %s", code, out, errs)
	}
	if code, out, _ := h.run("project", "show", "project:P-1"); code != exitOK || !strings.Contains(out, "P-1") {
		t.Fatalf("project show: exit %d %s", code, out)
	}
	if code, _, errs := h.run("project", "show", "p 1"); code != exitUsage {
		t.Fatalf("a bad project id: exit %d %s", code, errs)
	}
	if code, out, _ := h.run("proposal", "list"); code != exitOK || !strings.Contains(out, "ID") {
		t.Fatalf("proposal list: exit %d %s", code, out)
	}
}
