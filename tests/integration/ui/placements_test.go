package ui

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/ledgerfence/ledgerfence/pkg/ledger"
	"github.com/ledgerfence/ledgerfence/pkg/residency"
)

// recordPlacement records a placement over REST (POST /v1/placements) with
// a writer token and returns the verdict the ledger recorded with it.
func recordPlacement(t *testing.T, base, token string, p ledger.Placement) *ledger.PlacementVerdict {
	t.Helper()
	resp := send(t, http.MethodPost, base+"/v1/placements", token, p)
	defer resp.Body.Close()
	var rec ledger.PlacementRecord
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&rec) != nil {
		t.Fatalf("POST /v1/placements (%s %s on %s): %d", p.Witness, p.Op, p.Host, resp.StatusCode)
	}
	return rec.Verdict
}

// A VM's placements recorded on a real filterd, as the recorder (Nova's
// word) and the host agents (their own word) record them, drawn by the
// page: booted on hm1 (allowed, both witnesses), live-migrated to hm5
// (allowed; hm5's agent never confirms it: a discrepancy), forced onto hm3
// in DE (a violation: country_not_allowed, both witnesses).
func TestResidencyTimeline(t *testing.T) {
	exe := chromium(t)
	base, data := filterd(t)
	seed(t, base, data)
	recorder := issueToken(t, data, "recorder", "recorder-ui")
	agent := map[string]string{}
	for _, h := range []string{"hm1", "hm3"} {
		agent[h] = issueToken(t, data, "hostagent", "agent-"+h, h)
	}
	now := time.Now().UTC().Truncate(time.Second)
	t0 := now.Add(-3 * time.Hour)
	place := func(token, witness, host, op string, at time.Duration, ref string) *ledger.PlacementVerdict {
		return recordPlacement(t, base, token, ledger.Placement{VM: vm1, Project: "p-ui", Host: host, Op: op, At: t0.Add(at),
			Witness: witness, Ref: ref, RequestID: "req-" + ref})
	}
	if v := place(recorder, ledger.WitnessNova, "hm1", ledger.OpBoot, 0, "nova-1"); v == nil || !v.Allowed {
		t.Fatalf("boot on hm1: verdict %+v", v)
	}
	place(agent["hm1"], ledger.WitnessHostAgent, "hm1", ledger.OpObserved, 2*time.Minute, "hm1-sweep-1")
	place(recorder, ledger.WitnessNova, "hm5", ledger.OpLiveMigration, time.Hour, "nova-2")
	if v := place(recorder, ledger.WitnessNova, "hm3", ledger.OpLiveMigration, 2*time.Hour, "nova-3"); v == nil || v.Allowed || v.Reason != "country_not_allowed" {
		t.Fatalf("forced onto hm3: verdict %+v", v)
	}
	place(agent["hm3"], ledger.WitnessHostAgent, "hm3", ledger.OpObserved, 2*time.Hour+3*time.Minute, "hm3-sweep-1")
	recorded := time.Now()

	from, to := t0.Add(-time.Hour).Format(time.RFC3339), now.Format(time.RFC3339)
	ctx, con, poll := browser(t, exe)
	// A report leaves out what was recorded in its last residency's Settle
	// (5 s): the page is asked once the placements are that old.
	time.Sleep(time.Until(recorded.Add(6 * time.Second)))
	// The tab holds the read token already (TestAuditorsPage enters it in
	// the page's prompt): set on the page's origin, then the link an
	// auditor keeps, #vm=...&from=...&to=..., opens the timeline.
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/ui/favicon.svg")); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`(() => { sessionStorage.setItem('ledgerfence.readToken', '`+readToken+`'); return true; })()`)); err != nil {
		t.Fatal(err)
	}
	link := base + "/ui/#vm=" + vm1 + "&from=" + from + "&to=" + to
	if err := chromedp.Do(ctx, chromedp.Navigate(link)); err != nil {
		t.Fatal(err)
	}
	poll("the timeline", `['ready', 'empty', 'error'].includes(document.getElementById('residency').dataset.state)`)
	got, err := chromedp.Run(ctx, chromedp.Evaluate[struct {
		State  string   `json:"state"`
		Bars   []string `json:"bars"`
		Rows   []string `json:"rows"`
		Status string   `json:"status"`
		Table  string   `json:"table"`
	}](`({
	  state: document.getElementById('residency').dataset.state,
	  bars: [...document.querySelectorAll('#timeline-svg rect.bar')].map((r) => r.dataset.host + ':' + r.dataset.state),
	  rows: [...document.querySelectorAll('#intervals-table tbody tr')].map((r) => r.dataset.host + ':' + r.dataset.state),
	  status: document.getElementById('residency-status').textContent,
	  table: (document.getElementById('intervals-table') || document.body).innerText,
	})`))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("timeline of a VM placed on a real filterd: %s; bars %v", got.Status, got.Bars)
	want := []string{"hm1:allowed", "hm5:discrepancy", "hm3:violation"}
	if got.State != "ready" || !slices.Equal(got.Bars, want) || !slices.Equal(got.Rows, want) {
		t.Fatalf("state %s, bars %v, rows %v; want %v; the page says %q", got.State, got.Bars, got.Rows, want, got.Status)
	}
	for _, s := range []string{"1 violation", "1 discrepancy", "from 5 placements"} {
		if !strings.Contains(got.Status, s) {
			t.Errorf("status %q lacks %q", got.Status, s)
		}
	}
	for _, s := range []string{"country_not_allowed", "vm:" + vm1, residency.NotConfirmed, "recorder-ui", "req-nova-3"} {
		if !strings.Contains(got.Table, s) {
			t.Errorf("the intervals' table lacks %q", s)
		}
	}
	for _, m := range con.take() {
		if isError(m) {
			t.Errorf("console %s (%s:%d)", m, m.URL, m.Line)
		}
	}
	screenshot(t, ctx, "residency.png")
}
