// Package flood replays, against a real filterd process, the floods an
// unauthenticated client can send, and checks that filterd's memory stays
// bounded and that a normal request keeps being answered correctly
// meanwhile.
//
// Each flood runs against a fresh filterd, so that its peak resident set
// (VmHWM) is the flood's. The bound asserted is the one filterd's defaults
// promise (256 MiB); the latency of the normal requests is logged, never
// asserted (shared machines are noisy). LEDGERFENCE_FLOOD_RESULTS, when set,
// names a file the figures are appended to.
package flood

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ledgerfence/ledgerfence/tests/integration/filterdtest"
)

const (
	vmUUID = "6f1c0d3e-8b2a-4c1d-9e7f-0a1b2c3d4e5f"
	// rssBound is what filterd's defaults promise under any of the floods.
	rssBound = 256 << 20
)

var bin string // directory of the built filterd

func TestMain(m *testing.M) {
	if base := os.Getenv("LEDGERFENCE_FLOOD_NORMAL"); base != "" {
		normalClient(base)
		return
	}
	dir, err := filterdtest.Build("filterd")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// filterd is a running filterd process.
type filterd struct {
	*filterdtest.Filterd
	base string
	addr string
	cmd  *exec.Cmd
}

func start(t *testing.T) *filterd {
	t.Helper()
	ff := filterdtest.Start(t, bin, filterdtest.Options{LogLevel: "error"})
	f := &filterd{Filterd: ff, base: ff.URL, addr: ff.Addr, cmd: ff.Cmd}
	for _, h := range []struct{ name, body string }{
		{"hm1", `{"country": "JP", "organizations": ["CompanyA", "CompanyB"]}`},
		{"hm3", `{"country": "DE", "organizations": ["CompanyA"]}`},
	} {
		f.Put(t, "/v1/hosts/"+h.name, []byte(h.body))
	}
	f.Put(t, "/v1/regulations/vm:"+vmUUID, []byte(`{"countries": ["JP", "GB"], "organizations": ["CompanyA", "CompanyB"]}`))
	return f
}

func (f *filterd) status(t *testing.T, field string) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", f.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, f.cmd.Process.Pid)
	return 0
}

// metric reads one sample of /metrics ("name{labels}" as written there).
func (f *filterd) metric(t *testing.T, series string) float64 {
	t.Helper()
	resp, err := http.Get(f.base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			x, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return x
		}
	}
	return 0
}

// body is Nova's request for the test VM over hosts.
func body(hosts []string, extra string) []byte { return bodyOf(hosts, extra, true) }

// bodyOf is body, with or without hypervisor names.
func bodyOf(hosts []string, extra string, hypervisors bool) []byte {
	var b bytes.Buffer
	b.WriteString(`{"spec": {"nova_object.name": "RequestSpec", "nova_object.data": {"instance_uuid": "` + vmUUID +
		`", "scheduler_hints": {"_nova_check_type": ["live_migrate"]}}}, "context": {"request_id": "req-flood"}, "hosts": [`)
	for i, h := range hosts {
		if i > 0 {
			b.WriteString(", ")
		}
		if hypervisors {
			b.WriteString(`{"host": "` + h + `", "hypervisor_hostname": "` + h + `"}`)
		} else {
			b.WriteString(`{"host": "` + h + `"}`)
		}
	}
	b.WriteString("]")
	if extra != "" {
		b.WriteString(`, "padding": "` + extra + `"`)
	}
	b.WriteString("}")
	return b.Bytes()
}

// normal runs the normal client in a process of its own (this test binary
// again), as Nova runs apart from whoever floods filterd, until stop; it
// returns the latencies and the wrong answers.
func (f *filterd) normal(t *testing.T, stop <-chan struct{}) (lat []time.Duration, wrong []string) {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "LEDGERFENCE_FLOOD_NORMAL="+f.base)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Error(err)
		return nil, nil
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Error(err)
		return nil, nil
	}
	<-stop
	in.Close()
	if err := cmd.Wait(); err != nil {
		t.Errorf("normal client: %v", err)
	}
	var res normalResult
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Errorf("normal client's figures %q: %v", out.Bytes(), err)
	}
	for _, us := range res.LatencyUS {
		lat = append(lat, time.Duration(us)*time.Microsecond)
	}
	return lat, res.Wrong
}

type normalResult struct {
	LatencyUS []int64  `json:"latency_us"`
	Wrong     []string `json:"wrong"`
}

// normalClient posts the normal request (hm1, hm3, and 1,000 unregistered
// hosts) to base every 20 ms until its stdin closes, and checks every
// answer: only hm1 may pass. It writes its figures to stdout.
func normalClient(base string) {
	hosts := []string{"hm1", "hm3"}
	for i := range 1000 {
		hosts = append(hosts, fmt.Sprintf("other-%04d", i))
	}
	req := body(hosts, "")
	var done atomic.Bool
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		done.Store(true)
	}()
	client := &http.Client{Timeout: 10 * time.Second}
	var res normalResult
	for !done.Load() {
		t0 := time.Now()
		resp, err := client.Post(base+"/scheduler/nova/external", "application/json", bytes.NewReader(req))
		if err != nil {
			res.Wrong = append(res.Wrong, err.Error())
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		res.LatencyUS = append(res.LatencyUS, time.Since(t0).Microseconds())
		if resp.StatusCode != http.StatusOK || string(b) != `{"hosts":["hm1"]}`+"\n" {
			res.Wrong = append(res.Wrong, fmt.Sprintf("%d %q", resp.StatusCode, b))
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = json.NewEncoder(os.Stdout).Encode(res)
}

// floodFor is how long each flood goes on, at least: attack is run again
// until then.
const floodFor = 3 * time.Second

// flood runs attack, again and again for floodFor, while normal requests
// go on, then checks the peak resident set and the normal answers, and
// reports the figures.
func flood(t *testing.T, f *filterd, attack func()) {
	t.Helper()
	stop := make(chan struct{})
	var (
		lat   []time.Duration
		wrong []string
		wg    sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		lat, wrong = f.normal(t, stop)
	}()
	for t0 := time.Now(); time.Since(t0) < floodFor; {
		attack()
	}
	close(stop)
	wg.Wait()
	hwm := f.status(t, "VmHWM")
	slices.Sort(lat)
	p := func(q float64) time.Duration {
		if len(lat) == 0 {
			return 0
		}
		return lat[min(len(lat)-1, int(q*float64(len(lat))))]
	}
	line := fmt.Sprintf("%s: peak RSS %.1f MiB; normal requests %d, wrong %d, p50 %.1f ms, p99 %.1f ms",
		t.Name(), float64(hwm)/(1<<20), len(lat), len(wrong), ms(p(0.5)), ms(p(0.99)))
	t.Log(line)
	if path := os.Getenv("LEDGERFENCE_FLOOD_RESULTS"); path != "" {
		if fh, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644); err == nil {
			fmt.Fprintln(fh, line)
			fh.Close()
		}
	}
	if hwm > rssBound {
		t.Errorf("peak RSS %d MiB, want <= %d MiB", hwm>>20, rssBound>>20)
	}
	if len(wrong) > 0 {
		t.Errorf("%d normal requests answered wrongly during the flood, e.g. %s", len(wrong), wrong[0])
	}
	if len(lat) < 5 {
		t.Errorf("only %d normal requests answered during the flood", len(lat))
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// 120 connections declare 8 MB bodies and send one byte each: nothing is
// reserved for what they declare, and each is answered {"hosts": []} at
// --read-timeout.
func TestFloodDeclaredLengths(t *testing.T) {
	f := start(t)
	flood(t, f, func() {
		var conns []net.Conn
		for range 120 {
			c, err := net.Dial("tcp", f.addr)
			if err != nil {
				t.Fatal(err)
			}
			conns = append(conns, c)
			fmt.Fprintf(c, "POST /scheduler/nova/external HTTP/1.1\r\nHost: x\r\nContent-Length: 8000000\r\n\r\n{")
		}
		// They hold their connections past filterd's read timeout (5 s).
		var answered atomic.Int32
		var wg sync.WaitGroup
		for _, c := range conns {
			wg.Add(1)
			go func(c net.Conn) {
				defer wg.Done()
				defer c.Close()
				_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
				resp, err := http.ReadResponse(bufio.NewReader(c), nil)
				if err != nil {
					return
				}
				b, _ := io.ReadAll(resp.Body)
				if resp.StatusCode == http.StatusOK && string(b) == `{"hosts":[]}`+"\n" {
					answered.Add(1)
				}
			}(c)
		}
		wg.Wait()
		if n := answered.Load(); n != 120 {
			t.Errorf("%d of 120 slow clients got {\"hosts\": []}, want all", n)
		}
	})
	if n := f.metric(t, `ledgerfence_limit_exceeded_total{limit="read_timeout"}`); n != 120 {
		t.Errorf("read timeouts counted %v, want 120", n)
	}
}

// 2,000 connections each send a request's headers, declaring a small body,
// and nothing more: nothing is set aside for bodies that have not arrived,
// and each is answered {"hosts": []} at --read-timeout.
func TestFloodHeldRequests(t *testing.T) {
	f := start(t)
	flood(t, f, func() {
		var conns []net.Conn
		for range 2000 {
			c, err := net.Dial("tcp", f.addr)
			if err != nil {
				t.Fatal(err)
			}
			conns = append(conns, c)
			fmt.Fprintf(c, "POST /scheduler/nova/external HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
		}
		time.Sleep(2 * time.Second)
		for _, c := range conns {
			c.Close()
		}
	})
}

// Six requests of 150,000 unknown host names for a regulated VM: the
// entries of unknown hosts stay bounded.
func TestFloodUnknownHosts(t *testing.T) {
	f := start(t)
	names := make([]string, 150_000)
	for i := range names {
		names[i] = fmt.Sprintf("unknown-%06d", i)
	}
	flood(t, f, func() {
		var wg sync.WaitGroup
		for round := range 6 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				hosts := make([]string, len(names))
				for i, n := range names {
					hosts[i] = n + "-" + strconv.Itoa(round)
				}
				req := bodyOf(hosts, "", false)
				if len(req) > 8<<20 {
					t.Errorf("the request is %d bytes, over filterd's --max-body", len(req))
				}
				resp, err := http.Post(f.base+"/scheduler/nova/external", "application/json", bytes.NewReader(req))
				if err != nil {
					t.Error(err)
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK || string(b) != `{"hosts":[]}`+"\n" {
					t.Errorf("150,000 unknown hosts: %d %.100q, want {\"hosts\":[]}", resp.StatusCode, b)
				}
			}()
		}
		wg.Wait()
	})
	decided := f.metric(t, `ledgerfence_webhook_requests_total{operation="live_migrate",outcome="denied_all"}`)
	if decided == 0 {
		t.Error("no request of 150,000 unknown hosts was decided (denied_all)")
	}
	t.Logf("requests of 150,000 unknown hosts decided: %v", decided)
	absent := f.metric(t, `ledgerfence_cache_entries{kind="host",state="absent"}`)
	if absent > 150_000+1000 {
		t.Errorf("%v unknown-host entries kept, want at most one request's (the bound is 100,000)", absent)
	}
}

// A hundred requests of 7 MB at once: bodies are held within
// --max-buffered, the rest answered {"hosts": []} (overloaded).
func TestFloodLargeBodies(t *testing.T) {
	f := start(t)
	big := body([]string{"hm1", "hm3"}, strings.Repeat("x", 7<<20))
	var answered, overloaded atomic.Int32
	flood(t, f, func() {
		var wg sync.WaitGroup
		for range 100 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				client := &http.Client{Timeout: 60 * time.Second}
				resp, err := client.Post(f.base+"/scheduler/nova/external", "application/json", bytes.NewReader(big))
				if err != nil {
					t.Error(err)
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				switch {
				case resp.StatusCode != http.StatusOK:
					t.Errorf("a 7 MB body: status %d", resp.StatusCode)
				case string(b) == `{"hosts":["hm1"]}`+"\n":
					answered.Add(1)
				case string(b) == `{"hosts":[]}`+"\n":
					overloaded.Add(1)
				default:
					t.Errorf("a 7 MB body: %.100q", b)
				}
			}()
		}
		wg.Wait()
	})
	t.Logf("7 MB bodies: %d decided, %d answered {\"hosts\": []} as overloaded", answered.Load(), overloaded.Load())
	// Whether any 7 MB body is read whole before the budget runs out
	// depends on how a hundred of them interleave; either way each is
	// answered as Nova can use, which is what is asserted.
	if n := answered.Load() + overloaded.Load(); n == 0 || n%100 != 0 {
		t.Errorf("%d + %d answers, want 100 a round", answered.Load(), overloaded.Load())
	}
	if n := f.metric(t, `ledgerfence_limit_exceeded_total{limit="max_buffered"}`) +
		f.metric(t, `ledgerfence_limit_exceeded_total{limit="max_large_in_flight"}`); int32(n) != overloaded.Load() {
		t.Errorf("max_buffered and max_large_in_flight counted %v, want %d", n, overloaded.Load())
	}
}

// 800 event streams: at most --max-streams (64) are served, the rest get
// 503 at once.
func TestFloodEventStreams(t *testing.T) {
	f := start(t)
	var served, refused atomic.Int32
	flood(t, f, func() {
		var conns []net.Conn
		var mu sync.Mutex
		var wg sync.WaitGroup
		for range 800 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := net.Dial("tcp", f.addr)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
				fmt.Fprintf(c, "GET /v1/events?after=0 HTTP/1.1\r\nHost: x\r\n\r\n")
				_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
				resp, err := http.ReadResponse(bufio.NewReader(c), nil)
				if err != nil {
					t.Error(err)
					return
				}
				switch resp.StatusCode {
				case http.StatusOK:
					served.Add(1)
				case http.StatusServiceUnavailable:
					refused.Add(1)
				}
			}()
		}
		wg.Wait()
		if g := f.metric(t, "ledgerfence_event_streams"); g > 64 {
			t.Errorf("%v streams served at once, want <= 64", g)
		}
		time.Sleep(floodFor) // held open
		for _, c := range conns {
			c.Close()
		}
	})
	t.Logf("event streams: %d served, %d refused", served.Load(), refused.Load())
	if served.Load() != 64 || served.Load()+refused.Load() != 800 {
		t.Errorf("%d served and %d refused, want at most 64 served and the rest refused", served.Load(), refused.Load())
	}
	if n := f.metric(t, `ledgerfence_limit_exceeded_total{limit="max_streams"}`); int32(n) != refused.Load() {
		t.Errorf("max_streams counted %v, want %d", n, refused.Load())
	}
}

// The decision store is bounded in bytes: many large decisions do not
// grow it past --decision-bytes.
func TestFloodDecisionStore(t *testing.T) {
	f := start(t)
	hosts := make([]string, 20_000)
	for i := range hosts {
		hosts[i] = fmt.Sprintf("compute-node-with-a-long-name-%06d.region.example.org", i)
	}
	req := body(hosts, "")
	flood(t, f, func() {
		for range 60 {
			resp, err := http.Post(f.base+"/scheduler/nova/external", "application/json", bytes.NewReader(req))
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
	var d struct {
		Decisions []json.RawMessage `json:"decisions"`
	}
	resp, err := http.Get(f.base + "/v1/decisions?limit=1000")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
		t.Fatal(err)
	}
	if evicted := f.metric(t, `ledgerfence_limit_exceeded_total{limit="decision_bytes"}`); evicted == 0 {
		t.Errorf("no decision evicted for bytes after 60 decisions of 20,000 hosts (%d kept)", len(d.Decisions))
	}
	t.Logf("decisions kept after 60 of 20,000 hosts: %d", len(d.Decisions))
}
