package fabric_test

// filterd --ledger fabric against the real network: the real binary, built
// here, reading through Org1's peer as a client identity without a role,
// while host agents and a VM manager write through pkg/ledger/fabric.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/ledgerfence/ledgerfence/pkg/api"
	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/remote"
	"github.com/ledgerfence/ledgerfence/tests/integration/fabricnet"
)

// table4Hosts are the seed's hosts (Table 4) and the host agent of each.
var table4Hosts = []filter.Host{
	{Name: "hm1", Country: "JP", Organizations: []string{"CompanyA", "CompanyB"}},
	{Name: "hm2", Country: "JP", Organizations: []string{"CompanyA"}},
	{Name: "hm3", Country: "DE", Organizations: []string{"CompanyA"}},
	{Name: "hm4", Country: "GB", Organizations: []string{"CompanyC"}},
	{Name: "hm5", Country: "GB", Organizations: []string{"CompanyB"}},
}

// table4Names are the names of table4Hosts, in order.
var table4Names = []string{"hm1", "hm2", "hm3", "hm4", "hm5"}

// vm1Regulation is the seed's regulation of VM1: JP and GB, CompanyA and CompanyB.
const vm1Regulation = `{"countries": ["JP", "GB"], "organizations": ["CompanyA", "CompanyB"]}`

// vm1Tightened narrows VM1 to JP.
const vm1Tightened = `{"countries": ["JP"], "organizations": ["CompanyA", "CompanyB"]}`

// retry runs write until it succeeds or a minute passes: right after a part
// of the network restarts, writes fail for a moment (see the harness's
// README, "Restarts under load").
func retry(tb testing.TB, what string, write func(context.Context) error) {
	tb.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		err := write(c)
		cancel()
		if err == nil {
			return
		}
		if !errors.Is(err, ledger.ErrUnavailable) || time.Now().After(deadline) {
			tb.Fatalf("%s: %v", what, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// seedTable4 registers the seed's hosts, each by its own host agent, and
// VM1's regulation (owned by vmm1) for the VM vm.
func seedTable4(tb testing.TB, vm filter.Subject) {
	tb.Helper()
	for _, h := range table4Hosts {
		agent := connect(tb, h.Name+"agent")
		retry(tb, "register "+h.Name, func(c context.Context) error {
			_, _, err := agent.PutHost(c, h)
			return err
		})
	}
	putRegulation(tb, vm, vm1Regulation)
}

// putRegulation writes a regulation as vmm1.
func putRegulation(tb testing.TB, vm filter.Subject, body string) {
	tb.Helper()
	vmm := connect(tb, "vmm1")
	retry(tb, "regulation of "+string(vm), func(c context.Context) error {
		_, _, err := vmm.PutRegulationJSON(c, vm, []byte(body))
		return err
	})
}

// Closing actions of the package, run by TestMain after the tests.
var atExit []func()

var (
	filterdOnce sync.Once
	filterdBin  string
	filterdErr  error
)

// filterdBinary builds ./cmd/filterd once per run.
func filterdBinary(tb testing.TB) string {
	tb.Helper()
	filterdOnce.Do(func() {
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..", "..")
		dir, err := os.MkdirTemp("", "ledgerfence-it-filterd-")
		if err != nil {
			filterdErr = err
			return
		}
		atExit = append(atExit, func() { os.RemoveAll(dir) })
		out := filepath.Join(dir, "filterd")
		cmd := exec.Command("go", "build", "-o", out, "./cmd/filterd")
		cmd.Dir = root
		if b, err := cmd.CombinedOutput(); err != nil {
			filterdErr = fmt.Errorf("go build ./cmd/filterd: %v\n%s", err, b)
			return
		}
		filterdBin = out
	})
	if filterdErr != nil {
		tb.Fatal(filterdErr)
	}
	return filterdBin
}

// logBuffer keeps a process's output.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// filterd is a running filterd binary over the network's ledger.
type filterd struct {
	url    string
	token  string
	cmd    *exec.Cmd
	out    logBuffer
	done   chan struct{}
	client *http.Client
}

// startFilterd starts filterd --ledger fabric as identity (through its
// organisation's peer), waits until its cache is filled, and stops it when
// the test ends.
func startFilterd(tb testing.TB, identity string, extra ...string) *filterd {
	tb.Helper()
	return startFilterdAt(tb, freeAddr(tb), identity, extra...)
}

// freeAddr is a loopback address with a port that was free a moment ago.
func freeAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startFilterdAt is startFilterd listening on addr (a replica started again
// where it was).
func startFilterdAt(tb testing.TB, addr, identity string, extra ...string) *filterd {
	tb.Helper()
	needNetwork(tb)
	bin := filterdBinary(tb)
	cfg := configFor(tb, identity)
	f := &filterd{
		url:    "http://" + addr,
		token:  "it-admin-" + runID,
		done:   make(chan struct{}),
		client: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}},
	}
	args := append([]string{
		"--listen", addr, "--ledger", "fabric", "--admin-token", f.token,
		"--fabric-peer", cfg.PeerEndpoint, "--fabric-tls-ca", cfg.TLSCAFile, "--fabric-server-name", cfg.ServerName,
		"--fabric-msp-id", cfg.MSPID, "--fabric-cert", cfg.CertFile, "--fabric-key", cfg.KeyFile,
		"--fabric-channel", cfg.Channel, "--fabric-chaincode", cfg.Chaincode,
		"--fabric-timeout", "2s", "--log-level", "warn",
	}, extra...)
	f.cmd = exec.Command(bin, args...)
	f.cmd.Stdout, f.cmd.Stderr = &f.out, &f.out
	f.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := f.cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	go func() {
		f.cmd.Wait()
		close(f.done)
	}()
	tb.Cleanup(func() {
		f.stop()
		if tb.Failed() {
			tb.Logf("filterd output:\n%s", fabricnet.LastLines(f.out.String(), 60))
		}
	})
	deadline := time.Now().Add(time.Minute)
	for {
		select {
		case <-f.done:
			tb.Fatalf("filterd exited: %v\n%s", f.cmd.ProcessState, f.out.String())
		default:
		}
		resp, err := f.client.Get(f.url + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return f
			}
		}
		if time.Now().After(deadline) {
			tb.Fatalf("filterd not ready within a minute (%v)\n%s", err, f.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill ends filterd with SIGKILL, as a crash would, and waits for its exit.
func (f *filterd) kill() {
	syscall.Kill(-f.cmd.Process.Pid, syscall.SIGKILL)
	<-f.done
}

func (f *filterd) stop() {
	select {
	case <-f.done:
		return
	default:
	}
	syscall.Kill(-f.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-f.done:
	case <-time.After(20 * time.Second):
		syscall.Kill(-f.cmd.Process.Pid, syscall.SIGKILL)
		<-f.done
	}
}

// novaBody is the webhook request of SAP's Nova (and of the devstack
// plugin's filter) for a live migration of a VM with these candidates.
func novaBody(uuid, project string, hosts []string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, `{"spec":{"nova_object.name":"RequestSpec","nova_object.namespace":"nova","nova_object.version":"1.14","nova_object.data":{`+
		`"instance_uuid":%q,"project_id":%q,"num_instances":1,"scheduler_hints":{"_nova_check_type":["live_migrate"]}}},`+
		`"context":{"request_id":"req-%s","project_id":%q},"hosts":[`, uuid, project, runID, project)
	for i, h := range hosts {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"host":%q,"hypervisor_hostname":"%s.example.org"}`, h, h)
	}
	b.WriteString(`],"weights":{`)
	for i, h := range hosts {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `%q:%d`, h, i%7)
	}
	b.WriteString(`},"rebuild":false,"resize":false,"live":true,"vmware":false}`)
	return []byte(b.String())
}

// answer is what the webhook said.
type answer struct {
	status   int
	body     string
	hosts    []string
	decision string
}

// webhook posts a request to Nova's webhook.
func (f *filterd) webhook(c context.Context, body []byte) (answer, error) {
	req, err := http.NewRequestWithContext(c, http.MethodPost, f.url+"/scheduler/nova/external", bytes.NewReader(body))
	if err != nil {
		return answer{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := f.client.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return answer{}, err
	}
	a := answer{status: resp.StatusCode, body: string(b), decision: resp.Header.Get(api.HeaderDecision)}
	if resp.StatusCode != http.StatusOK {
		return a, fmt.Errorf("webhook: %d %s", resp.StatusCode, b)
	}
	var out map[string]json.RawMessage
	if err := json.Unmarshal(b, &out); err != nil {
		return a, fmt.Errorf("webhook answer %q: %w", b, err)
	}
	if len(out) != 1 || out["hosts"] == nil {
		return a, fmt.Errorf("webhook answer %q: want exactly the key hosts", b)
	}
	if err := json.Unmarshal(out["hosts"], &a.hosts); err != nil || a.hosts == nil {
		return a, fmt.Errorf("webhook answer %q: hosts is not a list of names (%v)", b, err)
	}
	return a, nil
}

func (f *filterd) mustWebhook(tb testing.TB, body []byte) answer {
	tb.Helper()
	a, err := f.webhook(ctx(tb), body)
	if err != nil {
		tb.Fatal(err)
	}
	return a
}

// decision reads GET /v1/decisions/{id}.
func (f *filterd) decision(tb testing.TB, id string) api.Decision {
	tb.Helper()
	if id == "" {
		tb.Fatal("the answer carries no decision id")
	}
	var d api.Decision
	if status := f.getJSON(tb, "/v1/decisions/"+id, &d); status != http.StatusOK {
		tb.Fatalf("GET /v1/decisions/%s: %d", id, status)
	}
	return d
}

func (f *filterd) getJSON(tb testing.TB, path string, v any) int {
	tb.Helper()
	resp, err := f.client.Get(f.url + path)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			tb.Fatalf("GET %s: %v", path, err)
		}
	}
	return resp.StatusCode
}

// metric reads one sample of filterd's /metrics with the Prometheus text
// parser: the first whose labels include the given ones.
func (f *filterd) metric(tb testing.TB, name string, labels map[string]string) (float64, bool) {
	tb.Helper()
	resp, err := f.client.Get(f.url + "/metrics")
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		tb.Fatalf("/metrics does not parse: %v", err)
	}
next:
	for _, m := range fams[name].GetMetric() {
		for _, lp := range m.GetLabel() {
			if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
				continue next
			}
		}
		switch {
		case m.GetGauge() != nil:
			return m.GetGauge().GetValue(), true
		case m.GetCounter() != nil:
			return m.GetCounter().GetValue(), true
		case m.GetUntyped() != nil:
			return m.GetUntyped().GetValue(), true
		}
	}
	return 0, false
}

// reasons maps each host of a decision to its reason ("" when allowed).
func reasons(d api.Decision) map[string]filter.Reason {
	out := map[string]filter.Reason{}
	for _, v := range d.Verdicts {
		if v.Allowed != (v.Reason == filter.ReasonNone) {
			out[v.Host] = "inconsistent:" + v.Reason
			continue
		}
		out[v.Host] = v.Reason
	}
	return out
}

// newUUID is a VM UUID of this run that no regulation names.
func newUUID(k int) string { return vmSubject(k).ID() }

func TestFilterdTable4(t *testing.T) {
	vm := vmSubject(100)
	seedTable4(t, vm)
	f := startFilterd(t, "org1-user")

	// The cache was filled from the ledger's host listing at start.
	if n, ok := f.metric(t, "ledgerfence_cache_entries", map[string]string{"kind": "host", "state": "present"}); !ok || n < 5 {
		t.Errorf("hosts in the cache after start: %v (found %v), want at least the 5 of Table 4", n, ok)
	}
	var info remote.LedgerInfo
	if st := f.getJSON(t, "/v1/ledger", &info); st != http.StatusOK || info.Backend != "fabric" || info.Writable || !info.CacheReady || info.Height == 0 {
		t.Errorf("GET /v1/ledger: %d %+v", st, info)
	}

	unregistered := uniq("hm-none")
	cases := []struct {
		name      string
		uuid      string
		hosts     []string
		want      []string
		reasons   map[string]filter.Reason
		regulated bool
	}{
		{
			name:  "Table 4",
			uuid:  vm.ID(),
			hosts: append(slices.Clone(table4Names), unregistered),
			want:  []string{"hm1", "hm2", "hm5"},
			reasons: map[string]filter.Reason{
				"hm1": "", "hm2": "", "hm5": "",
				"hm3":        filter.CountryNotAllowed,
				"hm4":        filter.OrganizationNotAllowed,
				unregistered: filter.HostUnregistered,
			},
			regulated: true,
		},
		{
			name:      "Nova's order is kept",
			uuid:      vm.ID(),
			hosts:     []string{"hm5", "hm4", "hm3", "hm2", "hm1"},
			want:      []string{"hm5", "hm2", "hm1"},
			reasons:   map[string]filter.Reason{"hm1": "", "hm2": "", "hm5": "", "hm3": filter.CountryNotAllowed, "hm4": filter.OrganizationNotAllowed},
			regulated: true,
		},
		{
			name:    "an unregulated VM may go anywhere",
			uuid:    newUUID(101),
			hosts:   append(slices.Clone(table4Names), unregistered),
			want:    append(slices.Clone(table4Names), unregistered),
			reasons: map[string]filter.Reason{"hm1": "", "hm2": "", "hm3": "", "hm4": "", "hm5": "", unregistered: ""},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := f.mustWebhook(t, novaBody(tc.uuid, "", tc.hosts))
			if !slices.Equal(a.hosts, tc.want) {
				t.Errorf("hosts %v, want %v (%s)", a.hosts, tc.want, a.body)
			}
			d := f.decision(t, a.decision)
			if got := reasons(d); fmt.Sprint(got) != fmt.Sprint(tc.reasons) {
				t.Errorf("reasons %v, want %v", got, tc.reasons)
			}
			if d.InstanceUUID != tc.uuid || d.Regulated != tc.regulated || d.Allowed != len(tc.want) || d.Operation != "live_migrate" {
				t.Errorf("decision %+v", d)
			}
		})
	}
}

// TestFilterdRefusesRESTWrites: on the Fabric ledger filterd writes nothing
// for REST clients, even with its admin token; writers sign their own
// transactions.
func TestFilterdRefusesRESTWrites(t *testing.T) {
	vm := vmSubject(102)
	seedTable4(t, vm)
	f := startFilterd(t, "org1-user")
	l := connect(t, "org1-user")
	before, err := l.GetHost(ctx(t), "hm3")
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []struct{ method, path, body string }{
		{http.MethodPut, "/v1/hosts/hm3", `{"country": "JP", "organizations": ["CompanyA"]}`},
		{http.MethodPut, "/v1/hosts/" + uniq("rest"), `{"country": "JP", "organizations": ["CompanyA"]}`},
		{http.MethodPut, "/v1/regulations/" + string(vm), `{"countries": ["*"], "organizations": ["*"]}`},
		{http.MethodDelete, "/v1/regulations/" + string(vm), ``},
	} {
		req, err := http.NewRequest(w.method, f.url+w.path, strings.NewReader(w.body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+f.token)
		resp, err := f.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var e struct {
			Error string `json:"error"`
		}
		if resp.StatusCode != http.StatusForbidden || json.Unmarshal(b, &e) != nil || !strings.Contains(e.Error, "fabric") {
			t.Errorf("%s %s: %d %s, want 403 naming the fabric ledger", w.method, w.path, resp.StatusCode, b)
		}
	}
	after, err := l.GetHost(ctx(t), "hm3")
	if err != nil || after.TxID != before.TxID || after.Country != "DE" {
		t.Errorf("hm3 changed: %+v, %v", after, err)
	}
	rec, err := l.GetRegulation(ctx(t), vm)
	if err != nil || len(rec.Allow) != 4 {
		t.Errorf("the regulation changed: %+v, %v", rec, err)
	}
	// reads are served
	var h struct {
		Country string `json:"country"`
	}
	if st := f.getJSON(t, "/v1/hosts/hm3", &h); st != http.StatusOK || h.Country != "DE" {
		t.Errorf("GET /v1/hosts/hm3: %d %+v", st, h)
	}
}

// enforced polls the webhook for vm until hm5's presence in the answer is
// want, and returns when that was first seen; the test fails after a minute.
func enforced(tb testing.TB, f *filterd, uuid string, want bool) time.Time {
	tb.Helper()
	body := novaBody(uuid, "", table4Names)
	deadline := time.Now().Add(time.Minute)
	for {
		a, err := f.webhook(context.Background(), body)
		seen := time.Now()
		if err != nil {
			tb.Fatal(err)
		}
		if slices.Contains(a.hosts, "hm3") || slices.Contains(a.hosts, "hm4") {
			tb.Fatalf("non-compliant host in %v", a.hosts)
		}
		if slices.Contains(a.hosts, "hm5") == want {
			return seen
		}
		if seen.After(deadline) {
			tb.Fatalf("hm5 allowed %v a minute after the commit: %v", !want, a.hosts)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestFilterdEnforcesATightenedRegulation: vmm1 narrows VM1 to JP on the
// ledger; filterd's webhook stops offering hm5 (GB) once the change's event
// reaches its cache.
func TestFilterdEnforcesATightenedRegulation(t *testing.T) {
	vm := vmSubject(103)
	seedTable4(t, vm)
	f := startFilterd(t, "org1-user")
	if a := f.mustWebhook(t, novaBody(vm.ID(), "", table4Names)); !slices.Equal(a.hosts, []string{"hm1", "hm2", "hm5"}) {
		t.Fatalf("before: %v", a.hosts)
	}
	vmm := connect(t, "vmm1")
	rec, changed, err := vmm.PutRegulationJSON(ctx(t), vm, []byte(vm1Tightened))
	committed := time.Now()
	if err != nil || !changed {
		t.Fatalf("tighten: changed %v, %v", changed, err)
	}
	seen := enforced(t, f, vm.ID(), false)
	t.Logf("commit to enforcement: %s (regulation version %d)", seen.Sub(committed).Round(100*time.Microsecond), rec.Version)

	a := f.mustWebhook(t, novaBody(vm.ID(), "", table4Names))
	if !slices.Equal(a.hosts, []string{"hm1", "hm2"}) {
		t.Errorf("after: %v", a.hosts)
	}
	if r := reasons(f.decision(t, a.decision)); r["hm5"] != filter.CountryNotAllowed {
		t.Errorf("hm5: %q, want %s", r["hm5"], filter.CountryNotAllowed)
	}
	if n, ok := f.metric(t, "ledgerfence_event_stream_events_total", nil); !ok || n < 1 {
		t.Errorf("events applied: %v", n)
	}
}
