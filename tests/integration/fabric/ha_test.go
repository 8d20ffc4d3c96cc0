package fabric_test

// High availability: two filterd replicas on the Fabric ledger behind a real
// HAProxy, configured by deploy/haproxy/haproxy.cfg itself (rewritten only
// for addresses, paths and what needs root). One replica at a time is
// killed with SIGKILL and started again while several clients keep posting
// Nova's webhook; no answer may be anything but 200 with exactly the
// compliant hosts.
//
// With LEDGERFENCE_HA_RESULTS naming a file, TestHAProxyFailover appends its
// figures to it as one JSON line; they are logged either way.

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
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
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ledgerfence/ledgerfence/tests/integration/fabricnet"
)

// haDecisionTimeout is filterd's --decision-timeout behind HAProxy, as
// deploy/haproxy/haproxy.cfg asks: below its 500 ms "timeout server".
const haDecisionTimeout = "400ms"

// novaTimeout is how long Nova's filter waits for the whole call.
const novaTimeout = 2 * time.Second

// repoRoot is the repository's top folder.
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..")
}

// haproxyPath finds the haproxy command (on the PATH, or where Debian puts
// it, which is not on an unprivileged user's PATH); without it the test is
// skipped, or fails when LEDGERFENCE_REQUIRE_INTEGRATION=1.
func haproxyPath(tb testing.TB) string {
	tb.Helper()
	p, err := exec.LookPath("haproxy")
	if err != nil {
		p, err = exec.LookPath("/usr/sbin/haproxy")
	}
	if err != nil {
		msg := "haproxy is not installed, neither on the PATH nor in /usr/sbin (make deps installs it)"
		if os.Getenv("LEDGERFENCE_REQUIRE_INTEGRATION") == "1" {
			tb.Fatal(msg)
		}
		tb.Skip(msg)
	}
	return p
}

// haproxyConfig rewrites the deployment's configuration for a test run:
// the frontend listens on listen, the backend's server lines (exactly
// len(servers) of them, in order) get servers' addresses, the log goes to
// stdout, the stats socket is in dir, the error files are read from
// errorFile, and the lines that need root (chroot, user, group, daemon)
// are dropped. Everything else (timeouts, retries, checks, buffers) is
// kept as written.
func haproxyConfig(template []byte, listen string, servers []string, dir, errorFile string) (string, error) {
	var out strings.Builder
	binds, srv, logs, sockets, errorfiles := 0, 0, 0, 0, 0
	sc := bufio.NewScanner(bytes.NewReader(template))
	for sc.Scan() {
		line := sc.Text()
		indent := line[:len(line)-len(strings.TrimLeft(line, " \t"))]
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			out.WriteString(line + "\n")
			continue
		}
		switch {
		case f[0] == "chroot" || f[0] == "user" || f[0] == "group" || f[0] == "daemon":
			continue
		case f[0] == "log" && len(f) > 1 && f[1] != "global":
			if logs++; logs > 1 {
				continue
			}
			line = indent + "log stdout format raw local0"
		case f[0] == "stats" && len(f) > 1 && f[1] == "socket":
			sockets++
			line = indent + "stats socket " + filepath.Join(dir, "admin.sock") + " mode 600 level admin"
		case f[0] == "bind":
			binds++
			line = indent + "bind " + listen
		case f[0] == "server" && len(f) >= 3:
			if srv >= len(servers) {
				return "", fmt.Errorf("more server lines than the %d replicas", len(servers))
			}
			f[2] = servers[srv]
			srv++
			line = indent + strings.Join(f, " ")
		case f[0] == "errorfile" && len(f) == 3:
			errorfiles++
			line = indent + "errorfile " + f[1] + " " + errorFile
		}
		out.WriteString(line + "\n")
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	if binds != 1 || srv != len(servers) || sockets != 1 || errorfiles == 0 {
		return "", fmt.Errorf("want one bind, %d servers, one stats socket and the error files; found %d, %d, %d, %d",
			len(servers), binds, srv, sockets, errorfiles)
	}
	return out.String(), nil
}

// haproxy is a running HAProxy in the foreground.
type haproxy struct {
	url    string
	socket string
	cmd    *exec.Cmd
	out    logBuffer
	done   chan struct{}
}

// startHAProxy runs haproxy -db with the deployment's configuration in
// front of servers, and waits until every server is up. It is stopped when
// the test ends.
func startHAProxy(tb testing.TB, servers []string) *haproxy {
	tb.Helper()
	bin := haproxyPath(tb)
	root := repoRoot()
	template, err := os.ReadFile(filepath.Join(root, "deploy", "haproxy", "haproxy.cfg"))
	if err != nil {
		tb.Fatal(err)
	}
	dir := tb.TempDir()
	listen := freeAddr(tb)
	cfg, err := haproxyConfig(template, listen, servers, dir, filepath.Join(root, "deploy", "haproxy", "fail-closed.http"))
	if err != nil {
		tb.Fatalf("deploy/haproxy/haproxy.cfg: %v", err)
	}
	path := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		tb.Fatal(err)
	}
	h := &haproxy{url: "http://" + listen, socket: filepath.Join(dir, "admin.sock"), done: make(chan struct{})}
	h.cmd = exec.Command(bin, "-f", path, "-db")
	h.cmd.Stdout, h.cmd.Stderr = &h.out, &h.out
	h.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := h.cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	go func() {
		h.cmd.Wait()
		close(h.done)
	}()
	tb.Cleanup(func() {
		if h.exited() {
			tb.Errorf("haproxy exited by itself: %v", h.cmd.ProcessState)
		}
		h.stop()
		if tb.Failed() {
			tb.Logf("haproxy output:\n%s", fabricnet.LastLines(h.out.String(), 80))
		}
	})
	for _, s := range serverNames(len(servers)) {
		h.waitState(tb, s, "UP", 30*time.Second)
	}
	return h
}

// exited reports whether haproxy has ended.
func (h *haproxy) exited() bool {
	select {
	case <-h.done:
		return true
	default:
		return false
	}
}

func (h *haproxy) stop() {
	select {
	case <-h.done:
		return
	default:
	}
	syscall.Kill(-h.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-h.done:
	case <-time.After(10 * time.Second):
		syscall.Kill(-h.cmd.Process.Pid, syscall.SIGKILL)
		<-h.done
	}
}

// serverNames are the names of the configuration's server lines.
func serverNames(n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("filterd%d", i+1)
	}
	return names
}

// stat is HAProxy's "show stat" for the backend: a row per server and one
// for the backend (BACKEND), each column by its name.
func (h *haproxy) stat() (map[string]map[string]string, error) {
	c, err := net.DialTimeout("unix", h.socket, time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "show stat\n"); err != nil {
		return nil, err
	}
	b, err := io.ReadAll(c)
	if err != nil {
		return nil, err
	}
	r := csv.NewReader(bytes.NewReader(bytes.TrimPrefix(b, []byte("# "))))
	r.FieldsPerRecord = -1
	rows, err := r.ReadAll()
	if err != nil || len(rows) < 2 {
		return nil, fmt.Errorf("show stat: %v %q", err, b)
	}
	out := map[string]map[string]string{}
	for _, row := range rows[1:] {
		if len(row) < 2 || row[0] != "filterd" {
			continue
		}
		m := map[string]string{}
		for i, name := range rows[0] {
			if i < len(row) {
				m[name] = row[i]
			}
		}
		out[row[1]] = m
	}
	return out, nil
}

// waitState waits until HAProxy reports server in state ("UP", "DOWN").
func (h *haproxy) waitState(tb testing.TB, server, state string, within time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(within)
	var last string
	for {
		select {
		case <-h.done:
			tb.Fatalf("haproxy exited: %v\n%s", h.cmd.ProcessState, h.out.String())
		default:
		}
		st, err := h.stat()
		if err == nil {
			last = st[server]["status"]
			if last == state {
				return
			}
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			tb.Fatalf("haproxy: %s is %q after %s, want %s", server, last, within, state)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// haRequest is one kind of webhook request of the load and its only right
// answer.
type haRequest struct {
	name string
	body []byte
	want []string
}

// haRequests are a regulated VM's (JP and GB) and a tighter VM's (JP)
// requests over Table 4 with an unregistered host, and the first VM's over
// 1,000 hosts (Table 4 among 995 unregistered ones): Nova's request at
// its usual size, about 100 KB.
func haRequests(tb testing.TB, vmA, vmB string) []haRequest {
	tb.Helper()
	small := append(slices.Clone(table4Names), uniq("ha-none"))
	var big []string
	for i := range 1000 {
		if i%200 == 0 { // hm1 first, then one of Table 4 every 200 hosts
			big = append(big, table4Names[i/200])
			continue
		}
		big = append(big, fmt.Sprintf("%s-%04d.cc.example", uniq("ha-none"), i))
	}
	compliant := func(names []string, allowed ...string) []string {
		var out []string
		for _, n := range names {
			if slices.Contains(allowed, n) {
				out = append(out, n)
			}
		}
		return out
	}
	return []haRequest{
		{name: "VM A (JP, GB), 6 hosts", body: novaBody(vmA, "", small), want: []string{"hm1", "hm2", "hm5"}},
		{name: "VM B (JP), 6 hosts", body: novaBody(vmB, "", small), want: []string{"hm1", "hm2"}},
		{name: "VM A (JP, GB), 1,000 hosts", body: novaBody(vmA, "", big), want: compliant(big, "hm1", "hm2", "hm5")},
	}
}

// haAnswer is what one request through HAProxy got.
type haAnswer struct {
	start   time.Time
	took    time.Duration
	replica string
	fault   string // "" when the answer was 200 with exactly the compliant hosts
}

// haLoad posts the requests through HAProxy from several clients, as
// Nova's schedulers do: one keeps its connection (as the devstack plugin's
// filter does), the others open a connection per request (as SAP's Nova's
// requests.post does).
type haLoad struct {
	stop    chan struct{}
	wg      sync.WaitGroup
	mu      sync.Mutex
	answers []haAnswer
}

func startHALoad(url string, clients int, reqs []haRequest) *haLoad {
	l := &haLoad{stop: make(chan struct{})}
	for c := range clients {
		client := &http.Client{Timeout: novaTimeout, Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
		l.wg.Go(func() {
			defer client.CloseIdleConnections()
			for i := c; ; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				a := post(client, url, reqs[i%len(reqs)])
				if c != 0 {
					client.CloseIdleConnections()
				}
				l.mu.Lock()
				l.answers = append(l.answers, a)
				l.mu.Unlock()
				time.Sleep(2 * time.Millisecond) // pace the load on a shared machine
			}
		})
	}
	return l
}

// post sends one request and judges its answer.
func post(client *http.Client, url string, r haRequest) haAnswer {
	a := haAnswer{start: time.Now()}
	resp, err := client.Post(url+"/scheduler/nova/external", "application/json", bytes.NewReader(r.body))
	if err != nil {
		a.took = time.Since(a.start)
		a.fault = fmt.Sprintf("%s: %v", r.name, err)
		return a
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	a.took = time.Since(a.start)
	a.replica = resp.Header.Get("X-Ledgerfence-Replica")
	var out struct {
		Hosts []string `json:"hosts"`
	}
	switch {
	case err != nil:
		a.fault = fmt.Sprintf("%s: reading the answer: %v", r.name, err)
	case resp.StatusCode != http.StatusOK:
		a.fault = fmt.Sprintf("%s: %d %.200s", r.name, resp.StatusCode, b)
	case json.Unmarshal(b, &out) != nil || !slices.Equal(out.Hosts, r.want):
		a.fault = fmt.Sprintf("%s: %.200s from %q (fail-closed by haproxy: %q), want %d hosts %.80v",
			r.name, b, a.replica, resp.Header.Get("X-Ledgerfence-Fail-Closed"), len(r.want), r.want)
	}
	return a
}

func (l *haLoad) end() []haAnswer {
	close(l.stop)
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.answers
}

// served counts the answers replica gave that started after since.
func (l *haLoad) served(replica string, since time.Time) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, a := range l.answers {
		if a.replica == replica && a.start.After(since) && a.fault == "" {
			n++
		}
	}
	return n
}

// waitServed waits until replica has answered n requests started after since.
func (l *haLoad) waitServed(tb testing.TB, replica string, since time.Time, n int) {
	tb.Helper()
	for deadline := time.Now().Add(30 * time.Second); l.served(replica, since) < n; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			tb.Fatalf("%s answered %d requests in 30 s after it was back, want %d", replica, l.served(replica, since), n)
		}
	}
}

// pct is the p-th percentile of ds (sorted in place).
func pct(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	i := int(p*float64(len(ds))+0.5) - 1
	return ds[max(0, min(i, len(ds)-1))]
}

// window is a replica's failover: from its kill until HAProxy had it up
// again.
type window struct {
	replica  string
	from, to time.Time
}

// TestHAProxyFailover kills each of two replicas in turn with SIGKILL under
// a steady webhook load through HAProxy, waits, starts it again, and keeps
// the load until HAProxy has it back and it answers again. Every answer
// must be 200 with exactly the compliant hosts; the number of failed
// answers and the latencies while a replica was away are reported.
func TestHAProxyFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("kills filterd replicas")
	}
	haproxyPath(t)
	needNetwork(t)
	vmA, vmB := vmSubject(130), vmSubject(131)
	seedTable4(t, vmA)
	putRegulation(t, vmB, vm1Tightened)
	reqs := haRequests(t, vmA.ID(), vmB.ID())

	// One replica reads through each organisation's peer.
	identities := []string{"org1-user", "org2-user"}
	addrs := []string{freeAddr(t), freeAddr(t)}
	replicas := make([]*filterd, len(addrs))
	for i := range replicas {
		replicas[i] = startFilterdAt(t, addrs[i], identities[i], "--decision-timeout", haDecisionTimeout)
		for _, r := range reqs { // each replica's own answer first
			if a := replicas[i].mustWebhook(t, r.body); !slices.Equal(a.hosts, r.want) {
				t.Fatalf("replica %d, %s: %d hosts, want %v", i+1, r.name, len(a.hosts), r.want)
			}
		}
	}
	h := startHAProxy(t, addrs)
	names := serverNames(len(addrs))

	l := startHALoad(h.url, 4, reqs)
	loadEnded := false
	defer func() {
		if !loadEnded {
			l.end()
		}
	}()
	began := time.Now()
	time.Sleep(time.Second) // steady load first

	var windows []window
	for i := range replicas {
		from := time.Now()
		replicas[i].kill()
		h.waitState(t, names[i], "DOWN", 10*time.Second)
		time.Sleep(time.Second) // a replica stays dead a while
		replicas[i] = startFilterdAt(t, addrs[i], identities[i], "--decision-timeout", haDecisionTimeout)
		h.waitState(t, names[i], "UP", 30*time.Second)
		to := time.Now()
		windows = append(windows, window{replica: names[i], from: from, to: to})
		l.waitServed(t, names[i], to, 20) // back in the rotation
		t.Logf("%s: killed, down in HAProxy, started again and up in HAProxy %s after the kill",
			names[i], to.Sub(from).Round(time.Millisecond))
		time.Sleep(500 * time.Millisecond)
	}
	answers := l.end()
	loadEnded = true
	ended := time.Now()

	var all, during, outside []time.Duration
	var faults []string
	perReplica := map[string]int{}
	for _, a := range answers {
		all = append(all, a.took)
		away := false
		for _, w := range windows {
			away = away || (!a.start.Before(w.from) && a.start.Before(w.to))
		}
		if away {
			during = append(during, a.took)
		} else {
			outside = append(outside, a.took)
		}
		perReplica[a.replica]++
		if a.fault != "" {
			faults = append(faults, a.fault)
		}
	}
	for i, f := range faults {
		if i == 20 {
			t.Errorf("... and %d more", len(faults)-20)
			break
		}
		t.Error(f)
	}
	st, err := h.stat()
	if err != nil {
		t.Fatal(err)
	}
	be := st["BACKEND"]
	res := map[string]any{
		"answers":        len(answers),
		"failed":         len(faults),
		"seconds":        ended.Sub(began).Seconds(),
		"during":         len(during),
		"p99_ms":         ms(pct(all, 0.99)),
		"during_p50_ms":  ms(pct(during, 0.50)),
		"during_p99_ms":  ms(pct(during, 0.99)),
		"during_max_ms":  ms(pct(during, 1)),
		"steady_p50_ms":  ms(pct(outside, 0.50)),
		"steady_p99_ms":  ms(pct(outside, 0.99)),
		"steady_max_ms":  ms(pct(outside, 1)),
		"retries":        be["wretr"],
		"redispatches":   be["wredis"],
		"per_replica":    perReplica,
		"haproxy":        haproxyVersion(t),
		"unix_timestamp": began.Unix(),
	}
	t.Logf("through HAProxy, %d answers in %.1f s, %d failed; while a replica was away (%d answers) p50 %.2f ms, p99 %.2f ms, max %.1f ms; "+
		"with both up (%d) p50 %.2f ms, p99 %.2f ms, max %.1f ms; HAProxy retried %s and redispatched %s; answers per replica %v",
		len(answers), res["seconds"], len(faults), len(during), res["during_p50_ms"], res["during_p99_ms"], res["during_max_ms"],
		len(outside), res["steady_p50_ms"], res["steady_p99_ms"], res["steady_max_ms"], be["wretr"], be["wredis"], perReplica)
	if path := os.Getenv("LEDGERFENCE_HA_RESULTS"); path != "" {
		line, _ := json.Marshal(res)
		f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err == nil {
			_, err = f.Write(append(line, '\n'))
			f.Close()
		}
		if err != nil {
			t.Errorf("results file: %v", err)
		}
	}

	// Every replica gone: HAProxy answers for them as filterd would when it
	// cannot decide, so that Nova fails the pass closed instead of taking
	// every host.
	for _, r := range replicas {
		r.kill()
	}
	client := &http.Client{Timeout: novaTimeout, Transport: &http.Transport{}} // a connection of its own, as SAP's Nova
	resp, err := client.Post(h.url+"/scheduler/nova/external", "application/json", bytes.NewReader(reqs[0].body))
	if err != nil {
		time.Sleep(100 * time.Millisecond)
		t.Fatalf("no replica: %v (haproxy exited: %v %v)", err, h.exited(), h.cmd.ProcessState)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(b) != `{"hosts":[]}`+"\n" || resp.Header.Get("X-Ledgerfence-Fail-Closed") != "haproxy" {
		t.Errorf("no replica: %d %q %v, want 200 {\"hosts\":[]} from haproxy", resp.StatusCode, b, resp.Header)
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// haproxyVersion is the first line of haproxy -v.
func haproxyVersion(tb testing.TB) string {
	out, err := exec.Command(haproxyPath(tb), "-v").Output()
	if err != nil {
		return err.Error()
	}
	line, _, _ := strings.Cut(string(out), "\n")
	return line
}

// dropper is a replica that is ready but drops every webhook request after
// reading it whole: it closes the connection, or resets it (as the kernel
// does for a killed process), without a byte of answer.
type dropper struct {
	addr    string
	dropped atomic.Int64
}

func startDropper(t *testing.T) *dropper {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &dropper{addr: ln.Addr().String()}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, `{"status":"ready"}`) })
	mux.HandleFunc("POST /scheduler/nova/external", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		c, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		if d.dropped.Add(1)%2 == 0 {
			c.(*net.TCPConn).SetLinger(0) // RST
		}
		c.Close()
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return d
}

// TestHAProxyRetriesADroppedRequest: a replica that takes Nova's request
// and dies before answering costs Nova nothing: HAProxy sends the whole
// 1,000-host request again to the other replica. A request larger than
// HAProxy's buffer (tune.bufsize) cannot be kept for that, and fails closed.
func TestHAProxyRetriesADroppedRequest(t *testing.T) {
	haproxyPath(t)
	needNetwork(t)
	vmA, vmB := vmSubject(132), vmSubject(133)
	seedTable4(t, vmA)
	putRegulation(t, vmB, vm1Tightened)
	reqs := haRequests(t, vmA.ID(), vmB.ID())
	f := startFilterd(t, "org1-user", "--decision-timeout", haDecisionTimeout)
	d := startDropper(t)
	h := startHAProxy(t, []string{d.addr, strings.TrimPrefix(f.url, "http://")})

	client := &http.Client{Timeout: novaTimeout}
	big := reqs[2]
	t.Logf("a 1,000-host request is %d bytes", len(big.body))
	for i := range 20 {
		if a := post(client, h.url, big); a.fault != "" || a.replica != "filterd2" {
			t.Errorf("request %d: %s (replica %q)", i, a.fault, a.replica)
		}
	}
	if d.dropped.Load() == 0 {
		t.Fatal("no request reached the dropping replica: nothing was retried")
	}
	t.Logf("the dropping replica dropped %d of 20 requests; HAProxy sent each again", d.dropped.Load())

	// 3,000 hosts, over 256 KiB: HAProxy forwards it before it has all of
	// it, so it keeps no copy, and one the dropper takes is not retried.
	// Its client opens a connection per request, as SAP's Nova does: on a
	// connection's later request HAProxy 2.6 would close the connection
	// instead of answering, for the client to send it again.
	client = &http.Client{Timeout: novaTimeout, Transport: &http.Transport{DisableKeepAlives: true}}
	var huge []string
	for i := range 3000 {
		huge = append(huge, fmt.Sprintf("%s-%04d.cc.example", uniq("ha-huge"), i))
	}
	huge = append(huge, "hm1")
	r := haRequest{name: "3,001 hosts", body: novaBody(vmA.ID(), "", huge), want: []string{"hm1"}}
	before := d.dropped.Load()
	var failClosed, right int
	for i := 0; i < 20 && (failClosed == 0 || right == 0); i++ {
		resp, err := client.Post(h.url+"/scheduler/nova/external", "application/json", bytes.NewReader(r.body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch {
		case resp.StatusCode == http.StatusOK && string(b) == `{"hosts":["hm1"]}`+"\n":
			right++
		case resp.StatusCode == http.StatusOK && string(b) == `{"hosts":[]}`+"\n" && resp.Header.Get("X-Ledgerfence-Fail-Closed") == "haproxy":
			failClosed++
		default:
			t.Fatalf("%s (%d bytes): %d %.200s", r.name, len(r.body), resp.StatusCode, b)
		}
	}
	t.Logf("a %d-byte request: %d answered, %d failed closed by HAProxy (dropped %d times)", len(r.body), right, failClosed, d.dropped.Load()-before)
	if failClosed == 0 || right == 0 {
		t.Errorf("a request over the buffer: %d answered, %d failed closed; want both", right, failClosed)
	}
}

// TestHAProxyConfigIsValid: haproxy -c accepts the deployment's file as
// shipped, with only the error file's path pointing into the repository.
func TestHAProxyConfigIsValid(t *testing.T) {
	bin := haproxyPath(t)
	root := repoRoot()
	b, err := os.ReadFile(filepath.Join(root, "deploy", "haproxy", "haproxy.cfg"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.ReplaceAll(string(b), "/etc/haproxy/errors/ledgerfence-fail-closed.http",
		filepath.Join(root, "deploy", "haproxy", "fail-closed.http"))
	path := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "-c", "-f", path).CombinedOutput()
	if err != nil {
		t.Fatalf("haproxy -c: %v\n%s", err, out)
	}
	if strings.Contains(string(out), "WARNING") {
		t.Errorf("haproxy -c warns:\n%s", out)
	}
}
