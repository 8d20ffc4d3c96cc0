package main

import (
	"encoding/json"
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

// A placement recorded by the recorder (Nova's word) that the host's agent
// does not confirm within --witness-bound is a discrepancy: counted on
// /metrics; one it confirms is not. The residency report over REST shows
// the intervals and the violation.
func TestDiscrepanciesAndTheResidencyReport(t *testing.T) {
	cfg := testConfig(t)
	cfg.WitnessBound = time.Second
	if err := os.MkdirAll(cfg.Data, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(cfg.Data, tokens.FileName)
	issue := func(id access.Identity) string {
		s, _, err := tokens.Issue(path, id, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	recorder := issue(access.Identity{ID: "recorder-1", Role: access.RoleRecorder})
	agent2 := issue(access.Identity{ID: "hostagent-hm2", Role: access.RoleHostAgent, Host: "hm2"})
	client := &http.Client{Timeout: 10 * time.Second}
	base := started(t, cfg, client, "http")
	for _, h := range []struct{ name, body string }{
		{"hm1", `{"country": "JP", "organizations": ["CompanyA"]}`},
		{"hm2", `{"country": "JP", "organizations": ["CompanyA"]}`},
		{"hm3", `{"country": "DE", "organizations": ["CompanyA"]}`},
	} {
		if resp, body := call(t, client, http.MethodPut, base+"/v1/hosts/"+h.name, "s3cret", h.body); resp.StatusCode != http.StatusOK {
			t.Fatalf("PUT host %s: %d %s", h.name, resp.StatusCode, body)
		}
	}
	const vm = "6f1c0d3e-8b2a-4c1d-9e7f-0a1b2c3d4e5f"
	if resp, body := call(t, client, http.MethodPut, base+"/v1/regulations/vm:"+vm, "s3cret", `{"allow": ["JP.CompanyA"]}`); resp.StatusCode != http.StatusOK {
		t.Fatalf("PUT regulation: %d %s", resp.StatusCode, body)
	}
	t0 := time.Now().UTC().Add(-time.Minute)
	record := func(token string, p ledger.Placement) {
		t.Helper()
		b, _ := json.Marshal(p)
		if resp, body := call(t, client, http.MethodPost, base+"/v1/placements", token, string(b)); resp.StatusCode != http.StatusOK {
			t.Fatalf("POST placement %+v: %d %s", p, resp.StatusCode, body)
		}
	}
	// Nova: boot on hm1 (never confirmed), a move to hm2 (confirmed), a
	// forced move to hm3 (forbidden; never confirmed).
	record(recorder, ledger.Placement{VM: vm, Host: "hm1", Op: ledger.OpBoot, At: t0, Witness: ledger.WitnessNova, Ref: "m1"})
	record(recorder, ledger.Placement{VM: vm, Host: "hm2", Op: ledger.OpLiveMigration, At: t0.Add(10 * time.Second), Witness: ledger.WitnessNova, Ref: "m2"})
	record(agent2, ledger.Placement{VM: vm, Host: "hm2", Op: ledger.OpObserved, At: t0.Add(10*time.Second + 500*time.Millisecond), Witness: ledger.WitnessHostAgent, Ref: "a1"})
	record(recorder, ledger.Placement{VM: vm, Host: "hm3", Op: ledger.OpLiveMigration, At: t0.Add(20 * time.Second), Witness: ledger.WitnessNova, Ref: "m3"})
	// A placement of a move filterd decided on names that decision.
	wh := `{"spec": {"nova_object.name": "RequestSpec", "nova_object.data": {"instance_uuid": "` + strings.ToUpper(vm) + `"}},
	  "context": {"request_id": "req-move-4"}, "hosts": [{"host": "hm1"}, {"host": "hm2"}]}`
	resp, _ := call(t, client, http.MethodPost, base+"/scheduler/nova/external", "", wh)
	decision := resp.Header.Get("X-Ledgerfence-Decision")
	b, _ := json.Marshal(ledger.Placement{VM: vm, Host: "hm1", Op: ledger.OpLiveMigration, At: t0.Add(30 * time.Second),
		Witness: ledger.WitnessNova, Ref: "m4", RequestID: "req-move-4"})
	resp, body := call(t, client, http.MethodPost, base+"/v1/placements", recorder, string(b))
	var rec ledger.PlacementRecord
	if err := json.Unmarshal([]byte(body), &rec); err != nil || resp.StatusCode != http.StatusOK || decision == "" || rec.DecisionID != decision {
		t.Fatalf("placement of a decided move: %d %s; want decision %q", resp.StatusCode, body, decision)
	}
	// The host agent of hm2 may not speak for hm1.
	b, _ = json.Marshal(ledger.Placement{VM: vm, Host: "hm1", Op: ledger.OpObserved, At: t0, Witness: ledger.WitnessHostAgent, Ref: "a2"})
	if resp, _ := call(t, client, http.MethodPost, base+"/v1/placements", agent2, string(b)); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("hm2's agent recording hm1: %d, want 403", resp.StatusCode)
	}

	deadline := time.Now().Add(20 * time.Second)
	for {
		_, metrics := call(t, client, http.MethodGet, base+"/metrics", "", "")
		if strings.Contains(metrics, `ledgerfence_placement_discrepancies_total{kind="not_confirmed"} 3`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no 3 discrepancies after 20 s:\n%s", grepLines(metrics, "discrepanc"))
		}
		time.Sleep(100 * time.Millisecond)
	}

	// A report leaves out the placements of its last 5 seconds (api.Settle).
	var rep struct {
		Intervals []struct {
			Host      string
			Violation bool
			Witnesses []string
		}
		Violations int
	}
	for deadline := time.Now().Add(20 * time.Second); len(rep.Intervals) < 4 && time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		var resp *http.Response
		resp, body = call(t, client, http.MethodGet, base+"/v1/residency/vm/"+vm+"?from="+t0.Add(-time.Hour).Format(time.RFC3339), "", "")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET residency: %d %s", resp.StatusCode, body)
		}
		if err := json.Unmarshal([]byte(body), &rep); err != nil {
			t.Fatal(err)
		}
	}
	if len(rep.Intervals) != 4 || rep.Violations != 1 || rep.Intervals[2].Host != "hm3" || !rep.Intervals[2].Violation ||
		len(rep.Intervals[1].Witnesses) != 2 {
		t.Fatalf("report: %s", body)
	}
	if resp, body := call(t, client, http.MethodGet, base+"/v1/residency/vm/"+vm+"?from=2026-12-01T00:00:00Z&to=2026-11-01T00:00:00Z", "", ""); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("a backwards period: %d %s", resp.StatusCode, body)
	}
	if resp, body := call(t, client, http.MethodGet, base+"/v1/residency/vm/"+vm+"?format=html&from="+t0.Add(-time.Hour).Format(time.RFC3339), "", ""); resp.StatusCode != http.StatusOK ||
		!strings.Contains(body, "violation") || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'none'") {
		t.Fatalf("the page: %d %s", resp.StatusCode, body)
	}
}

func grepLines(s, word string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, word) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
