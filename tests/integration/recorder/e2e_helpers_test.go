package recorder_test

// Helpers of the end-to-end tests and benchmarks: the real binaries
// (filterd on its embedded ledger, recorder, ledgerctl, lfbench), built
// from this checkout, started as processes, and Nova's notifications made
// from the fixtures of pkg/nova/notify/testdata with a VM's uuid, hosts,
// times and message ids of the test's own.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/ledgerfence/ledgerfence/pkg/ledger"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/remote"
)

// e2eAdminToken is the filterds' operator token.
const e2eAdminToken = "recorder-e2e-admin-token"

// buildCommands builds the commands into a directory of t's and returns
// it (Go's build cache makes a build after the first a link only).
func buildCommands(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	start := time.Now()
	cmd := exec.Command("go", "build", "-o", dir+"/", "./cmd/filterd", "./cmd/ledgerctl", "./cmd/recorder", "./cmd/lfbench")
	cmd.Dir = repoRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	t.Logf("commands built in %v", time.Since(start).Round(time.Millisecond))
	return dir
}

// freeAddr is a free loopback address.
func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// syncBuffer is a process's output, safe to read while it writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// proc is a command started for a test; the test's end kills it.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
}

func startProc(t testing.TB, name string, cmd *exec.Cmd) *proc {
	t.Helper()
	p := &proc{name: name, cmd: cmd, out: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	go func() { _ = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("%s's output (last 8 KiB):\n%s", name, tail(p.out.String(), 8<<10))
		}
	})
	return p
}

// kill sends SIGKILL and waits for the process to end.
func (p *proc) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}

// filterd is a running filterd on an embedded ledger.
type filterd struct {
	*proc
	URL  string
	Data string
}

// startFilterd starts a filterd on a new embedded ledger, with the admin
// token, and waits until it is ready.
func startFilterd(t testing.TB, bin string, extra ...string) *filterd {
	t.Helper()
	addr := freeAddr(t)
	data := t.TempDir()
	cmd := exec.Command(filepath.Join(bin, "filterd"), append([]string{"--listen", addr, "--data", data, "--log-level", "warn"}, extra...)...)
	cmd.Env = append(os.Environ(), "LEDGERFENCE_ADMIN_TOKEN="+e2eAdminToken)
	f := &filterd{proc: startProc(t, "filterd", cmd), URL: "http://" + addr, Data: data}
	waitFor(t, 30*time.Second, "filterd ready", func() bool {
		if f.exited() {
			t.Fatalf("filterd exited:\n%s", f.out.String())
		}
		resp, err := http.Get(f.URL + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return f
}

// issueToken issues a writer token of role for the embedded ledger in
// data with `ledgerctl token issue`, and returns it.
func issueToken(t testing.TB, bin, data, role, id string) string {
	t.Helper()
	out, err := exec.Command(filepath.Join(bin, "ledgerctl"), "token", "issue", "--data", data, "--role", role, "--id", id, "-o", "json").Output()
	if err != nil {
		t.Fatalf("ledgerctl token issue: %v", err)
	}
	var tok struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(out, &tok); err != nil || tok.Token == "" {
		t.Fatalf("ledgerctl token issue: %q: %v", out, err)
	}
	return tok.Token
}

// call sends a REST request with token and decodes a 200's JSON answer
// into out (when not nil).
func call(t testing.TB, method, url, token string, body, out any) {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s %s: %d %s", method, url, resp.StatusCode, data)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, url, err, data)
		}
	}
}

// putHost registers a host through filterd's REST API.
func (f *filterd) putHost(t testing.TB, name, country string, orgs ...string) {
	t.Helper()
	call(t, http.MethodPut, f.URL+"/v1/hosts/"+name, e2eAdminToken, map[string]any{"country": country, "organizations": orgs}, nil)
}

// putRegulation puts subject's regulation and returns its version.
func (f *filterd) putRegulation(t testing.TB, subject string, allow ...map[string]string) uint64 {
	t.Helper()
	var rec struct {
		Version uint64 `json:"version"`
	}
	call(t, http.MethodPut, f.URL+"/v1/regulations/"+subject, e2eAdminToken, map[string]any{"allow": allow}, &rec)
	return rec.Version
}

// height is the ledger's height (GET /v1/ledger).
func (f *filterd) height(t testing.TB) uint64 {
	t.Helper()
	var info struct {
		Height uint64 `json:"height"`
	}
	call(t, http.MethodGet, f.URL+"/v1/ledger", "", nil, &info)
	return info.Height
}

// placements reads a VM's or a project's placements (GET /v1/placements).
func (f *filterd) placements(t testing.TB, q ledger.PlacementQuery) []ledger.PlacementRecord {
	t.Helper()
	c, err := remote.New(f.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ps, err := c.Placements(context.Background(), q)
	if err != nil {
		t.Fatalf("placements: %v", err)
	}
	return ps
}

// recorderProc is a running recorder command.
type recorderProc struct {
	*proc
	metricsURL string
}

// startRecorder starts `recorder` against filterd at ledgerURL with token,
// consuming amqpURL's queue, and waits until it consumes.
func startRecorder(t testing.TB, bin, name, ledgerURL, token, amqpURL string, extra ...string) *recorderProc {
	t.Helper()
	addr := freeAddr(t)
	cmd := exec.Command(filepath.Join(bin, "recorder"), append([]string{"--metrics-listen", addr, "--log-level", "warn"}, extra...)...)
	cmd.Env = append(os.Environ(), "LEDGERFENCE_LEDGER="+ledgerURL, "LEDGERFENCE_TOKEN="+token, "LEDGERFENCE_AMQP_URL="+amqpURL)
	r := &recorderProc{proc: startProc(t, name, cmd), metricsURL: "http://" + addr + "/metrics"}
	waitFor(t, 30*time.Second, name+" consuming", func() bool {
		if r.exited() {
			t.Fatalf("%s exited:\n%s", name, r.out.String())
		}
		v, err := r.metric("ledgerfence_recorder_connected")
		return err == nil && v == 1
	})
	return r
}

// metric reads one series of the recorder's /metrics: name, with its
// labels as exposed, e.g. ledgerfence_recorder_messages_total{result="malformed"}.
func (r *recorderProc) metric(series string) (float64, error) {
	resp, err := http.Get(r.metricsURL)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, fmt.Errorf("%s: no series %s", r.metricsURL, series)
}

// messages is the recorder's ledgerfence_recorder_messages_total of result.
func (r *recorderProc) messages(t testing.TB, result string) float64 {
	t.Helper()
	v, err := r.metric(`ledgerfence_recorder_messages_total{result="` + result + `"}`)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// rssKiB is a process's resident set (VmRSS of /proc/PID/status), in KiB.
func rssKiB(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) >= 1 {
				return strconv.ParseInt(f[0], 10, 64)
			}
		}
	}
	return 0, errors.New("no VmRSS")
}

// cpuTime is a process's CPU time, user and system (/proc/PID/stat, in
// clock ticks of 10 ms).
func cpuTime(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command's name, in parentheses, may hold spaces: fields count
	// from the last ')'.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, errors.New("malformed stat")
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 13 {
		return 0, errors.New("malformed stat")
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("malformed stat")
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond, nil
}

// machineBusy is the machine's CPU time busy and in all, from /proc/stat
// (clock ticks); iowait counts as idle.
func machineBusy() (busy, all int64) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line)
	for i, v := range f[1:] {
		n, _ := strconv.ParseInt(v, 10, 64)
		all += n
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return busy, all
}

// loadAverage is the machine's load average over the last minute (other
// work shares the machine: a figure is read with it).
func loadAverage() float64 {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	f := strings.Fields(string(data))
	if len(f) == 0 {
		return -1
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

// ledgerctl runs ledgerctl with args and returns its output and exit code
// (a failure to run it fails t).
func ledgerctl(t testing.TB, bin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	stdout, stderr, code, _ = ledgerctlCPU(t, bin, args...)
	return stdout, stderr, code
}

// ledgerctlCPU is ledgerctl, also returning the CPU time (user and system)
// the command took.
func ledgerctlCPU(t testing.TB, bin string, args ...string) (stdout, stderr string, code int, cpu time.Duration) {
	t.Helper()
	home := t.TempDir()
	cmd := exec.Command(filepath.Join(bin, "ledgerctl"), args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "XDG_STATE_HOME=" + filepath.Join(home, "state")}
	var out, errs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errs
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("ledgerctl %s: %v", strings.Join(args, " "), err)
	}
	if ps := cmd.ProcessState; ps != nil {
		cpu = ps.UserTime() + ps.SystemTime()
	}
	return out.String(), errs.String(), code, cpu
}

// newUUID is a random UUID (version 4), lower case.
func newUUID() string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// newProject is a random Keystone project id (32 hex digits).
func newProject() string { return strings.ReplaceAll(newUUID(), "-", "") }

// novaEvent says how to rewrite a fixture into one of a test's messages.
type novaEvent struct {
	Fixture   string    // name in notifications.json
	EventType string    // "": the fixture's
	VM        string    // instance uuid
	Project   string    // tenant id
	Host      string    // the payload's host (and node); "": null
	Publisher string    // the nova-compute that sends it (publisher_id nova-compute:<Publisher>)
	At        time.Time // oslo's timestamp
	MessageID string    // "": a new uuid
}

var (
	fixtureMu  sync.Mutex
	fixtureMsg map[string]map[string]any // the fixtures' oslo messages, by name
)

// fixtureMessage returns a copy of the named fixture's oslo message (the
// notification inside the envelope).
func fixtureMessage(t testing.TB, name string) map[string]any {
	t.Helper()
	fixtureMu.Lock()
	defer fixtureMu.Unlock()
	if fixtureMsg == nil {
		fixtureMsg = map[string]map[string]any{}
		for _, f := range fixtures(t) {
			var env map[string]any
			if err := json.Unmarshal([]byte(f.Body), &env); err != nil {
				t.Fatal(err)
			}
			s, ok := env["oslo.message"].(string)
			if !ok {
				continue
			}
			var msg map[string]any
			if err := json.Unmarshal([]byte(s), &msg); err != nil {
				t.Fatal(err)
			}
			fixtureMsg[f.Name] = msg
		}
	}
	m, ok := fixtureMsg[name]
	if !ok {
		t.Fatalf("no enveloped fixture %q", name)
	}
	var c map[string]any
	b, _ := json.Marshal(m)
	_ = json.Unmarshal(b, &c)
	return c
}

// body returns e as oslo.messaging's messagingv2 driver sends it: the
// notification as a JSON string in the envelope {"oslo.version": "2.0",
// "oslo.message": ...}. It sets e.MessageID when empty.
func (e *novaEvent) body(t testing.TB) []byte {
	t.Helper()
	if e.MessageID == "" {
		e.MessageID = newUUID()
	}
	msg := fixtureMessage(t, e.Fixture)
	at := e.At.UTC()
	msg["message_id"] = e.MessageID
	msg["_unique_id"] = strings.ReplaceAll(newUUID(), "-", "")
	msg["publisher_id"] = "nova-compute:" + e.Publisher
	msg["timestamp"] = at.Format("2006-01-02 15:04:05.000000")
	msg["_context_timestamp"] = at.Format("2006-01-02T15:04:05.000000")
	req := "req-" + newUUID()
	msg["_context_request_id"] = req
	msg["_context_project_id"] = e.Project
	msg["_context_project"] = e.Project
	if e.EventType != "" {
		msg["event_type"] = e.EventType
	}
	payload, _ := msg["payload"].(map[string]any)
	data, _ := payload["nova_object.data"].(map[string]any)
	if data == nil {
		t.Fatalf("fixture %s has no instance payload", e.Fixture)
	}
	data["uuid"] = e.VM
	data["tenant_id"] = e.Project
	data["request_id"] = req
	data["updated_at"] = at.Format(time.RFC3339)
	if e.Host == "" {
		data["host"], data["node"] = nil, nil
	} else {
		data["host"], data["node"] = e.Host, e.Host
	}
	inner, err := json.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	out, err := json.Marshal(map[string]string{"oslo.version": "2.0", "oslo.message": string(inner)})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// publisher publishes to Nova's exchange on one connection, with the
// broker's confirms.
type publisher struct {
	conn *amqp.Connection
	ch   *amqp.Channel
}

func newPublisher(t testing.TB, url string) *publisher {
	t.Helper()
	c, err := amqp.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	ch, err := c.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	p := &publisher{conn: c, ch: ch}
	t.Cleanup(func() { c.Close() })
	return p
}

// send publishes bodies (routing key versioned_notifications.info,
// persistent) and waits for their confirms.
func (p *publisher) send(t testing.TB, bodies ...[]byte) {
	t.Helper()
	if err := p.sendErr(bodies...); err != nil {
		t.Fatal(err)
	}
}

func (p *publisher) sendErr(bodies ...[]byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	confs := make([]*amqp.DeferredConfirmation, 0, len(bodies))
	for _, b := range bodies {
		dc, err := p.ch.PublishWithDeferredConfirmWithContext(ctx, "nova", "versioned_notifications.info", false, false,
			amqp.Publishing{ContentType: "application/json", ContentEncoding: "utf-8", DeliveryMode: amqp.Persistent, Body: b})
		if err != nil {
			return err
		}
		confs = append(confs, dc)
	}
	for i, dc := range confs {
		ok, err := dc.WaitContext(ctx)
		if err != nil || !ok {
			return fmt.Errorf("message %d not confirmed: %v", i, err)
		}
	}
	return nil
}
