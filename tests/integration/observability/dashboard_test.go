package observability

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// knownMetrics are the metrics of filterd, hostagent and pkg/notify that
// the dashboard and the alert rules may query.
var knownMetrics = map[string]bool{
	"ledgerfence_webhook_requests_total":           true,
	"ledgerfence_hosts_denied_total":               true,
	"ledgerfence_webhook_request_duration_seconds": true,
	"ledgerfence_ledger_query_duration_seconds":    true,
	"ledgerfence_ledger_query_errors_total":        true,
	"ledgerfence_ledger_up":                        true,
	"ledgerfence_cache_entries":                    true,
	"ledgerfence_cache_age_seconds":                true,
	"ledgerfence_event_stream_up":                  true,
	"ledgerfence_event_stream_lag_seconds":         true,
	"ledgerfence_hostagent_violations":             true,
	"ledgerfence_notify_published_total":           true,
	"ledgerfence_notify_dropped_total":             true,
	"ledgerfence_notify_queue_length":              true,
	"ledgerfence_notify_connected":                 true,
	"ledgerfence_limit_exceeded_total":             true,
	"ledgerfence_cache_stale":                      true,
	"ledgerfence_webhook_buffered_bytes":           true,
	"ledgerfence_webhook_in_flight":                true,
	"ledgerfence_event_streams":                    true,
}

var metricName = regexp.MustCompile(`ledgerfence_[a-z_]+`)

type panel struct {
	ID      int    `json:"id"`
	Type    string `json:"type"`
	Title   string `json:"title"`
	GridPos struct {
		H, W, X, Y int
	} `json:"gridPos"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
	Panels []panel `json:"panels"`
}

// TestDashboard checks deploy/grafana/ledgerfence.json: valid JSON, every
// query non-empty and about a known ledgerfence metric, panels that neither
// share an id nor overlap.
func TestDashboard(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy", "grafana", "ledgerfence.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		UID        string  `json:"uid"`
		Title      string  `json:"title"`
		Panels     []panel `json:"panels"`
		Templating struct {
			List []struct {
				Name string `json:"name"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("dashboard is not valid JSON: %v", err)
	}
	if dash.UID == "" || dash.Title == "" {
		t.Errorf("uid %q title %q", dash.UID, dash.Title)
	}
	vars := map[string]bool{}
	for _, v := range dash.Templating.List {
		vars[v.Name] = true
	}
	if !vars["datasource"] || !vars["instance"] {
		t.Errorf("template variables %v, want datasource and instance", vars)
	}

	var all []panel
	for _, p := range dash.Panels {
		all = append(all, p)
		all = append(all, p.Panels...)
	}
	ids := map[int]string{}
	seen := map[string]bool{}
	queries := 0
	for _, p := range all {
		if prev, dup := ids[p.ID]; dup || p.ID == 0 {
			t.Errorf("panel %q: id %d also used by %q", p.Title, p.ID, prev)
		}
		ids[p.ID] = p.Title
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			queries++
			expr := strings.TrimSpace(tg.Expr)
			if expr == "" || !strings.Contains(expr, "ledgerfence_") {
				t.Errorf("panel %q query %s: %q is empty or not about ledgerfence", p.Title, tg.RefID, expr)
			}
			if strings.Count(expr, "(") != strings.Count(expr, ")") || strings.Count(expr, "{") != strings.Count(expr, "}") {
				t.Errorf("panel %q query %s: unbalanced brackets in %q", p.Title, tg.RefID, expr)
			}
			for _, m := range metricName.FindAllString(expr, -1) {
				base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(m, "_bucket"), "_sum"), "_count")
				if !knownMetrics[base] {
					t.Errorf("panel %q queries unknown metric %s", p.Title, m)
				}
				seen[base] = true
			}
		}
	}
	if queries == 0 {
		t.Fatal("no queries")
	}
	for _, want := range []string{"ledgerfence_webhook_requests_total", "ledgerfence_hosts_denied_total",
		"ledgerfence_webhook_request_duration_seconds", "ledgerfence_ledger_up", "ledgerfence_notify_dropped_total"} {
		if !seen[want] {
			t.Errorf("no panel shows %s", want)
		}
	}
	for i, a := range all {
		for _, b := range all[i+1:] {
			ga, gb := a.GridPos, b.GridPos
			if ga.X < gb.X+gb.W && gb.X < ga.X+ga.W && ga.Y < gb.Y+gb.H && gb.Y < ga.Y+ga.H {
				t.Errorf("panels %q and %q overlap", a.Title, b.Title)
			}
		}
		if a.GridPos.W <= 0 || a.GridPos.H <= 0 || a.GridPos.X+a.GridPos.W > 24 {
			t.Errorf("panel %q has grid position %+v", a.Title, a.GridPos)
		}
	}
}

// TestRulesUseKnownMetrics keeps the alert rules on the metrics the code
// exports.
func TestRulesUseKnownMetrics(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy", "prometheus", "ledgerfence.rules.yml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range metricName.FindAllString(string(data), -1) {
		if base := strings.TrimSuffix(m, "_bucket"); !knownMetrics[base] {
			t.Errorf("the rules use unknown metric %s", m)
		}
	}
}
