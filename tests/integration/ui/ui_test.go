// Package ui drives the auditors' page (/ui/) of a real filterd on the
// embedded ledger in Debian's headless Chromium: hosts in several countries
// and a few webhook decisions, some denied, then the page loaded with the
// read token entered in its prompt. It asserts the countries shaded on the
// map and their hosts listed (attested or claimed), the denials by reason
// and outcome, the residency timeline of a VM with no placement and of one
// whose placements the recorder and host agents recorded over REST (the
// violation and the discrepancy marked), and that the page wrote no console
// error and threw no exception. Full-page screenshots (ui.png,
// residency.png, timeline.png) are saved in $LEDGERFENCE_ARTIFACTS (a
// temporary directory, logged, when unset).
//
// Without chromium the test is skipped, unless LEDGERFENCE_REQUIRE_INTEGRATION
// is 1: then it fails.
package ui

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/ledgerfence/ledgerfence/tests/integration/filterdtest"
)

const (
	adminToken = filterdtest.AdminToken
	readToken  = "ui-test-read-token"
	vm1        = "6f1e3c1a-7f43-4c57-9a39-2f6a2d1b0c01" // JP and GB, CompanyA and CompanyB
	vm2        = "6f1e3c1a-7f43-4c57-9a39-2f6a2d1b0c02" // JP CompanyA, attested facts only
	vmNone     = "6f1e3c1a-7f43-4c57-9a39-2f6a2d1b0c99" // never placed
)

// hosts seeded, by name: country and organisations.
var hosts = []struct {
	name, country string
	orgs          []string
	attested      bool
}{
	{"hm1", "JP", []string{"CompanyA", "CompanyB"}, true},
	{"hm2", "JP", []string{"CompanyA"}, false},
	{"hm3", "DE", []string{"CompanyA"}, false},
	{"hm4", "GB", []string{"CompanyC"}, false},
	{"hm5", "GB", []string{"CompanyB"}, true},
	{"hm6", "US", []string{"CompanyD"}, false},
	{"hm7", "FR", []string{"CompanyA"}, true},
}

var bin string // directory of the built commands

func TestMain(m *testing.M) {
	dir, err := filterdtest.Build("filterd", "ledgerctl")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// chromium finds Debian's chromium (or $LEDGERFENCE_CHROMIUM); without it
// the test skips, or fails when integration tests are required.
func chromium(t *testing.T) string {
	t.Helper()
	names := []string{"chromium", "chromium-browser"}
	if p := os.Getenv("LEDGERFENCE_CHROMIUM"); p != "" {
		names = []string{p}
	}
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	if os.Getenv("LEDGERFENCE_REQUIRE_INTEGRATION") == "1" {
		t.Fatal("chromium is not installed (apt-get install chromium, or scripts/install-deps.sh) and LEDGERFENCE_REQUIRE_INTEGRATION=1")
	}
	t.Skip("chromium is not installed; apt-get install chromium (set LEDGERFENCE_REQUIRE_INTEGRATION=1 to fail instead)")
	return ""
}

var (
	artifactsOnce sync.Once
	artifactsDir  string
	artifactsErr  error
)

// artifacts is the directory of the tests' artifacts: $LEDGERFENCE_ARTIFACTS,
// or one temporary directory (kept) for the whole run.
func artifacts(t *testing.T) string {
	t.Helper()
	artifactsOnce.Do(func() {
		artifactsDir = os.Getenv("LEDGERFENCE_ARTIFACTS")
		if artifactsDir == "" {
			artifactsDir, artifactsErr = os.MkdirTemp("", "ledgerfence-ui-artifacts")
			return
		}
		artifactsErr = os.MkdirAll(artifactsDir, 0o755)
	})
	if artifactsErr != nil {
		t.Fatal(artifactsErr)
	}
	return artifactsDir
}

// filterd starts a filterd (filterdtest's admin token) with a read token
// and returns its base URL and data directory.
func filterd(t *testing.T) (string, string) {
	t.Helper()
	f := filterdtest.Start(t, bin, filterdtest.Options{Env: []string{"LEDGERFENCE_READ_TOKEN=" + readToken}})
	return f.URL, f.Data
}

// issueToken issues a writer token of role named id (a host agent's bound
// to host) for the embedded ledger in data.
func issueToken(t *testing.T, data, role, id string, host ...string) string {
	t.Helper()
	return filterdtest.IssueToken(t, bin, data, role, id, host...)
}

func send(t *testing.T, method, url, token string, body any) *http.Response {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(method, url, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func mustSend(t *testing.T, method, url, token string, body any) {
	t.Helper()
	resp := send(t, method, url, token, body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s %s: %d", method, url, resp.StatusCode)
	}
}

// webhook asks as Nova does and returns the hosts allowed.
func webhook(t *testing.T, base, vm string, candidates ...string) []string {
	t.Helper()
	hs := []map[string]string{}
	for _, h := range candidates {
		hs = append(hs, map[string]string{"host": h, "hypervisor_hostname": h})
	}
	resp := send(t, http.MethodPost, base+"/scheduler/nova/external", "", map[string]any{
		"spec": map[string]any{"nova_object.name": "RequestSpec", "nova_object.data": map[string]any{
			"instance_uuid": vm, "project_id": "p-ui"}},
		"context": map[string]any{"request_id": "req-ui"},
		"hosts":   hs,
	})
	defer resp.Body.Close()
	var out struct {
		Hosts []string `json:"hosts"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out.Hosts
}

// seed registers the hosts (some attested by another identity), VM1's and
// VM2's regulations, and makes decisions: VM1 over the five seed hosts (hm3
// country_not_allowed, hm4 organization_not_allowed), VM1 with an
// unregistered host (host_unregistered), VM2 over JP's hosts with attested
// facts required (hm2 host_unattested), and a body that is not JSON
// (request_invalid).
func seed(t *testing.T, base, data string) {
	t.Helper()
	attestor := issueToken(t, data, "attestor", "attestor-ui")
	for _, h := range hosts {
		facts := map[string]any{"country": h.country, "organizations": h.orgs}
		mustSend(t, http.MethodPut, base+"/v1/hosts/"+h.name, adminToken, facts)
		if h.attested {
			mustSend(t, http.MethodPost, base+"/v1/hosts/"+h.name+"/attest", attestor, facts)
		}
	}
	mustSend(t, http.MethodPut, base+"/v1/regulations/vm:"+vm1, adminToken,
		map[string]any{"countries": []string{"JP", "GB"}, "organizations": []string{"CompanyA", "CompanyB"}})
	mustSend(t, http.MethodPut, base+"/v1/regulations/vm:"+vm2, adminToken,
		map[string]any{"allow": []string{"JP.CompanyA", "JP.CompanyB"}, "require_attested": true})
	if got := webhook(t, base, vm1, "hm1", "hm2", "hm3", "hm4", "hm5"); !slices.Equal(got, []string{"hm1", "hm2", "hm5"}) {
		t.Fatalf("VM1's webhook answer: %v", got)
	}
	if got := webhook(t, base, vm1, "hm1", "hm9"); !slices.Equal(got, []string{"hm1"}) {
		t.Fatalf("VM1 with an unregistered host: %v", got)
	}
	if got := webhook(t, base, vm2, "hm1", "hm2"); !slices.Equal(got, []string{"hm1"}) {
		t.Fatalf("VM2's webhook answer: %v", got)
	}
	if got := webhook(t, base, vm1, "hm1", "hm5"); !slices.Equal(got, []string{"hm1", "hm5"}) {
		t.Fatalf("VM1 allowed everywhere: %v", got)
	}
	resp, err := http.Post(base+"/scheduler/nova/external", "application/json", strings.NewReader("{not json"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}

// console collects what the page writes to the console.
type console struct {
	mu   sync.Mutex
	msgs []chromedp.ConsoleMessage
}

func (c *console) watch(ctx context.Context) {
	msgs := chromedp.Console(ctx)
	go func() {
		for m, err := range msgs {
			if err != nil {
				return
			}
			c.mu.Lock()
			c.msgs = append(c.msgs, m)
			c.mu.Unlock()
		}
	}()
}

// take returns the messages so far and forgets them.
func (c *console) take() []chromedp.ConsoleMessage {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.msgs
	c.msgs = nil
	return m
}

func isError(m chromedp.ConsoleMessage) bool {
	return m.Type == chromedp.ConsoleError || m.IsException()
}

type country struct {
	Country string   `json:"country"`
	Hosts   []string `json:"hosts"`
	Facts   []string `json:"facts"`
}

type pageState struct {
	Shaded    []string         `json:"shaded"`
	Claimed   []string         `json:"claimed"`
	Countries []country        `json:"countries"`
	Reasons   map[string][]int `json:"reasons"`
	Outcomes  map[string]int   `json:"outcomes"`
	Denied    int              `json:"denied"`
	Summary   string           `json:"summary"`
}

const readState = `(() => {
  const num = (td) => Number(td.textContent);
  const reasons = {}, outcomes = {};
  for (const r of document.querySelectorAll('#reasons tbody tr[data-key]')) {
    const td = r.querySelectorAll('td.num');
    reasons[r.dataset.key] = [num(td[0]), num(td[1])];
  }
  for (const r of document.querySelectorAll('#outcomes tbody tr[data-key]')) {
    outcomes[r.dataset.key] = num(r.querySelector('td.num'));
  }
  return {
    shaded: [...document.querySelectorAll('#map path.hosted')].map((p) => p.id).sort(),
    claimed: [...document.querySelectorAll('#map path.hosted.claimed')].map((p) => p.id).sort(),
    countries: [...document.querySelectorAll('#countries .country')].map((c) => ({
      country: c.dataset.country,
      hosts: [...c.querySelectorAll('tr[data-host]')].map((r) => r.dataset.host),
      facts: [...c.querySelectorAll('tr[data-host] .badge')].map((b) => b.textContent),
    })),
    reasons, outcomes,
    denied: document.querySelectorAll('#denied-decisions tbody tr').length,
    summary: document.getElementById('hosts-summary').textContent,
  };
})()`

func TestAuditorsPage(t *testing.T) {
	exe := chromium(t)
	base, data := filterd(t)
	seed(t, base, data)
	t.Logf("artifacts: %s", artifacts(t))

	// /ui redirects to /ui/, which needs no token (the page holds no data).
	resp, err := http.Get(base + "/ui")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/ui/" || !strings.HasPrefix(resp.Header.Get("Content-Security-Policy"), "default-src 'self'") {
		t.Fatalf("GET /ui: %d at %s, CSP %q", resp.StatusCode, resp.Request.URL, resp.Header.Get("Content-Security-Policy"))
	}

	ctx, con, poll := browser(t, exe)

	// 1. Without a token the API answers 401 and the page asks for it.
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/ui/")); err != nil {
		t.Fatal(err)
	}
	poll("the token prompt and the map", `!document.getElementById('token-prompt').hidden && document.getElementById('hosts').dataset.state === 'error' && document.querySelector('#map svg') !== null`)
	cold, err := chromedp.Run(ctx, chromedp.Evaluate[map[string]float64](navTimings))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("first load (empty cache, no token yet): DOMContentLoaded %.0f ms, load %.0f ms, world map in at %.0f ms (%.0f bytes on the wire)",
		cold["dcl"], cold["load"], cold["map"], cold["mapBytes"])
	// A wrong token is refused, and the page says so.
	if err := chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.CSS("#token-input"), "not-the-read-token"),
		chromedp.Click(chromedp.CSS("#token-form button[type=submit]")),
	); err != nil {
		t.Fatal(err)
	}
	poll("the wrong token refused", `!document.getElementById('token-prompt').hidden && document.getElementById('token-reason').textContent.includes('refused')`)
	// The only errors so far: the browser's log lines of the 401s.
	n401 := 0
	for _, m := range con.take() {
		if m.Source == "network" && strings.Contains(m.Text, "401") && strings.Contains(m.URL, "/v1/") {
			n401++
		} else if isError(m) {
			t.Errorf("before the token: console %s (%s)", m, m.URL)
		}
	}
	t.Logf("before the token: %d reads answered 401, as the browser logged them", n401)
	if err := chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.CSS("#token-input"), readToken),
		chromedp.Click(chromedp.CSS("#token-form button[type=submit]")),
	); err != nil {
		t.Fatal(err)
	}
	poll("hosts and denials with the token", `document.getElementById('hosts').dataset.state === 'ready' && document.getElementById('denials').dataset.state === 'ready' && document.querySelector('#map svg') !== null`)

	// 2. A fresh load with the token in the tab's session storage: the
	// page's load time, to the map shaded and the denials counted.
	loadStart := time.Now()
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/ui/")); err != nil {
		t.Fatal(err)
	}
	poll("the page loaded again", `document.getElementById('hosts').dataset.state === 'ready' && document.getElementById('denials').dataset.state === 'ready' && document.querySelectorAll('#map path.hosted').length > 0`)
	loaded := time.Since(loadStart)
	nav, err := chromedp.Run(ctx, chromedp.Evaluate[map[string]float64](navTimings))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("page load with the token (assets cached): DOMContentLoaded %.0f ms, load %.0f ms, world map in at %.0f ms (%.0f bytes on the wire), map shaded and hosts listed at %.0f ms, denials counted at %.0f ms (%v as the test saw it)",
		nav["dcl"], nav["load"], nav["map"], nav["mapBytes"], nav["hosts"], nav["denials"], loaded.Round(time.Millisecond))
	if !strings.Contains(readTokenPrompt(t, ctx), "hidden") {
		t.Error("the token prompt shows although the tab holds the token")
	}

	st, err := chromedp.Run(ctx, chromedp.Evaluate[pageState](readState))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("page: %+v", st)
	if want := []string{"de", "fr", "gb", "jp", "us"}; !slices.Equal(st.Shaded, want) {
		t.Errorf("countries shaded %v, want %v", st.Shaded, want)
	}
	// JP and GB hold a claimed host (hm2, hm4); DE and US only claimed ones;
	// FR's one host is attested.
	if want := []string{"de", "gb", "jp", "us"}; !slices.Equal(st.Claimed, want) {
		t.Errorf("countries with claimed hosts %v, want %v", st.Claimed, want)
	}
	listed := map[string]country{}
	for _, c := range st.Countries {
		listed[c.Country] = c
	}
	for _, h := range hosts {
		c := listed[h.country]
		i := slices.Index(c.Hosts, h.name)
		if i < 0 {
			t.Errorf("%s is not listed under %s: %+v", h.name, h.country, c)
			continue
		}
		want := "claimed"
		if h.attested {
			want = "attested"
		}
		if i >= len(c.Facts) || c.Facts[i] != want {
			t.Errorf("%s's facts shown as %v, want %s", h.name, c.Facts, want)
		}
	}
	if !strings.Contains(st.Summary, "7 hosts in 5 countries: 3 attested, 4 only claimed") {
		t.Errorf("hosts summary %q", st.Summary)
	}
	wantReasons := map[string][]int{
		"country_not_allowed":      {1, 1},
		"organization_not_allowed": {1, 1},
		"host_unregistered":        {1, 1},
		"host_unattested":          {1, 1},
	}
	for r, want := range wantReasons {
		if !slices.Equal(st.Reasons[r], want) {
			t.Errorf("reason %s: %v, want %v (hosts, decisions)", r, st.Reasons[r], want)
		}
	}
	if len(st.Reasons) != len(wantReasons) {
		t.Errorf("reasons shown: %v", st.Reasons)
	}
	if st.Outcomes["request_invalid"] != 1 || len(st.Outcomes) != 1 {
		t.Errorf("outcomes shown: %v", st.Outcomes)
	}
	if st.Denied != 4 {
		t.Errorf("%d decisions listed as denying, want 4 (three denied hosts, one undecided)", st.Denied)
	}

	// 3. A decision's verdicts, on a click.
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS("#denied-decisions tbody tr:last-child button"))); err != nil {
		t.Fatal(err)
	}
	poll("a decision's verdicts", `document.querySelectorAll('#decision-detail tbody tr').length > 0`)

	// 4. The residency timeline of a VM the ledger never saw placed.
	residencyOfNone(t, ctx, poll)

	// 5. No console error or exception after the token was entered.
	for _, m := range con.take() {
		if isError(m) {
			t.Errorf("console %s (%s:%d)", m, m.URL, m.Line)
		} else if m.Type == chromedp.ConsoleWarning {
			t.Logf("console %s", m)
		}
	}

	screenshot(t, ctx, "ui.png")
}

// browser starts headless chromium (exe) with one tab, whose console it
// watches, and returns the tab's context and a poll of a predicate.
func browser(t *testing.T, exe string) (context.Context, *console, func(what, expr string)) {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.WindowSize(1280, 900))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(cancel)
	ctx, cancelTimeout := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(cancelTimeout)
	start := time.Now()
	if err := chromedp.Do(ctx); err != nil { // the browser's start
		t.Fatalf("starting %s: %v", exe, err)
	}
	t.Logf("chromium started in %v", time.Since(start).Round(time.Millisecond))
	con := &console{}
	con.watch(ctx)
	poll := func(what, expr string) {
		t.Helper()
		var err error
		// A poll started while the tab still swaps documents after a
		// navigation loses its execution context: it starts again, in the
		// new document, a few times.
		for try := 0; try < 5; try++ {
			_, err = chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(20*time.Second), chromedp.WithPollingInterval(20*time.Millisecond)))
			if err == nil || !strings.Contains(err.Error(), "Cannot find context with specified id") {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if err != nil {
			state, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText`))
			t.Fatalf("waiting for %s: %v; the page says:\n%s", what, err, state)
		}
	}
	return ctx, con, poll
}

// screenshot saves a full-page screenshot of the tab as name in the
// artifacts' directory.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(artifacts(t), name)
	if err := os.WriteFile(path, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("full-page screenshot: %s (%d bytes)", path, len(shot))
}

// navTimings reads the navigation's timings and the world map's fetch.
const navTimings = `(() => {
  const n = performance.getEntriesByType('navigation')[0];
  const m = performance.getEntriesByName(new URL(document.getElementById('map').dataset.src, location.href).href)[0];
  const mark = (name) => { const e = performance.getEntriesByName(name, 'mark')[0]; return e ? e.startTime : -1; };
  return {dcl: n.domContentLoadedEventEnd, load: n.loadEventEnd, map: m ? m.responseEnd : -1, mapBytes: m ? m.transferSize : -1,
    hosts: mark('hosts:ready'), denials: mark('denials:ready')};
})()`

func readTokenPrompt(t *testing.T, ctx context.Context) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById('token-prompt').hidden ? 'hidden' : 'shown'`))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// residencyOfNone asks the page for the timeline of a VM the ledger never
// saw placed: an empty report, which the page must say is empty.
func residencyOfNone(t *testing.T, ctx context.Context, poll func(what, expr string)) {
	t.Helper()
	if err := chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.CSS("#vm-uuid"), vmNone),
		chromedp.Click(chromedp.CSS("#residency-form button[type=submit]")),
	); err != nil {
		t.Fatal(err)
	}
	poll("the residency answer", `['empty', 'error', 'ready'].includes(document.getElementById('residency').dataset.state)`)
	got, err := chromedp.Run(ctx, chromedp.Evaluate[map[string]string](`({state: document.getElementById('residency').dataset.state,
	  text: document.getElementById('residency-status').textContent,
	  bars: String(document.querySelectorAll('#timeline-svg rect').length),
	  hidden: String(document.getElementById('timeline').hidden)})`))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("residency of a VM never placed: %v", got)
	if got["state"] != "empty" || !strings.Contains(got["text"], "No placement is recorded for vm:"+vmNone) || got["hidden"] != "true" || got["bars"] != "0" {
		t.Errorf("the page says %v of a VM with no placement", got)
	}
}
