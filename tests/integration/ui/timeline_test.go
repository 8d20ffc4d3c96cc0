package ui

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/ledgerfence/ledgerfence/pkg/api/ui"
	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
	"github.com/ledgerfence/ledgerfence/pkg/residency"
)

// timelinePlacements: VM1 booted on hm1 (allowed, both witnesses), live
// migrated to hm5 (allowed, never confirmed by hm5's agent: a
// discrepancy), then forced onto hm3 in DE (a violation, both witnesses).
func timelinePlacements(vm string, t0 time.Time) []ledger.PlacementRecord {
	reg := []ledger.RegulationVersion{{Subject: filter.Subject("vm:" + vm), Version: 1}}
	allowed := func(country string, orgs ...string) *ledger.PlacementVerdict {
		return &ledger.PlacementVerdict{Allowed: true, Regulations: reg, Country: country, Organizations: orgs}
	}
	denied := &ledger.PlacementVerdict{Reason: filter.CountryNotAllowed, Regulation: filter.Subject("vm:" + vm),
		Detail: "country DE is not allowed by vm:" + vm, Regulations: reg, Country: "DE", Organizations: []string{"CompanyA"}}
	rec := func(witness, host, op string, at time.Duration, v *ledger.PlacementVerdict, ref string) ledger.PlacementRecord {
		role := "recorder"
		if witness == ledger.WitnessHostAgent {
			role = "hostagent"
		}
		return ledger.PlacementRecord{
			Placement: ledger.Placement{VM: vm, Host: host, Op: op, At: t0.Add(at), Witness: witness, Ref: ref, RequestID: "req-" + ref},
			Verdict:   v, Writer: ledger.Writer{ID: role + "-1", Role: role}, TxID: "tx-" + ref, RecordedAt: t0.Add(at + time.Second),
		}
	}
	return []ledger.PlacementRecord{
		rec(ledger.WitnessNova, "hm1", ledger.OpBoot, 0, allowed("JP", "CompanyA", "CompanyB"), "n1"),
		rec(ledger.WitnessHostAgent, "hm1", ledger.OpObserved, 2*time.Minute, allowed("JP", "CompanyA", "CompanyB"), "a1"),
		rec(ledger.WitnessNova, "hm5", ledger.OpLiveMigration, 6*time.Hour, allowed("GB", "CompanyB"), "n2"),
		rec(ledger.WitnessNova, "hm3", ledger.OpLiveMigration, 12*time.Hour, denied, "n3"),
		rec(ledger.WitnessHostAgent, "hm3", ledger.OpObserved, 12*time.Hour+3*time.Minute, denied, "a3"),
	}
}

// The timeline draws a report's intervals, the violation and the
// discrepancy marked, and lists them with their evidence. The report is
// residency.Build's, served by a stand-in for filterd's REST API with the
// page's own handler: this checks the drawing, not the ledger (TestAuditorsPage
// runs the page against a real filterd).
func TestTimelineDrawsAReport(t *testing.T) {
	exe := chromium(t)
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	ps := timelinePlacements(vm1, t0)
	mux := http.NewServeMux()
	mux.Handle(ui.Prefix, ui.Handler())
	writeJSON := func(w http.ResponseWriter, v any) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(v)
	}
	mux.HandleFunc("GET /v1/ledger", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, map[string]any{"backend": "stand-in", "height": 5})
	})
	mux.HandleFunc("GET /v1/hosts", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, map[string]any{"hosts": []any{}})
	})
	mux.HandleFunc("GET /v1/decisions", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, map[string]any{"decisions": []any{}})
	})
	var asked []string
	mux.HandleFunc("GET /v1/residency/vm/{id}", func(w http.ResponseWriter, r *http.Request) {
		asked = append(asked, r.URL.RawQuery)
		from, err1 := time.Parse(time.RFC3339, r.URL.Query().Get("from"))
		to, err2 := time.Parse(time.RFC3339, r.URL.Query().Get("to"))
		if err1 != nil || err2 != nil {
			w.WriteHeader(http.StatusBadRequest)
			writeJSON(w, map[string]string{"error": "from and to, please"})
			return
		}
		q, err := residency.Query{Subject: filter.Subject("vm:" + r.PathValue("id")), From: from, To: to}.Normalize()
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			writeJSON(w, map[string]string{"error": err.Error()})
			return
		}
		writeJSON(w, residency.Build(q, ps, to))
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	ctx, con, poll := browser(t, exe)
	// A link an auditor keeps: #vm=...&from=...&to=... opens the timeline.
	link := srv.URL + "/ui/#vm=" + vm1 + "&from=2026-11-01T00:00:00Z&to=2026-11-02T00:00:00Z"
	if err := chromedp.Do(ctx, chromedp.Navigate(link)); err != nil {
		t.Fatal(err)
	}
	poll("the timeline", `document.getElementById('residency').dataset.state === 'ready'`)
	type bar struct {
		Host  string  `json:"host"`
		State string  `json:"state"`
		Class string  `json:"class"`
		X     float64 `json:"x"`
		W     float64 `json:"w"`
	}
	got, err := chromedp.Run(ctx, chromedp.Evaluate[struct {
		Bars   []bar    `json:"bars"`
		Rows   []string `json:"rows"`
		Status string   `json:"status"`
		Shown  bool     `json:"shown"`
		Legend string   `json:"legend"`
		Table  string   `json:"table"`
	}](`({
	  bars: [...document.querySelectorAll('#timeline-svg rect.bar')].map((r) => ({host: r.dataset.host, state: r.dataset.state,
	    class: r.getAttribute('class'), x: Number(r.getAttribute('x')), w: Number(r.getAttribute('width'))})),
	  rows: [...document.querySelectorAll('#intervals-table tbody tr')].map((r) => r.dataset.host + ':' + r.dataset.state),
	  status: document.getElementById('residency-status').textContent,
	  shown: !document.getElementById('timeline').hidden,
	  table: document.getElementById('intervals-table').innerText,
	})`))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("timeline: %+v", got.Bars)
	if len(asked) != 1 || !strings.Contains(asked[0], "from=2026-11-01T00%3A00%3A00Z") || !strings.Contains(asked[0], "to=2026-11-02T00%3A00%3A00Z") {
		t.Errorf("the page asked for %v", asked)
	}
	if want := []string{"hm1:allowed", "hm5:discrepancy", "hm3:violation"}; !slices.Equal(got.Rows, want) {
		t.Errorf("intervals listed %v, want %v", got.Rows, want)
	}
	if len(got.Bars) != 3 || !got.Shown {
		t.Fatalf("bars %+v (shown %v)", got.Bars, got.Shown)
	}
	for i, want := range []struct{ host, state string }{{"hm1", "allowed"}, {"hm5", "discrepancy"}, {"hm3", "violation"}} {
		b := got.Bars[i]
		if b.Host != want.host || b.State != want.state || !strings.Contains(b.Class, want.state) {
			t.Errorf("bar %d: %+v, want %s %s", i, b, want.host, want.state)
		}
	}
	// The bars follow time: 0-6 h, 6-12 h, 12-24 h of a day.
	b := got.Bars
	if !(b[0].X < b[1].X && b[1].X < b[2].X) || b[2].W < 1.5*b[0].W || b[0].W < 0.9*b[1].W || b[0].W > 1.1*b[1].W {
		t.Errorf("bars not in proportion to time: %+v", b)
	}
	for _, want := range []string{"1 violation", "1 discrepancy", "3 intervals"} {
		if !strings.Contains(got.Status, want) {
			t.Errorf("status %q lacks %q", got.Status, want)
		}
	}
	for _, want := range []string{"country_not_allowed", "tx-n3", "tx-a3", residency.NotConfirmed, "vm:" + vm1 + " v1", "hostagent"} {
		if !strings.Contains(got.Table, want) {
			t.Errorf("the intervals' table lacks %q", want)
		}
	}
	for _, m := range con.take() {
		if isError(m) {
			t.Errorf("console %s (%s:%d)", m, m.URL, m.Line)
		}
	}
	screenshot(t, ctx, "timeline.png")
}
