package recorder_test

// Residency evidence's figures, on the embedded ledger, with the
// real commands (filterd, recorder, ledgerctl, lfbench) and a private
// RabbitMQ node. Reported with b.ReportMetric, never asserted:
//
//	LEDGERFENCE_REQUIRE_INTEGRATION=1 go test -run '^$' -bench E2E -benchtime 1x -v ./tests/integration/recorder
//
// BenchmarkE2ENotificationToPlacement takes -benchtime Nx (N
// notifications, e.g. 300x).

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/ledgerfence/ledgerfence/pkg/ledger"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/remote"
	"github.com/ledgerfence/ledgerfence/pkg/recorder"
)

// benchLedger is a filterd on a new embedded ledger with hosts hm1 to hm3
// (JP) and hm4 (US), a recorder token, and a project whose regulation allows
// JP only.
type benchLedger struct {
	fd      *filterd
	token   string
	project string
}

func newBenchLedger(b *testing.B, bin string) benchLedger {
	b.Helper()
	fd := startFilterd(b, bin)
	l := benchLedger{fd: fd, token: issueToken(b, bin, fd.Data, "recorder", "recorder-bench"), project: newProject()}
	for _, h := range []string{"hm1", "hm2", "hm3"} {
		fd.putHost(b, h, "JP", "A")
	}
	fd.putHost(b, "hm4", "US", "A")
	fd.putRegulation(b, "project:"+l.project, map[string]string{"country": "JP", "organization": "A"})
	return l
}

// deleteQueue deletes a queue of the shared node (so that it no longer
// takes the messages of the benchmarks after).
func deleteQueue(b *testing.B, url, queue string) {
	c, err := amqp.Dial(url)
	if err != nil {
		b.Error(err)
		return
	}
	defer c.Close()
	ch, err := c.Channel()
	if err != nil {
		b.Error(err)
		return
	}
	if _, err := ch.QueueDelete(queue, false, false, false); err != nil {
		b.Error(err)
	}
}

// template makes Nova's message of a fixture for a project's VM on host,
// quickly: the fixture's body is made once with stand-in values, which
// make replaces.
type template struct {
	body string
}

const (
	standInVM   = "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa"
	standInID   = "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb"
	standInTime = "2001-01-01 01:01:01.000000"
)

func newTemplate(b *testing.B, fixture, project, host string) template {
	e := &novaEvent{Fixture: fixture, VM: standInVM, Project: project, Host: host, Publisher: host,
		At: time.Date(2001, 1, 1, 1, 1, 1, 0, time.UTC), MessageID: standInID}
	return template{body: string(e.body(b))}
}

func (t template) make(vm, id string, at time.Time) []byte {
	return []byte(strings.NewReplacer(standInVM, vm, standInID, id, standInTime, at.UTC().Format("2006-01-02 15:04:05.000000")).Replace(t.body))
}

// feed publishes, at rate messages per second, the bodies next returns,
// until ctx is done or next returns nil; it returns how many it published.
func feed(ctx context.Context, url string, rate int, next func(i int) []byte) (int, error) {
	c, err := amqp.Dial(url)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	ch, err := c.Channel()
	if err != nil {
		return 0, err
	}
	const tick = 10 * time.Millisecond
	per := rate * int(tick) / int(time.Second)
	start := time.Now()
	sent := 0
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		// Catch up with the schedule: message i is due at start + i/rate.
		due := int(time.Since(start).Seconds()*float64(rate)) + per
		for sent < due {
			body := next(sent)
			if body == nil {
				return sent, nil
			}
			if err := ch.PublishWithContext(ctx, "nova", "versioned_notifications.info", false, false,
				amqp.Publishing{ContentType: "application/json", ContentEncoding: "utf-8", DeliveryMode: amqp.Persistent, Body: body}); err != nil {
				if ctx.Err() != nil {
					return sent, nil
				}
				return sent, err
			}
			sent++
		}
		select {
		case <-ctx.Done():
			return sent, nil
		case <-t.C:
		}
	}
}

func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func msOf(d time.Duration) float64 { return float64(d) / 1e6 }

// BenchmarkE2ENotificationToPlacement: one notification at a time (a
// regulated VM's live migration to hm1, hm2, hm3 in turn), from its
// publication to RabbitMQ to its placement on filterd's embedded ledger,
// recorded by a recorder process: to the placement's recorded_at (the
// ledger entry's time, taken in the write's transaction before its sync;
// filterd's clock, on this machine), and to GET /v1/placements seeing it
// committed (polled every 2 ms: up to 2 ms and a GET more than the
// commit). Also the recorder's mean Record (POST /v1/placements, synced
// commit included). Target: p50 and p99 <= 50 ms.
func BenchmarkE2ENotificationToPlacement(b *testing.B) {
	node := sharedNode(b)
	bin := buildCommands(b)
	l := newBenchLedger(b, bin)
	const queue = "e2e-latency"
	rec := startRecorder(b, bin, "recorder", l.fd.URL, l.token, node.URL, "--queue", queue)
	defer deleteQueue(b, node.URL, queue)
	pub := newPublisher(b, node.URL)
	client, err := remote.New(l.fd.URL)
	if err != nil {
		b.Fatal(err)
	}
	defer client.Close()
	vm := newUUID()
	tmpl := []template{newTemplate(b, "live_migration_post_dest", l.project, "hm1"),
		newTemplate(b, "live_migration_post_dest", l.project, "hm2"), newTemplate(b, "live_migration_post_dest", l.project, "hm3")}
	base := time.Now().UTC().Add(-24 * time.Hour).Truncate(time.Second)
	ctx := context.Background()
	var committed, seen []time.Duration
	i := 0
	for b.Loop() {
		at := base.Add(time.Duration(i) * time.Second)
		body := tmpl[i%3].make(vm, newUUID(), at)
		start := time.Now()
		pub.send(b, body)
		deadline := start.Add(30 * time.Second)
		for {
			ps, err := client.Placements(ctx, ledger.PlacementQuery{VM: vm, From: at, To: at.Add(time.Nanosecond)})
			if err != nil {
				b.Fatal(err)
			}
			if len(ps) == 1 {
				seen = append(seen, time.Since(start))
				committed = append(committed, ps[0].RecordedAt.Sub(start))
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("notification %d not recorded within 30 s", i)
			}
			time.Sleep(2 * time.Millisecond)
		}
		i++
	}
	b.StopTimer()
	slices.Sort(committed)
	slices.Sort(seen)
	b.ReportMetric(msOf(percentile(committed, 0.5)), "recorded_at-p50-ms")
	b.ReportMetric(msOf(percentile(committed, 0.99)), "recorded_at-p99-ms")
	b.ReportMetric(msOf(percentile(committed, 1)), "recorded_at-max-ms")
	b.ReportMetric(msOf(percentile(seen, 0.5)), "seen-p50-ms")
	b.ReportMetric(msOf(percentile(seen, 0.99)), "seen-p99-ms")
	b.ReportMetric(loadAverage(), "load-1m")
	if d, err := rec.metric("ledgerfence_recorder_record_duration_seconds_sum"); err == nil {
		if n, err := rec.metric("ledgerfence_recorder_record_duration_seconds_count"); err == nil && n > 0 {
			b.ReportMetric(d/n*1000, "record-mean-ms")
		}
	}
}

// BenchmarkE2ERecorderLoad: Nova's notifications (live migrations of 1,000
// regulated VMs) fed to RabbitMQ at 1,000 per second for 20 s, recorded by
// one or two recorder processes on filterd's embedded ledger: the
// recorders' resident memory (VmRSS, sampled every 100 ms), the rate they
// record at while fed and until the last is recorded, and the backlog when
// the feed stops.
func BenchmarkE2ERecorderLoad(b *testing.B) {
	const (
		rate     = 1000
		duration = 20 * time.Second
		total    = rate * int(duration/time.Second)
		vms      = 1000
	)
	node := sharedNode(b)
	bin := buildCommands(b)
	for _, replicas := range []int{1, 2} {
		b.Run(fmt.Sprintf("replicas=%d", replicas), func(b *testing.B) {
			l := newBenchLedger(b, bin)
			queue := fmt.Sprintf("e2e-load-%d", replicas)
			var recs []*recorderProc
			for r := range replicas {
				recs = append(recs, startRecorder(b, bin, fmt.Sprintf("recorder %d", r+1), l.fd.URL, l.token, node.URL, "--queue", queue))
			}
			defer deleteQueue(b, node.URL, queue)
			ids := make([]string, vms)
			for i := range ids {
				ids[i] = newUUID()
			}
			tmpl := []template{newTemplate(b, "live_migration_post_dest", l.project, "hm1"),
				newTemplate(b, "live_migration_post_dest", l.project, "hm2"), newTemplate(b, "live_migration_post_dest", l.project, "hm3")}
			base := time.Now().UTC().Add(-24 * time.Hour).Truncate(time.Second)
			bodies := make([][]byte, total)
			for i := range bodies {
				bodies[i] = tmpl[(i/vms)%3].make(ids[i%vms], newUUID(), base.Add(time.Duration(i)*time.Millisecond))
			}
			idle := make([]int64, replicas)
			for r, rec := range recs {
				idle[r], _ = rssKiB(rec.pid())
			}
			recorded := func() float64 {
				s := 0.0
				for _, r := range recs {
					s += r.messages(b, recorder.ResultRecorded)
				}
				return s
			}
			h0 := l.fd.height(b)
			peak := make([]int64, replicas)
			var fdPeak atomic.Int64
			stopSampling := make(chan struct{})
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				t := time.NewTicker(100 * time.Millisecond)
				defer t.Stop()
				for {
					for r, rec := range recs {
						if kb, err := rssKiB(rec.pid()); err == nil && kb > peak[r] {
							peak[r] = kb
						}
					}
					if kb, err := rssKiB(l.fd.pid()); err == nil && kb > fdPeak.Load() {
						fdPeak.Store(kb)
					}
					select {
					case <-stopSampling:
						return
					case <-t.C:
					}
				}
			}()
			cpu0 := make([]time.Duration, replicas)
			for r, rec := range recs {
				cpu0[r], _ = cpuTime(rec.pid())
			}
			fdCPU0, _ := cpuTime(l.fd.pid())
			busy0, all0 := machineBusy()
			b.ResetTimer()
			start := time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), duration+10*time.Second)
			sent, err := feed(ctx, node.URL, rate, func(i int) []byte {
				if i >= total {
					return nil
				}
				return bodies[i]
			})
			cancel()
			fed := time.Since(start)
			if err != nil {
				b.Fatal(err)
			}
			atFeedEnd := recorded()
			ready, _, _ := node.QueueDepth(context.Background(), queue)
			deadline := time.Now().Add(5 * time.Minute)
			for recorded() < float64(sent) {
				if time.Now().After(deadline) {
					b.Fatalf("%v of %d recorded 5 minutes after the feed", recorded(), sent)
				}
				time.Sleep(50 * time.Millisecond)
			}
			all := time.Since(start)
			b.StopTimer()
			busy1, all1 := machineBusy()
			var recCPU time.Duration
			for r, rec := range recs {
				c, _ := cpuTime(rec.pid())
				recCPU += c - cpu0[r]
			}
			fdCPU, _ := cpuTime(l.fd.pid())
			fdCPU -= fdCPU0
			close(stopSampling)
			wg.Wait()
			if h := l.fd.height(b); h-h0 != uint64(sent) {
				b.Errorf("the ledger grew by %d entries for %d notifications", h-h0, sent)
			}
			b.ReportMetric(float64(sent)/fed.Seconds(), "fed-msgs/s")
			b.ReportMetric(atFeedEnd/fed.Seconds(), "recorded-while-fed-msgs/s")
			b.ReportMetric(float64(sent)/all.Seconds(), "recorded-overall-msgs/s")
			b.ReportMetric(float64(ready), "backlog-at-feed-end")
			b.ReportMetric(all.Seconds(), "s-to-last-recorded")
			var maxPeak, sumPeak int64
			for r := range recs {
				maxPeak = max(maxPeak, peak[r])
				sumPeak += peak[r]
				b.Logf("recorder %d: VmRSS idle %.1f MiB, peak %.1f MiB; recorded %v", r+1, float64(idle[r])/1024,
					float64(peak[r])/1024, recs[r].messages(b, recorder.ResultRecorded))
			}
			b.ReportMetric(loadAverage(), "load-1m")
			b.ReportMetric(float64(slices.Max(idle))/1024, "idle-rss-MiB")
			b.ReportMetric(float64(maxPeak)/1024, "peak-rss-MiB")
			b.ReportMetric(float64(sumPeak)/1024, "peak-rss-all-MiB")
			b.ReportMetric(float64(fdPeak.Load())/1024, "filterd-peak-rss-MiB")
			b.ReportMetric(float64(recCPU.Microseconds())/float64(sent), "recorder-CPU-µs/msg")
			b.ReportMetric(float64(fdCPU.Microseconds())/float64(sent), "filterd-CPU-µs/msg")
			if all1 > all0 {
				b.ReportMetric(100*float64(busy1-busy0)/float64(all1-all0), "machine-busy-%")
			}
		})
	}
}

// BenchmarkE2EReport10k: a VM with 10,000 placements (recorded through
// POST /v1/placements with a recorder's token, a minute apart, on hm1 and
// hm2 in turn, every 1,000th on the forbidden hm4): `ledgerctl residency
// -o json` against filterd, and `ledgerctl residency verify` of its
// report, each the whole command's run. Target for the report: <= 1 s.
func BenchmarkE2EReport10k(b *testing.B) {
	const n = 10_000
	bin := buildCommands(b)
	l := newBenchLedger(b, bin)
	vm := newUUID()
	c, err := remote.New(l.fd.URL, remote.WithToken(l.token))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	base := time.Now().UTC().Add(-30 * 24 * time.Hour).Truncate(time.Minute)
	seedStart := time.Now()
	var wg sync.WaitGroup
	var failed atomic.Value
	const workers = 4
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				host := []string{"hm1", "hm2"}[i%2]
				if i%1000 == 999 {
					host = "hm4"
				}
				op := ledger.OpLiveMigration
				if i == 0 {
					op = ledger.OpBoot
				}
				p := ledger.Placement{VM: vm, Project: l.project, Host: host, Op: op, At: base.Add(time.Duration(i) * time.Minute),
					Witness: ledger.WitnessNova, Ref: newUUID(), RequestID: "req-" + newUUID()}
				if _, _, err := c.RecordPlacement(context.Background(), p); err != nil {
					failed.Store(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	b.Logf("%d placements recorded in %v through POST /v1/placements (%d clients)", n, time.Since(seedStart).Round(time.Millisecond), workers)
	from, to := base.Add(-time.Hour).Format(time.RFC3339), base.Add(n*time.Minute+time.Hour).Format(time.RFC3339)
	asOf := time.Now().UTC().Add(time.Second).Format(time.RFC3339)
	time.Sleep(5500 * time.Millisecond) // past filterd's settling time, for GET /v1/residency
	args := []string{"residency", "vm:" + vm, "--ledger", l.fd.URL, "--from", from, "--to", to, "--as-of", asOf, "-o", "json"}
	report := filepath.Join(b.TempDir(), "report.json")
	b.Run("report", func(b *testing.B) {
		var out string
		var cpu time.Duration
		runs := 0
		for b.Loop() {
			var errs string
			var code int
			var c time.Duration
			out, errs, code, c = ledgerctlCPU(b, bin, args...)
			if code != 0 {
				b.Fatalf("ledgerctl residency: exit %d: %s", code, errs)
			}
			cpu += c
			runs++
		}
		b.StopTimer()
		b.ReportMetric(cpu.Seconds()/float64(runs), "ledgerctl-CPU-s/op")
		var rep struct {
			Intervals  []json.RawMessage `json:"intervals"`
			Placements int               `json:"placements"`
			Violations int               `json:"violations"`
		}
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			b.Fatal(err)
		}
		if rep.Placements != n || len(rep.Intervals) != n {
			b.Errorf("the report has %d intervals from %d placements, want %d", len(rep.Intervals), rep.Placements, n)
		}
		if err := os.WriteFile(report, []byte(out), 0o600); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(len(out))/(1<<20), "report-MiB")
		b.ReportMetric(float64(rep.Violations), "violations")
		b.ReportMetric(loadAverage(), "load-1m")
	})
	// The parts: the ledger's read through filterd (GET /v1/placements,
	// decoded), and the report filterd builds itself (GET /v1/residency).
	b.Run("GET placements", func(b *testing.B) {
		for b.Loop() {
			ps, err := c.Placements(context.Background(), ledger.PlacementQuery{VM: vm})
			if err != nil || len(ps) != n {
				b.Fatalf("%d placements: %v", len(ps), err)
			}
		}
	})
	b.Run("GET residency", func(b *testing.B) {
		for b.Loop() {
			var rep struct {
				Intervals []json.RawMessage `json:"intervals"`
			}
			call(b, "GET", l.fd.URL+"/v1/residency/vm/"+vm+"?from="+from+"&to="+to, "", nil, &rep)
			if len(rep.Intervals) != n {
				b.Fatalf("%d intervals", len(rep.Intervals))
			}
		}
	})
	b.Run("verify", func(b *testing.B) {
		for b.Loop() {
			out, errs, code := ledgerctl(b, bin, "residency", "verify", report, "--ledger", l.fd.URL)
			if code != 0 {
				b.Fatalf("ledgerctl residency verify: exit %d: %s%s", code, out, errs)
			}
		}
		b.ReportMetric(loadAverage(), "load-1m")
	})
	b.Run("html", func(b *testing.B) {
		for b.Loop() {
			if _, errs, code := ledgerctl(b, bin, append(args[:len(args)-2:len(args)-2], "-o", "html")...); code != 0 {
				b.Fatalf("ledgerctl residency -o html: exit %d: %s", code, errs)
			}
		}
	})
}

// lfbenchRow is one row of lfbench's table.
type lfbenchRow struct {
	c                              int
	rate                           float64
	p50, p99, socketP50, socketP99 float64
}

// runLfbench runs lfbench against url and returns its filterd rows.
func runLfbench(b *testing.B, bin, url string, args ...string) []lfbenchRow {
	b.Helper()
	cmd := exec.Command(filepath.Join(bin, "lfbench"), append([]string{"-url", url, "-admin-token", e2eAdminToken, "-floor=false", "-allocs=false"}, args...)...)
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		b.Fatalf("lfbench: %v\n%s%s", err, out, stderr)
	}
	b.Logf("lfbench %s:\n%s", strings.Join(args, " "), out)
	var rows []lfbenchRow
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 13 || f[0] != "filterd" {
			continue
		}
		num := func(i int) float64 { v, _ := strconv.ParseFloat(f[i], 64); return v }
		c, _ := strconv.Atoi(f[1])
		rows = append(rows, lfbenchRow{c: c, rate: num(6), p50: num(7), p99: num(9), socketP50: num(11), socketP99: num(12)})
	}
	if len(rows) == 0 {
		b.Fatalf("no filterd row in lfbench's output:\n%s", out)
	}
	return rows
}

// BenchmarkE2EWebhookWithRecorder: filterd's webhook (lfbench, 1,000 hosts,
// concurrency 1 and 8) on its own; then while a recorder process records
// Nova's notifications, fed at 1,000 per second, on the same filterd's
// ledger (with-recorder); then while it records them on another filterd's
// ledger on the same machine (recorder-elsewhere: the machine's cores
// shared, filterd's ledger not): p50 and p99 as the client reads them and
// at its socket.
func BenchmarkE2EWebhookWithRecorder(b *testing.B) {
	node := sharedNode(b)
	bin := buildCommands(b)
	l := newBenchLedger(b, bin)
	other := newBenchLedger(b, bin)
	args := []string{"-hosts", "1000", "-c", "1,8", "-duration", "10s"}
	report := func(label string, rows []lfbenchRow) {
		for _, r := range rows {
			b.ReportMetric(r.p50, fmt.Sprintf("%s-c%d-p50-ms", label, r.c))
			b.ReportMetric(r.p99, fmt.Sprintf("%s-c%d-p99-ms", label, r.c))
			b.ReportMetric(r.socketP50, fmt.Sprintf("%s-c%d-socket-p50-ms", label, r.c))
			b.ReportMetric(r.socketP99, fmt.Sprintf("%s-c%d-socket-p99-ms", label, r.c))
			b.ReportMetric(r.rate, fmt.Sprintf("%s-c%d-req/s", label, r.c))
		}
		b.ReportMetric(loadAverage(), label+"-load-1m")
	}
	// underFeed runs lfbench against l while a recorder records the feed
	// on target's ledger.
	underFeed := func(label string, target benchLedger) {
		queue := "e2e-webhook-" + label
		rec := startRecorder(b, bin, "recorder "+label, target.fd.URL, target.token, node.URL, "--queue", queue)
		tmpl := []template{newTemplate(b, "live_migration_post_dest", target.project, "hm1"),
			newTemplate(b, "live_migration_post_dest", target.project, "hm2"), newTemplate(b, "live_migration_post_dest", target.project, "hm3")}
		ids := make([]string, 1000)
		for i := range ids {
			ids[i] = newUUID()
		}
		base := time.Now().UTC().Add(-24 * time.Hour).Truncate(time.Second)
		ctx, cancel := context.WithCancel(context.Background())
		var sent int
		var feedErr error
		done := make(chan struct{})
		start := time.Now()
		go func() {
			defer close(done)
			sent, feedErr = feed(ctx, node.URL, 1000, func(i int) []byte {
				return tmpl[(i/1000)%3].make(ids[i%1000], newUUID(), base.Add(time.Duration(i)*time.Millisecond))
			})
		}()
		time.Sleep(2 * time.Second) // the recorder under load before the webhook's load
		rows := runLfbench(b, bin, l.fd.URL, args...)
		cancel()
		<-done
		fed := time.Since(start)
		if feedErr != nil {
			b.Fatal(feedErr)
		}
		recorded := rec.messages(b, recorder.ResultRecorded)
		rec.kill()
		deleteQueue(b, node.URL, queue)
		report(label, rows)
		b.ReportMetric(float64(sent)/fed.Seconds(), label+"-fed-msgs/s")
		b.ReportMetric(recorded/fed.Seconds(), label+"-recorded-msgs/s")
	}
	for range b.N {
		report("alone", runLfbench(b, bin, l.fd.URL, args...))
		underFeed("with-recorder", l)
		underFeed("recorder-elsewhere", other)
	}
}
