package fabric_test

// Benchmarks on the real network. Latency percentiles are reported as extra
// metrics (p50-ms, p95-ms); run, e.g.:
//
//	go test ./tests/integration/fabric -run '^$' -bench . -benchtime 50x

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
)

// latencies records one duration per iteration and reports percentiles.
type latencies []time.Duration

func (l *latencies) time(fn func()) {
	t0 := time.Now()
	fn()
	*l = append(*l, time.Since(t0))
}

func (l latencies) report(b *testing.B) {
	if len(l) == 0 {
		return
	}
	s := slices.Clone(l)
	slices.Sort(s)
	pct := func(p float64) float64 {
		i := int(p*float64(len(s))+0.5) - 1
		return float64(s[max(0, min(i, len(s)-1))].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.95), "p95-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
}

// BenchmarkRegistrationCommit is a registration: PutHost of a new host,
// from endorsement by both organisations to the commit status. Each
// iteration registers another host, as host agents booting do.
func BenchmarkRegistrationCommit(b *testing.B) {
	admin := connect(b, "hadmin")
	c := context.Background()
	prefix := uniq(fmt.Sprintf("reg%d", b.N))
	var lat latencies
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		h := filter.Host{Name: fmt.Sprintf("%s-%d", prefix, i), Country: "JP", Organizations: []string{"CompanyA"}}
		lat.time(func() {
			if _, changed, err := admin.PutHost(c, h); err != nil || !changed {
				b.Fatalf("put: changed %v, %v", changed, err)
			}
		})
	}
	lat.report(b)
}

// BenchmarkRewriteSameHost writes new facts to one host back to back: each
// write must wait until both organisations' peers hold the previous one
// (the backend retries an endorsement that a lagging peer made differ).
func BenchmarkRewriteSameHost(b *testing.B) {
	agent := connect(b, "hm5agent")
	c := context.Background()
	var lat latencies
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		h := filter.Host{Name: "hm5", Country: "JP", Organizations: []string{"CompanyA"}, Region: fmt.Sprintf("r%s-%d-%d", runID, b.N, i)}
		lat.time(func() {
			if _, changed, err := agent.PutHost(c, h); err != nil || !changed {
				b.Fatalf("put: changed %v, %v", changed, err)
			}
		})
	}
	lat.report(b)
}

// BenchmarkRegistrationUnchanged is a host agent's registration at a reboot
// with the same facts: endorsed, found unchanged, not submitted.
func BenchmarkRegistrationUnchanged(b *testing.B) {
	agent := connect(b, "hm5agent")
	c := context.Background()
	h := filter.Host{Name: "hm5", Country: "JP", Organizations: []string{"CompanyA"}, Region: "r" + runID}
	if _, _, err := agent.PutHost(c, h); err != nil {
		b.Fatal(err)
	}
	var lat latencies
	b.ResetTimer()
	for b.Loop() {
		lat.time(func() {
			if _, changed, err := agent.PutHost(c, h); err != nil || changed {
				b.Fatalf("put: changed %v, %v", changed, err)
			}
		})
	}
	lat.report(b)
}

// seed1000 makes sure hosts bench-0000..bench-0999 and a regulation exist
// (registered once per network) and returns the host names and the VM.
func seed1000(b *testing.B) ([]string, filter.Subject) {
	b.Helper()
	admin := connect(b, "hadmin")
	c := context.Background()
	names := make([]string, 1000)
	for i := range names {
		names[i] = fmt.Sprintf("bench-%04d", i)
	}
	vm := filter.VMSubject("b0000000-0000-4000-8000-000000001000")
	lk, err := admin.Lookup(c, []filter.Subject{vm}, names)
	if err != nil {
		b.Fatal(err)
	}
	countries := []string{"JP", "GB", "DE", "US", "FR"}
	orgs := []string{"CompanyA", "CompanyB", "CompanyC"}
	var missing []int
	for i, n := range names {
		if _, ok := lk.Hosts[n]; !ok {
			missing = append(missing, i)
		}
	}
	if len(missing) > 0 {
		work := make(chan int)
		var wg sync.WaitGroup
		errs := make(chan error, 1)
		for range 8 {
			wg.Go(func() {
				for i := range work {
					h := filter.Host{Name: names[i], Country: countries[i%len(countries)], Organizations: []string{orgs[i%len(orgs)]}}
					if _, _, err := admin.PutHost(c, h); err != nil {
						select {
						case errs <- err:
						default:
						}
					}
				}
			})
		}
		for _, i := range missing {
			work <- i
		}
		close(work)
		wg.Wait()
		select {
		case err := <-errs:
			b.Fatal(err)
		default:
		}
	}
	if _, ok := lk.Regulations[vm]; !ok {
		if _, _, err := connect(b, "vmm1").PutRegulationJSON(c, vm, []byte(`{"countries": ["JP", "GB"], "organizations": ["CompanyA", "CompanyB"]}`)); err != nil {
			b.Fatal(err)
		}
	}
	return names, vm
}

// BenchmarkCheck1000Hosts is the decision made by the chaincode on every
// request: one evaluate of Check for a regulated VM over 1,000 hosts.
func BenchmarkCheck1000Hosts(b *testing.B) {
	names, vm := seed1000(b)
	l := connect(b, "org1-user")
	c := context.Background()
	var lat latencies
	b.ResetTimer()
	for b.Loop() {
		lat.time(func() {
			res, err := l.Check(c, vm.ID(), "", names, filter.Options{})
			if err != nil || len(res.Verdicts) != len(names) || !res.Regulated {
				b.Fatalf("check: %d verdicts, %v", len(res.Verdicts), err)
			}
		})
	}
	lat.report(b)
}

// BenchmarkCachedDecision1000Hosts is the same decision made from records
// already in memory (what a cache fed by the event stream does per request),
// for the ratio against BenchmarkCheck1000Hosts.
func BenchmarkCachedDecision1000Hosts(b *testing.B) {
	names, vm := seed1000(b)
	lk, err := connect(b, "org1-user").Lookup(context.Background(), []filter.Subject{vm}, names)
	if err != nil {
		b.Fatal(err)
	}
	hosts := make(map[string]filter.Host, len(lk.Hosts))
	for n, r := range lk.Hosts {
		hosts[n] = r.Host
	}
	regs := []filter.Regulation{lk.Regulations[vm].Regulation}
	var lat latencies
	b.ResetTimer()
	for b.Loop() {
		lat.time(func() {
			cands := make([]filter.Candidate, len(names))
			for i, n := range names {
				cands[i].Name = n
				if h, ok := hosts[n]; ok {
					cands[i].Host = &h
				}
			}
			if res := filter.Evaluate(regs, cands, filter.Options{}); len(res.Verdicts) != len(names) {
				b.Fatal("short result")
			}
		})
	}
	lat.report(b)
}

// BenchmarkLookup is a cache miss: one VM's regulations and n hosts in one evaluate.
func BenchmarkLookup(b *testing.B) {
	names, vm := seed1000(b)
	l := connect(b, "org1-user")
	for _, n := range []int{1, 20, 1000} {
		b.Run(fmt.Sprintf("hosts=%d", n), func(b *testing.B) {
			var lat latencies
			for b.Loop() {
				lat.time(func() {
					lk, err := l.Lookup(context.Background(), []filter.Subject{vm, filter.ProjectSubject("p1")}, names[:n])
					if err != nil || len(lk.Hosts) != n {
						b.Fatalf("lookup: %d hosts, %v", len(lk.Hosts), err)
					}
				})
			}
			lat.report(b)
		})
	}
}

// BenchmarkGetHost is one evaluate of one key.
func BenchmarkGetHost(b *testing.B) {
	seed1000(b)
	l := connect(b, "org1-user")
	var lat latencies
	for b.Loop() {
		lat.time(func() {
			if _, err := l.GetHost(context.Background(), "bench-0001"); err != nil {
				b.Fatal(err)
			}
		})
	}
	lat.report(b)
}

// BenchmarkCommitToEvent is the time from a write's commit status (as its
// writer sees it) to its event at a watching consumer on the other
// organisation's peer: the lag of an event-fed cache. Negative when the event
// came first.
func BenchmarkCommitToEvent(b *testing.B) {
	agent := connect(b, "hm5agent")
	c, cancel := context.WithCancel(context.Background())
	defer cancel()
	h0, err := agent.Height(c)
	if err != nil {
		b.Fatal(err)
	}
	events, err := connect(b, "org2-user").Watch(c, h0+1)
	if err != nil {
		b.Fatal(err)
	}
	arrived := make(chan string, 16)
	arrivals := sync.Map{}
	go func() {
		for ev := range events {
			if ev.Kind == ledger.KindHost && ev.Host != nil {
				arrivals.Store(ev.Host.Region, time.Now())
				select {
				case arrived <- ev.Host.Region:
				default:
				}
			}
		}
	}()
	var lat latencies
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		region := fmt.Sprintf("e%s-%d", runID, i)
		if _, _, err := agent.PutHost(c, filter.Host{Name: "hm5", Country: "JP", Organizations: []string{"CompanyA"}, Region: region}); err != nil {
			b.Fatal(err)
		}
		committed := time.Now()
		deadline := time.After(time.Minute)
		for {
			if at, ok := arrivals.Load(region); ok {
				lat = append(lat, at.(time.Time).Sub(committed))
				break
			}
			select {
			case <-arrived:
			case <-deadline:
				b.Fatalf("no event for %s after a minute", region)
			}
		}
	}
	lat.report(b)
}
