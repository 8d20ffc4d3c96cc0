package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ledgerfence/ledgerfence/pkg/api"
	"github.com/ledgerfence/ledgerfence/pkg/nova"
)

// The hosts and regulations every fail-closed test decides on: VM1 may go to
// JP and GB for CompanyA and CompanyB; its project (whose id Nova may spell
// in upper case) to JP only. Of hm1 (JP), hm3 (DE) and hm5 (GB), only hm1
// is compliant.
const (
	fcVM      = "6f1c0d3e-8b2a-4c1d-9e7f-0a1b2c3d4e5f"
	fcProject = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
)

var fcHosts = []string{"hm1", "hm3", "hm5"}

// fcCompliant: the hosts VM1 may go to.
var fcCompliant = map[string]bool{"hm1": true}

// failClosedServer runs filterd with small bounds, seeded, and returns its
// base URL.
func failClosedServer(t *testing.T, extra ...string) string {
	t.Helper()
	args := append([]string{"--listen", "127.0.0.1:0", "--data", t.TempDir(), "--admin-token", "s3cret",
		"--max-body", "65536", "--max-buffered", "131072", "--read-timeout", "400ms"}, extra...)
	cfg, err := parseConfig(args, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Timeout: 10 * time.Second}
	base := started(t, cfg, client, "http")
	for _, h := range []struct{ name, body string }{
		{"hm1", `{"country": "JP", "organizations": ["CompanyA", "CompanyB"]}`},
		{"hm3", `{"country": "DE", "organizations": ["CompanyA"]}`},
		{"hm5", `{"country": "GB", "organizations": ["CompanyB"]}`},
	} {
		if resp, body := call(t, client, http.MethodPut, base+"/v1/hosts/"+h.name, "s3cret", h.body); resp.StatusCode != http.StatusOK {
			t.Fatalf("PUT %s: %d %s", h.name, resp.StatusCode, body)
		}
	}
	for subject, body := range map[string]string{
		"vm:" + fcVM:           `{"countries": ["JP", "GB"], "organizations": ["CompanyA", "CompanyB"]}`,
		"project:" + fcProject: `{"allow": ["JP.All"]}`,
	} {
		if resp, b := call(t, client, http.MethodPut, base+"/v1/regulations/"+subject, "s3cret", body); resp.StatusCode != http.StatusOK {
			t.Fatalf("PUT %s: %d %s", subject, resp.StatusCode, b)
		}
	}
	return base
}

// fcRequest is a well-formed request for VM1 over fcHosts, as a map to edit.
func fcRequest() map[string]any {
	hosts := []any{}
	for _, h := range fcHosts {
		hosts = append(hosts, map[string]any{"host": h, "hypervisor_hostname": h})
	}
	return map[string]any{
		"spec": map[string]any{"nova_object.name": "RequestSpec", "nova_object.data": map[string]any{
			"instance_uuid": fcVM, "project_id": fcProject,
			"scheduler_hints": map[string]any{"_nova_check_type": []any{"live_migrate"}},
		}},
		"context": map[string]any{"request_id": "req-1"},
		"hosts":   hosts,
		"weights": map[string]any{"hm1": 1.0, "hm3": 0.5, "hm5": 0.0},
	}
}

func fcEdited(edit func(m, data map[string]any)) string {
	m := fcRequest()
	edit(m, m["spec"].(map[string]any)["nova_object.data"].(map[string]any))
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// undecidable are bodies filterd cannot decide: each must get exactly
// {"hosts": []}, with the outcome counted.
func undecidable() []struct{ name, body, why string } {
	deep := strings.Repeat(`{"a":`, 10_000) + "1" + strings.Repeat("}", 10_000)
	over := fcEdited(func(m, _ map[string]any) { m["padding"] = strings.Repeat("x", 70_000) })
	return []struct{ name, body, why string }{
		{"empty body", ``, "malformed"},
		{"not JSON", `instance_uuid=6f1c0d3e`, "malformed"},
		{"truncated JSON", fcEdited(func(_, _ map[string]any) {})[:40], "malformed"},
		{"null", `null`, "instance_uuid"},
		{"a list", `[]`, "malformed"},
		{"a string", `"hosts"`, "malformed"},
		{"a number", `42`, "malformed"},
		{"spec null", fcEdited(func(m, _ map[string]any) { m["spec"] = nil }), "instance_uuid"},
		{"spec a list", fcEdited(func(m, _ map[string]any) { m["spec"] = []any{1} }), "spec"},
		{"spec a string", fcEdited(func(m, _ map[string]any) { m["spec"] = "RequestSpec" }), "spec"},
		{"spec data null", fcEdited(func(m, _ map[string]any) { m["spec"].(map[string]any)["nova_object.data"] = nil }), "instance_uuid"},
		{"spec data missing", fcEdited(func(m, _ map[string]any) { delete(m["spec"].(map[string]any), "nova_object.data") }), "instance_uuid"},
		{"instance_uuid missing", fcEdited(func(_, d map[string]any) { delete(d, "instance_uuid") }), "instance_uuid"},
		{"instance_uuid null", fcEdited(func(_, d map[string]any) { d["instance_uuid"] = nil }), "instance_uuid"},
		{"instance_uuid a number", fcEdited(func(_, d map[string]any) { d["instance_uuid"] = 7 }), "instance_uuid"},
		{"instance_uuid an object", fcEdited(func(_, d map[string]any) { d["instance_uuid"] = map[string]any{"uuid": fcVM} }), "instance_uuid"},
		{"instance_uuid not a UUID", fcEdited(func(_, d map[string]any) { d["instance_uuid"] = "vm1" }), "instance_uuid"},
		{"instance_uuid too long", fcEdited(func(_, d map[string]any) { d["instance_uuid"] = fcVM + "-0000" }), "instance_uuid"},
		{"project_id with a path", fcEdited(func(_, d map[string]any) { d["project_id"] = "p 1/../x" }), "project_id"},
		{"project_id too long", fcEdited(func(_, d map[string]any) { d["project_id"] = strings.Repeat("a", 200) }), "project_id"},
		{"project_id a number", fcEdited(func(_, d map[string]any) { d["project_id"] = 12 }), "project_id"},
		{"hosts a string", fcEdited(func(m, _ map[string]any) { m["hosts"] = "hm1,hm3" }), "hosts"},
		{"hosts an object", fcEdited(func(m, _ map[string]any) { m["hosts"] = map[string]any{"host": "hm1"} }), "hosts"},
		{"hosts a number", fcEdited(func(m, _ map[string]any) { m["hosts"] = 3 }), "hosts"},
		{"a host without host", fcEdited(func(m, _ map[string]any) { m["hosts"] = []any{map[string]any{"hypervisor_hostname": "hm1"}} }), "host"},
		{"a host null", fcEdited(func(m, _ map[string]any) { m["hosts"] = []any{map[string]any{"host": "hm1"}, nil} }), "host"},
		{"a host name null", fcEdited(func(m, _ map[string]any) { m["hosts"] = []any{map[string]any{"host": nil}} }), "host"},
		{"a host name a number", fcEdited(func(m, _ map[string]any) { m["hosts"] = []any{map[string]any{"host": 42}} }), "host"},
		{"a host a bare string", fcEdited(func(m, _ map[string]any) { m["hosts"] = []any{"hm1"} }), "host"},
		{"scheduler_hints a string", fcEdited(func(_, d map[string]any) { d["scheduler_hints"] = "live_migrate" }), "malformed"},
		{"scheduler_hints a list", fcEdited(func(_, d map[string]any) { d["scheduler_hints"] = []any{"x"} }), "malformed"},
		{"context a string", fcEdited(func(m, _ map[string]any) { m["context"] = "req-1" }), "context"},
		{"live a string", fcEdited(func(m, _ map[string]any) { m["live"] = "yes" }), "live"},
		{"nested 10,000 deep", deep, "instance_uuid"},
		{"a host name of 256 bytes", fcEdited(func(m, _ map[string]any) {
			m["hosts"] = []any{map[string]any{"host": "hm1"}, map[string]any{"host": strings.Repeat("h", 256)}}
		}), "longer than 255"},
		{"body over --max-body", over, "larger than --max-body"},
	}
}

// postRaw posts body; chunked sends it without a Content-Length.
func postRaw(t *testing.T, client *http.Client, base, body string, chunked bool) (*http.Response, string) {
	t.Helper()
	var r io.Reader = strings.NewReader(body)
	if chunked {
		r = io.MultiReader(r) // hides the length from net/http
	}
	req, err := http.NewRequest(http.MethodPost, base+nova.Path, r)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("POST: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

var outcomeLine = regexp.MustCompile(`(?m)^ledgerfence_webhook_requests_total\{operation="[a-z_]+",outcome="([a-z_]+)"\} (\d+)$`)

// outcomes sums the webhook's requests by outcome.
func outcomes(t *testing.T, client *http.Client, base string) map[string]int {
	t.Helper()
	_, body := call(t, client, http.MethodGet, base+"/metrics", "", "")
	out := map[string]int{}
	for _, m := range outcomeLine.FindAllStringSubmatch(body, -1) {
		n, _ := strconv.Atoi(m[2])
		out[m[1]] += n
	}
	return out
}

func decisionOf(t *testing.T, client *http.Client, base string, resp *http.Response) api.Decision {
	t.Helper()
	id := resp.Header.Get(api.HeaderDecision)
	r, body := call(t, client, http.MethodGet, base+"/v1/decisions/"+id, "", "")
	var d api.Decision
	if r.StatusCode != http.StatusOK || json.Unmarshal([]byte(body), &d) != nil {
		t.Fatalf("decision %q: %d %s", id, r.StatusCode, body)
	}
	return d
}

// Every body filterd cannot decide gets 200 and exactly {"hosts": []}, is
// counted as request_invalid and kept as a decision that says why.
func TestWebhookUndecidableBodiesFailClosed(t *testing.T) {
	base := failClosedServer(t)
	client := &http.Client{Timeout: 10 * time.Second}
	cases := undecidable()
	if len(cases) < 30 {
		t.Fatalf("%d cases, want at least 30", len(cases))
	}
	for _, tc := range cases {
		for _, chunked := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/chunked=%v", tc.name, chunked), func(t *testing.T) {
				before := outcomes(t, client, base)
				resp, body := postRaw(t, client, base, tc.body, chunked)
				if resp.StatusCode != http.StatusOK || body != `{"hosts":[]}`+"\n" || resp.Header.Get("Content-Type") != "application/json" {
					t.Fatalf("%d %q (%s), want 200 {\"hosts\":[]}", resp.StatusCode, body, resp.Header.Get("Content-Type"))
				}
				d := decisionOf(t, client, base, resp)
				if d.Outcome != api.OutcomeRequestInvalid || !strings.Contains(d.Error, tc.why) || d.Allowed != 0 {
					t.Errorf("decision %+v: want request_invalid saying %q", d, tc.why)
				}
				if got := outcomes(t, client, base)[api.OutcomeRequestInvalid] - before[api.OutcomeRequestInvalid]; got != 1 {
					t.Errorf("request_invalid counted %d times, want 1", got)
				}
			})
		}
	}
}

// Bodies as Nova's side writes them, with fields filterd does not know and
// identifiers in other spellings, are decided, not refused.
func TestWebhookDecidesWhatNovaSends(t *testing.T) {
	base := failClosedServer(t)
	client := &http.Client{Timeout: 10 * time.Second}
	python, err := os.ReadFile("testdata/requestspec-python.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, body string
		want       []string
		outcome    string
	}{
		// Nova's RequestSpec primitive as json.dumps writes it: upper-case
		// UUID and project id, a cell, flavor, unknown top-level fields.
		// The project's regulation (JP only) applies through the
		// upper-case id: hm5 (GB) is denied.
		{"RequestSpec primitive from python3-nova", string(python), []string{"hm1"}, api.OutcomeAllowedSome},
		{"upper-case identifiers", fcEdited(func(_, d map[string]any) {
			d["instance_uuid"] = strings.ToUpper(fcVM)
			d["project_id"] = strings.ToUpper(fcProject)
		}), []string{"hm1"}, api.OutcomeAllowedSome},
		{"a UUID without dashes", fcEdited(func(_, d map[string]any) {
			d["instance_uuid"] = strings.ReplaceAll(fcVM, "-", "")
		}), []string{"hm1"}, api.OutcomeAllowedSome},
		{"identifiers with surrounding space", fcEdited(func(_, d map[string]any) {
			d["instance_uuid"] = " " + fcVM + "\t"
			d["project_id"] = fcProject + " "
		}), []string{"hm1"}, api.OutcomeAllowedSome},
		{"unknown fields everywhere", fcEdited(func(m, d map[string]any) {
			m["future"] = map[string]any{"a": []any{1, nil, "x"}}
			d["requested_destination"] = map[string]any{"nova_object.data": map[string]any{"cell": nil}}
			m["hosts"].([]any)[0].(map[string]any)["extra"] = true
		}), []string{"hm1"}, api.OutcomeAllowedSome},
		{"hosts null", fcEdited(func(m, _ map[string]any) { m["hosts"] = nil }), []string{}, api.OutcomeNoHosts},
		{"no weights, hints null", fcEdited(func(m, d map[string]any) {
			delete(m, "weights")
			d["scheduler_hints"] = nil
		}), []string{"hm1"}, api.OutcomeAllowedSome},
		// filterd does not read the weights: whatever their type, the
		// request is decided.
		{"weights a list", fcEdited(func(m, _ map[string]any) { m["weights"] = []any{"hm1"} }), []string{"hm1"}, api.OutcomeAllowedSome},
		{"a weight a string", fcEdited(func(m, _ map[string]any) { m["weights"] = map[string]any{"hm1": "high"} }), []string{"hm1"}, api.OutcomeAllowedSome},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := postRaw(t, client, base, tc.body, false)
			var got nova.Response
			if resp.StatusCode != http.StatusOK || json.Unmarshal([]byte(body), &got) != nil {
				t.Fatalf("%d %q", resp.StatusCode, body)
			}
			if !slices.Equal(got.Hosts, tc.want) && !(len(got.Hosts) == 0 && len(tc.want) == 0) {
				t.Errorf("hosts %v, want %v", got.Hosts, tc.want)
			}
			if d := decisionOf(t, client, base, resp); d.Outcome != tc.outcome || d.Error != "" {
				t.Errorf("decision %+v, want outcome %s", d, tc.outcome)
			}
		})
	}
}

// sapNova keeps hosts as SAP's Nova does with an external scheduler's
// answer: every candidate on a transport error, a non-200, or an answer
// that is not exactly {"hosts": [...]}; else the hosts named.
func sapNova(resp *http.Response, err error, candidates []string) []string {
	if err != nil {
		return candidates
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return candidates
	}
	var ans struct {
		Hosts *[]string `json:"hosts"`
	}
	dec := json.NewDecoder(resp.Body)
	dec.DisallowUnknownFields()
	if dec.Decode(&ans) != nil || ans.Hosts == nil {
		return candidates
	}
	return *ans.Hosts
}

// Through a client that behaves as SAP's Nova, no bad input, token, slow
// body, overload or oversized body yields a non-compliant host.
func TestNoFallbackReachesANonCompliantHost(t *testing.T) {
	base := failClosedServer(t, "--webhook-token", "nova-token")
	// Nova's client: a timeout of its own, above filterd's --read-timeout.
	nova := &http.Client{Timeout: 3 * time.Second}
	post := func(body io.Reader, token string, length int64) []string {
		req, err := http.NewRequest(http.MethodPost, base+"/scheduler/nova/external", body)
		if err != nil {
			t.Fatal(err)
		}
		if length >= 0 {
			req.ContentLength = length
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := nova.Do(req)
		return sapNova(resp, err, fcHosts)
	}
	check := func(what string, kept []string) {
		t.Helper()
		for _, h := range kept {
			if !fcCompliant[h] {
				t.Errorf("%s: Nova kept %v, with the non-compliant %s", what, kept, h)
				return
			}
		}
	}
	good := fcEdited(func(_, _ map[string]any) {})
	if kept := post(strings.NewReader(good), "nova-token", -1); !slices.Equal(kept, []string{"hm1"}) {
		t.Fatalf("a good request with its token: Nova kept %v, want [hm1]", kept)
	}
	// Without the token SAP's Nova sends none: no host, never every host.
	if kept := post(strings.NewReader(good), "", -1); len(kept) != 0 {
		t.Errorf("without the token: Nova kept %v, want none", kept)
	}
	for _, tc := range undecidable() {
		check(tc.name, post(strings.NewReader(tc.body), "nova-token", -1))
	}
	// A body that arrives slower than --read-timeout (400 ms), within
	// Nova's own timeout.
	slow := &slowReader{data: []byte(good), every: 150 * time.Millisecond, chunk: 16}
	kept := post(slow, "nova-token", int64(len(good)))
	if len(kept) != 0 {
		t.Errorf("a slow body: Nova kept %v, want none", kept)
	}
	// Overload: bodies held past --max-buffered (128 KiB): two clients
	// hold 60 KiB each without finishing; the next request is overloaded.
	for range 2 {
		c := holdBody(t, base, 65_000, 60_000)
		defer c.Close()
	}
	waitMetric(t, base, "ledgerfence_webhook_buffered_bytes", func(v float64) bool { return v >= 120_000 })
	before := outcomes(t, nova, base)[api.OutcomeOverloaded]
	big := fcEdited(func(m, _ map[string]any) { m["padding"] = strings.Repeat("y", 20_000) })
	check("overloaded", post(strings.NewReader(big), "nova-token", -1))
	if got := outcomes(t, nova, base)[api.OutcomeOverloaded] - before; got != 1 {
		t.Errorf("overloaded counted %d times, want 1", got)
	}
}

// slowReader hands out chunk bytes every interval.
type slowReader struct {
	data  []byte
	every time.Duration
	chunk int
}

func (s *slowReader) Read(p []byte) (int, error) {
	if len(s.data) == 0 {
		return 0, io.EOF
	}
	time.Sleep(s.every)
	n := copy(p[:min(len(p), s.chunk)], s.data)
	s.data = s.data[n:]
	return n, nil
}

// holdBody opens a connection that declares length bytes of body, sends
// send of them and waits.
func holdBody(t *testing.T, base string, length, send int) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "POST %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer nova-token\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", nova.Path, length)
	b.WriteString(`{"padding":"`)
	b.WriteString(strings.Repeat("z", send-len(`{"padding":"`)))
	if _, err := c.Write(b.Bytes()); err != nil {
		t.Fatal(err)
	}
	return c
}

// waitMetric polls /metrics until the named gauge satisfies ok.
func waitMetric(t *testing.T, base, name string, ok func(float64) bool) {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(10 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		_, body := call(t, client, http.MethodGet, base+"/metrics", "", "")
		sc := bufio.NewScanner(strings.NewReader(body))
		for sc.Scan() {
			if v, found := strings.CutPrefix(sc.Text(), name+" "); found {
				last = v
				if f, err := strconv.ParseFloat(v, 64); err == nil && ok(f) {
					return
				}
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s stayed at %s", name, last)
}

// A client holding many idle connections cannot keep Nova out: past
// --max-connections the connection idle longest is closed.
func TestIdleConnectionsCannotKeepNovaOut(t *testing.T) {
	base := failClosedServer(t, "--max-connections", "16")
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	dial := func(n int) {
		for range n {
			c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			conns = append(conns, c)
		}
	}
	dial(40)
	time.Sleep(1100 * time.Millisecond) // silent for longer than a connection may be before it can be closed
	dial(40)
	nova := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, body := postRaw(t, nova, base, fcEdited(func(_, _ map[string]any) {}), false)
	if resp.StatusCode != http.StatusOK || body != `{"hosts":["hm1"]}`+"\n" {
		t.Fatalf("Nova's request among 40 idle connections: %d %q", resp.StatusCode, body)
	}
	waitMetric(t, base, `ledgerfence_limit_exceeded_total{limit="max_connections"}`, func(v float64) bool { return v >= 24 })
}
