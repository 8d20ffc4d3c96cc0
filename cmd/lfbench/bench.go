package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/ledgerfence/ledgerfence/pkg/api"
	"github.com/ledgerfence/ledgerfence/pkg/cache"
	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/embedded"
	"github.com/ledgerfence/ledgerfence/pkg/nova"
)

// vm is the regulated VM of every request: JP and GB, CompanyA and CompanyB.
const vm = "6f1c0d3e-8b2a-4c1d-9e7f-0a1b2c3d4e5f"

const regulation = `{"countries": ["JP", "GB"], "organizations": ["CompanyA", "CompanyB"]}`

// host is the i-th candidate: a quarter each in JP, GB, DE and FR, run by
// CompanyA, CompanyB, both, or CompanyC; 3 in 8 may take the VM.
func host(i int) filter.Host {
	countries := []string{"JP", "GB", "DE", "FR"}
	orgs := [][]string{{"CompanyA"}, {"CompanyB"}, {"CompanyA", "CompanyB"}, {"CompanyC"}}
	return filter.Host{
		Name:          fmt.Sprintf("nova-compute-%05d", i),
		Country:       countries[i%4],
		Organizations: orgs[(i/4)%4],
		Region:        "region-one",
	}
}

func allowed(n int) int {
	k := 0
	for i := range n {
		if i%4 < 2 && (i/4)%4 < 3 {
			k++
		}
	}
	return k
}

// requestBody is Nova's request for the VM's live migration with n
// candidates, as SAP's Nova sends it.
func requestBody(n int) []byte {
	var b strings.Builder
	b.WriteString(`{"spec":{"nova_object.name":"RequestSpec","nova_object.namespace":"nova","nova_object.version":"1.14","nova_object.data":{` +
		`"id":4711,"instance_uuid":"` + vm + `","project_id":"a1b2c3d4e5f60718293a4b5c6d7e8f90","user_id":"0f9e8d7c6b5a49382716a5b4c3d2e1f0",` +
		`"availability_zone":"az-1","num_instances":1,"is_bfv":false,` +
		`"flavor":{"nova_object.name":"Flavor","nova_object.namespace":"nova","nova_object.version":"1.2","nova_object.data":{"id":7,"name":"m1.medium","memory_mb":4096,"vcpus":2,"root_gb":40,"ephemeral_gb":0,"flavorid":"3","swap":0,"rxtx_factor":1.0,"vcpu_weight":0,"disabled":false,"is_public":true,"extra_specs":{"hw:cpu_policy":"shared"},"description":null}},` +
		`"image":{"nova_object.name":"ImageMeta","nova_object.namespace":"nova","nova_object.version":"1.8","nova_object.data":{"id":"c2a8d3b0-5e1f-4a7b-8c9d-0e1f2a3b4c5d","name":"ubuntu-24.04-server","status":"active","container_format":"bare","disk_format":"qcow2","min_disk":10,"min_ram":512,"size":603979776,"properties":{"nova_object.name":"ImageMetaProps","nova_object.data":{"hw_architecture":"x86_64","os_distro":"ubuntu"}}}},` +
		`"numa_topology":null,"pci_requests":{"nova_object.name":"InstancePCIRequests","nova_object.data":{"requests":[]}},"ignore_hosts":null,"force_hosts":null,"force_nodes":null,` +
		`"retry":{"nova_object.name":"SchedulerRetries","nova_object.data":{"num_attempts":1,"hosts":{"nova_object.name":"ComputeNodeList","nova_object.data":{"objects":[]}}}},` +
		`"limits":{"nova_object.name":"SchedulerLimits","nova_object.data":{"numa_topology":null,"vcpu":null,"disk_gb":null,"memory_mb":null}},"instance_group":null,` +
		`"scheduler_hints":{"_nova_check_type":["live_migrate"],"source_host":["nova-compute-99999"]},` +
		`"security_groups":{"nova_object.name":"SecurityGroupList","nova_object.data":{"objects":[{"nova_object.name":"SecurityGroup","nova_object.data":{"name":"default"}}]}},` +
		`"requested_destination":null,` +
		`"request_level_params":{"nova_object.name":"RequestLevelParams","nova_object.data":{"root_required":[],"root_forbidden":[],"same_subtree":[]}},` +
		`"network_metadata":{"nova_object.name":"NetworkMetadata","nova_object.data":{"physnets":["physnet1"],"tunneled":false}},"requested_resources":[]}},` +
		`"context":{"user_id":"0f9e8d7c6b5a49382716a5b4c3d2e1f0","project_id":"a1b2c3d4e5f60718293a4b5c6d7e8f90","request_id":"req-3f9a1c2e-7b6d-4e5f-8a9b-0c1d2e3f4a5b","global_request_id":"req-0c4b5a69-1d2e-4f3a-9b8c-7d6e5f4a3b2c","is_admin":false,"roles":["member","reader"],"read_only":false,"show_deleted":false,"remote_address":"10.0.0.17","timestamp":"2026-11-25T20:41:05.123456"},` +
		`"hosts":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		name := host(i).Name
		b.WriteString(`{"host":"` + name + `","hypervisor_hostname":"` + name + `.region-one.cloud.example.org"}`)
	}
	b.WriteString(`],"weights":{`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`"` + host(i).Name + `":` + strconv.FormatFloat(float64(i%100)/10, 'f', -1, 64))
	}
	b.WriteString(`},"rebuild":false,"resize":false,"live":true,"vmware":false}`)
	return []byte(b.String())
}

// target is the filterd under load.
type target struct {
	url     string
	handler http.Handler // in-process only
}

func run(ctx context.Context, cfg config, out, logw io.Writer) error {
	maxHosts := slices.Max(cfg.Hosts)
	var t target
	if cfg.URL == "" {
		var stop func()
		var err error
		t, stop, err = startFilterd(ctx, maxHosts, logw)
		if err != nil {
			return err
		}
		defer stop()
	} else {
		t.url = strings.TrimSuffix(cfg.URL, "/")
		if err := seedREST(ctx, t.url, cfg.AdminToken, maxHosts, logw); err != nil {
			return err
		}
	}
	var floor target
	if cfg.Floor {
		var stop func()
		var err error
		if floor, stop, err = startFloor(ctx); err != nil {
			return err
		}
		defer stop()
	}
	// net/http's own client checks each size's answer; the load goes
	// through wires.
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableCompression: true}}
	defer client.CloseIdleConnections()

	mode := "in-process filterd (embedded ledger), loopback HTTP"
	if cfg.URL != "" {
		mode = "filterd at " + cfg.URL
	}
	fmt.Fprintf(out, "lfbench: %s; %s %s/%s, GOMAXPROCS %d, %d CPUs%s; %s per row after %s warm-up\n",
		mode, runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.GOMAXPROCS(0), runtime.NumCPU(), loadAverage(),
		cfg.Duration, cfg.Warmup)
	var prof *os.File
	if cfg.CPUProfile != "" && len(cfg.Hosts) == 1 && len(cfg.Concurrency) == 1 {
		f, err := os.Create(cfg.CPUProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		prof = f
	} else if cfg.CPUProfile != "" {
		return errors.New("-cpuprofile needs a single -hosts size and a single -c")
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "server\tc\thosts\tbody KiB\tallowed\trequests\treq/s\tp50 ms\tp90 ms\tp99 ms\tmax ms\tsocket p50 ms\tsocket p99 ms\tprocess CPU µs/req\tprocess allocs/req\thandler allocs/req\thandler B/req\thandler CPU µs/req\t")
	for _, n := range cfg.Hosts {
		body := requestBody(n)
		if err := check(ctx, client, t.url, body, allowed(n)); err != nil {
			return fmt.Errorf("%d hosts: %w", n, err)
		}
		hAllocs, hBytes, hTime := "-", "-", "-"
		if t.handler != nil && cfg.Allocs {
			c0 := cpuTime()
			br := handlerBenchmark(t.handler, body)
			hAllocs = strconv.FormatInt(br.AllocsPerOp(), 10)
			hBytes = strconv.FormatInt(br.AllocedBytesPerOp(), 10)
			hTime = fmt.Sprintf("%.0f", float64((cpuTime()-c0).Microseconds())/float64(br.N))
		}
		for _, conc := range cfg.Concurrency {
			type server struct {
				name, url string
				prof      *os.File
			}
			servers := []server{{"filterd", t.url, prof}}
			if cfg.Floor {
				servers = append(servers, server{"floor", floor.url, nil})
			}
			for _, srv := range servers {
				m, err := measure(ctx, srv.url, body, conc, cfg, srv.prof)
				if err != nil {
					return fmt.Errorf("%s, %d hosts, concurrency %d: %w", srv.name, n, conc, err)
				}
				ok, ha, hb, ht := strconv.Itoa(allowed(n)), hAllocs, hBytes, hTime
				if srv.name != "filterd" {
					ok, ha, hb, ht = "0", "-", "-", "-"
				}
				s50, s99 := "-", "-"
				if m.stamped > 0 {
					s50, s99 = ms(quantile(m.atSocket, 0.50)), ms(quantile(m.atSocket, 0.99))
				}
				if whole := len(m.atSocket) - m.stamped; m.stamped > 0 && whole > 0 {
					fmt.Fprintf(logw, "lfbench: %s, %d hosts, concurrency %d: %d of %d answers' receipt not told by the kernel; counted whole at the socket\n",
						srv.name, n, conc, whole, len(m.atSocket))
				}
				fmt.Fprintf(tw, "%s\t%d\t%d\t%.1f\t%s\t%d\t%.0f\t%s\t%s\t%s\t%s\t%s\t%s\t%.0f\t%.0f\t%s\t%s\t%s\t\n",
					srv.name, conc, n, float64(len(body))/1024, ok, len(m.latencies), m.rate(),
					ms(m.quantile(0.50)), ms(m.quantile(0.90)), ms(m.quantile(0.99)), ms(m.quantile(1)), s50, s99,
					m.cpuPerRequest(), m.allocsPerRequest(), ha, hb, ht)
			}
		}
		fmt.Fprintf(logw, "lfbench: %d hosts done\n", n)
	}
	return tw.Flush()
}

// measurement is one row: a load's latencies with the process's CPU time
// and allocations over it.
type measurement struct {
	result
	cpu    time.Duration
	allocs uint64
}

func (m measurement) rate() float64 { return float64(len(m.latencies)) / m.elapsed.Seconds() }

func (m measurement) cpuPerRequest() float64 {
	return float64(m.cpu.Microseconds()) / float64(len(m.latencies))
}

func (m measurement) allocsPerRequest() float64 {
	return float64(m.allocs) / float64(len(m.latencies))
}

// measure warms the server up, then loads it for cfg.Duration, profiling
// into prof when set.
func measure(ctx context.Context, url string, body []byte, conc int, cfg config, prof *os.File) (measurement, error) {
	if _, err := load(ctx, url, body, conc, cfg.Warmup); err != nil {
		return measurement{}, fmt.Errorf("warm-up: %w", err)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	if prof != nil {
		if err := pprof.StartCPUProfile(prof); err != nil {
			return measurement{}, err
		}
	}
	cpu0 := cpuTime()
	r, err := load(ctx, url, body, conc, cfg.Duration)
	cpu := cpuTime() - cpu0
	if prof != nil {
		pprof.StopCPUProfile()
	}
	if err != nil {
		return measurement{}, err
	}
	if len(r.latencies) == 0 {
		return measurement{}, errors.New("no request finished")
	}
	runtime.ReadMemStats(&after)
	return measurement{result: r, cpu: cpu, allocs: after.Mallocs - before.Mallocs}, nil
}

// startFloor serves the floor: it reads the body and answers {"hosts":[]}
// with a decision header, listening as filterd does.
func startFloor(ctx context.Context) (target, func(), error) {
	ln, err := api.Listen(ctx, "127.0.0.1:0", api.DefaultReceiveBuffer)
	if err != nil {
		return target{}, nil, err
	}
	// The body is read as filterd reads it: into a pooled buffer sized from
	// Content-Length, in as few reads as the socket allows.
	bufs := sync.Pool{New: func() any { return new(bytes.Buffer) }}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b := bufs.Get().(*bytes.Buffer)
		b.Reset()
		b.Grow(int(min(r.ContentLength, api.DefaultMaxBodyBytes)) + 1)
		_, _ = b.ReadFrom(r.Body)
		bufs.Put(b)
		w.Header().Set(api.HeaderDecision, "floor")
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"hosts":[]}`+"\n")
	})
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	return target{url: "http://" + ln.Addr().String(), handler: h}, func() { _ = hs.Close() }, nil
}

// loadAverage says how busy the machine was, where Linux tells.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) >= 3 {
		return ", load average " + strings.Join(f[:3], " ")
	}
	return ""
}

func ms(d time.Duration) string { return fmt.Sprintf("%.3f", float64(d)/1e6) }

type result struct {
	// latencies run from the request's write to the client's having read
	// the whole answer; sorted.
	latencies []time.Duration
	// atSocket run from the request's write to the kernel's receipt of the
	// answer's last bytes at the client's socket; sorted. Unlike latencies,
	// they leave out the time the client waits to be scheduled once the
	// answer is there, which an in-process client spends queued behind the
	// server's own work. A post whose receipt the kernel did not tell (or
	// told outside the post) counts whole; stamped counts the others.
	atSocket []time.Duration
	stamped  int
	elapsed  time.Duration
}

// quantile returns the q-quantile (nearest rank) of the latencies.
func (r result) quantile(q float64) time.Duration { return quantile(r.latencies, q) }

// quantile returns the q-quantile (nearest rank) of sorted durations.
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// load posts body from conc clients for d and returns every latency.
func load(ctx context.Context, url string, body []byte, conc int, d time.Duration) (result, error) {
	if d <= 0 {
		return result{}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	lat := make([][]time.Duration, conc)
	atSocket := make([][]time.Duration, conc)
	stamped := make([]int, conc)
	errs := make([]error, conc)
	var wg sync.WaitGroup
	start := time.Now()
	for w := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := make([]time.Duration, 0, 1<<14)
			sl := make([]time.Duration, 0, 1<<14)
			c, err := newWire(ctx, url, body)
			if err != nil {
				errs[w] = err
				return
			}
			defer c.close()
			for ctx.Err() == nil {
				t0 := time.Now()
				arrived, err := c.post()
				if err != nil {
					if ctx.Err() == nil {
						errs[w] = err
					}
					break
				}
				d := time.Since(t0)
				l = append(l, d)
				// The kernel's receive time, on the wall clock, counts when
				// it falls within the post; else the post counts whole.
				if s := arrived.Sub(t0); !arrived.IsZero() && s > 0 && s <= d {
					sl = append(sl, s)
					stamped[w]++
				} else {
					sl = append(sl, d)
				}
			}
			lat[w], atSocket[w] = l, sl
		}()
	}
	wg.Wait()
	r := result{elapsed: time.Since(start)}
	for w := range lat {
		r.latencies = append(r.latencies, lat[w]...)
		r.atSocket = append(r.atSocket, atSocket[w]...)
		r.stamped += stamped[w]
	}
	slices.Sort(r.latencies)
	slices.Sort(r.atSocket)
	return r, errors.Join(errs...)
}

// check sends one request with net/http's client and verifies the answer:
// a 200 with a decision id, allowing want hosts.
func check(ctx context.Context, client *http.Client, url string, body []byte, want int) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+nova.Path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	switch {
	case err != nil:
		return err
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("status %d", resp.StatusCode)
	case resp.Header.Get(api.HeaderDecision) == "":
		return errors.New("answer without a decision id")
	}
	var ans nova.Response
	if err := json.Unmarshal(data, &ans); err != nil {
		return fmt.Errorf("answer %.80q: %w", data, err)
	}
	if len(ans.Hosts) != want {
		return fmt.Errorf("answer allows %d hosts, want %d: is the ledger seeded with lfbench's hosts and regulation?", len(ans.Hosts), want)
	}
	return nil
}

// handlerBenchmark measures the webhook handler alone, with -benchmem's
// accounting.
func handlerBenchmark(h http.Handler, body []byte) testing.BenchmarkResult {
	return testing.Benchmark(func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			w := discard{h: http.Header{}}
			req, _ := http.NewRequest(http.MethodPost, nova.Path, bytes.NewReader(body))
			req.ContentLength = int64(len(body))
			h.ServeHTTP(&w, req)
		}
	})
}

type discard struct{ h http.Header }

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(p []byte) (int, error) { return len(p), nil }
func (d *discard) WriteHeader(int)             {}

// startFilterd runs filterd's API over an embedded ledger in a temporary
// directory, seeded with n hosts and the VM's regulation. Its decision log
// lines are encoded as in production and discarded.
func startFilterd(ctx context.Context, n int, logw io.Writer) (target, func(), error) {
	dir, err := os.MkdirTemp("", "lfbench-")
	if err != nil {
		return target{}, nil, err
	}
	cleanup := []func(){func() { os.RemoveAll(dir) }}
	stop := func() {
		for i := len(cleanup) - 1; i >= 0; i-- {
			cleanup[i]()
		}
	}
	fail := func(err error) (target, func(), error) {
		stop()
		return target{}, nil, err
	}
	led, err := embedded.Open(filepath.Join(dir, embedded.FileName))
	if err != nil {
		return fail(err)
	}
	cleanup = append(cleanup, func() { led.Close() })
	fmt.Fprintf(logw, "lfbench: registering %d hosts in %s\n", n, dir)
	for i := range n {
		if _, _, err := led.PutHost(ctx, host(i)); err != nil {
			return fail(err)
		}
	}
	terms, err := filter.ParseTerms([]byte(regulation))
	if err != nil {
		return fail(err)
	}
	if _, _, err := led.PutRegulation(ctx, filter.VMSubject(vm), terms); err != nil {
		return fail(err)
	}

	log := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(io.Discard), zapcore.InfoLevel))
	reg := prometheus.NewRegistry()
	c, err := cache.New(led, log, reg, cache.Config{})
	if err != nil {
		return fail(err)
	}
	srv, err := api.New(led, c, log, reg, reg, api.Config{AdminToken: rand.Text(), Backend: "embedded", Writable: true})
	if err != nil {
		return fail(err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = c.Run(runCtx)
	}()
	cleanup = append(cleanup, func() { cancel(); <-done })
	ln, err := api.Listen(ctx, "127.0.0.1:0", api.DefaultReceiveBuffer) // as filterd listens
	if err != nil {
		return fail(err)
	}
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	cleanup = append(cleanup, func() { _ = hs.Close() })
	for !c.Ready() {
		if err := ctx.Err(); err != nil {
			return fail(err)
		}
		time.Sleep(time.Millisecond)
	}
	return target{url: "http://" + ln.Addr().String(), handler: srv}, stop, nil
}

// seedREST registers the hosts and the regulation in a running filterd.
func seedREST(ctx context.Context, url, token string, n int, logw io.Writer) error {
	fmt.Fprintf(logw, "lfbench: registering %d hosts at %s\n", n, url)
	client := &http.Client{Timeout: 30 * time.Second}
	put := func(path string, body []byte) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodPut, url+path, bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		msg, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("PUT %s: %d %s", path, resp.StatusCode, msg)
		}
		return nil
	}
	for i := range n {
		h := host(i)
		b, _ := json.Marshal(map[string]any{"country": h.Country, "organizations": h.Organizations, "region": h.Region})
		if err := put("/v1/hosts/"+h.Name, b); err != nil {
			return err
		}
	}
	return put("/v1/regulations/vm:"+vm, []byte(regulation))
}
