package fabric_test

// Figures of filterd --ledger fabric on the real network, as benchmarks
// (latency percentiles as extra metrics; nothing here asserts a time):
//
//	go test ./tests/integration/fabric -run '^$' -bench 'Webhook1000Hosts' -benchtime 200x -v
//	go test ./tests/integration/fabric -run '^$' -bench 'RegistrationCommit|CommitToEnforcement|NetworkRSS' -benchtime 20x -v

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ledgerfence/ledgerfence/pkg/filter"
)

// benchProject is a project whose regulation (the seed's VM1 rules) applies
// to every VM of the cold runs: each request names a VM filterd has never
// seen, so its regulation is one ledger lookup, and the project's
// regulation makes the decision a regulated one over every candidate.
var benchProject = filter.ProjectSubject("bench-cold")

// allowedOf1000 is how many of seed1000's hosts VM1's rules allow.
func allowedOf1000(names []string) []string {
	var out []string
	for i, n := range names {
		// seed1000: countries JP GB DE US FR, organisations CompanyA CompanyB CompanyC, round robin
		if i%5 <= 1 && i%3 <= 1 {
			out = append(out, n)
		}
	}
	return out
}

func p50(l latencies) time.Duration {
	s := slices.Clone(l)
	slices.Sort(s)
	return s[len(s)/2]
}

// rssMiB is a process's resident memory.
func rssMiB(pid int) float64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")))
			return float64(kb) / 1024
		}
	}
	return 0
}

// BenchmarkWebhook1000Hosts is one webhook request for a regulated VM with
// 1,000 candidates, all registered, through filterd on the Fabric ledger,
// one request at a time:
//   - warm: the VM's regulation and the hosts are in filterd's cache;
//   - cold: every request names a new VM (of a regulated project), so its
//     regulation is looked up on the peer (one Lookup evaluate) first;
//   - chaincode: the same decision made by evaluating the chaincode's Check
//     on the peer for every request, with no cache (fabric.Check).
func BenchmarkWebhook1000Hosts(b *testing.B) {
	names, vm := seed1000(b)
	want := allowedOf1000(names)
	vmm := connect(b, "vmm1")
	// a project's regulation is made by its organisation, once it is bound to it
	if _, _, err := connect(b, "padmin").BindProject(context.Background(), benchProject.ID()); err != nil {
		b.Fatal(err)
	}
	if _, _, err := vmm.PutRegulationJSON(context.Background(), benchProject, []byte(vm1Regulation)); err != nil {
		b.Fatal(err)
	}
	f := startFilterd(b, "org1-user")
	p50s := map[string]time.Duration{}

	b.Run("warm", func(b *testing.B) {
		body := novaBody(vm.ID(), "", names)
		f.mustWebhook(b, body) // into the cache
		var lat latencies
		for b.Loop() {
			lat.time(func() {
				a, err := f.webhook(context.Background(), body)
				if err != nil || !slices.Equal(a.hosts, want) {
					b.Fatalf("%d hosts, want %d: %v", len(a.hosts), len(want), err)
				}
			})
		}
		lat.report(b)
		p50s["warm"] = p50(lat)
	})

	b.Run("cold", func(b *testing.B) {
		misses0, _ := f.metric(b, "ledgerfence_cache_requests_total", map[string]string{"result": "miss"})
		var lat latencies
		n := 0
		for b.Loop() {
			n++
			body := novaBody(fmt.Sprintf("c0%06x-0000-4000-8000-%012x", n, runNum&0xffffffffffff), benchProject.ID(), names)
			lat.time(func() {
				a, err := f.webhook(context.Background(), body)
				if err != nil || !slices.Equal(a.hosts, want) {
					b.Fatalf("%d hosts, want %d: %v", len(a.hosts), len(want), err)
				}
			})
		}
		lat.report(b)
		p50s["cold"] = p50(lat)
		if misses, _ := f.metric(b, "ledgerfence_cache_requests_total", map[string]string{"result": "miss"}); misses-misses0 < float64(n) {
			b.Fatalf("%v cache misses in %d requests for new VMs", misses-misses0, n)
		}
	})

	b.Run("chaincode", func(b *testing.B) {
		l := connect(b, "org1-user")
		var lat latencies
		for b.Loop() {
			lat.time(func() {
				res, err := l.Check(context.Background(), vm.ID(), "", names, filter.Options{})
				if err != nil || !res.Regulated || len(res.Allowed) != len(want) {
					b.Fatalf("check: %d allowed, want %d: %v", len(res.Allowed), len(want), err)
				}
			})
		}
		lat.report(b)
		p50s["chaincode"] = p50(lat)
	})

	if w, c := p50s["warm"], p50s["chaincode"]; w > 0 && c > 0 {
		b.Logf("p50 warm %s, cold %s, chaincode check %s: chaincode/warm = %.1fx; filterd RSS %.1f MiB",
			w, p50s["cold"], c, float64(c)/float64(w), rssMiB(f.cmd.Process.Pid))
	}
}

// BenchmarkCommitToEnforcement is the time from a regulation change's
// commit (as its writer, vmm1, sees it) to the first webhook answer of
// filterd that reflects it; each iteration narrows VM1 to JP or widens it
// back, and the webhook is polled every millisecond. submit-p50-ms and
// submit-p95-ms count from the start of the write instead.
func BenchmarkCommitToEnforcement(b *testing.B) {
	vm := vmSubject(120)
	seedTable4(b, vm)
	f := startFilterd(b, "org1-user")
	vmm := connect(b, "vmm1")
	enforced(b, f, vm.ID(), true)
	var lat, fromSubmit latencies
	tight := false
	for b.Loop() {
		tight = !tight
		body := vm1Regulation
		if tight {
			body = vm1Tightened
		}
		submitted := time.Now()
		if _, changed, err := vmm.PutRegulationJSON(context.Background(), vm, []byte(body)); err != nil || !changed {
			b.Fatalf("regulation: changed %v, %v", changed, err)
		}
		committed := time.Now()
		seen := enforced(b, f, vm.ID(), !tight)
		lat = append(lat, seen.Sub(committed))
		fromSubmit = append(fromSubmit, seen.Sub(submitted))
	}
	lat.report(b)
	s := slices.Clone(fromSubmit)
	slices.Sort(s)
	b.ReportMetric(float64(s[len(s)/2].Microseconds())/1000, "submit-p50-ms")
	b.ReportMetric(float64(s[min(len(s)-1, int(0.95*float64(len(s))+0.5)-1)].Microseconds())/1000, "submit-p95-ms")
}

// BenchmarkNetworkRSS reports the resident memory of the network's
// processes (ctl.sh status) at the time it runs: run it after the others.
func BenchmarkNetworkRSS(b *testing.B) {
	needNetwork(b)
	for b.Loop() {
	}
	cmd := exec.Command(net0.Get("CTL"), "status")
	cmd.Env = append(os.Environ(), "LEDGERFENCE_FABRIC_DIR="+net0.Get("DIR"))
	out, err := cmd.Output()
	if err != nil {
		b.Fatalf("ctl.sh status: %v", err)
	}
	b.Logf("ctl.sh status:\n%s", out)
	for _, line := range strings.Split(string(out), "\n") {
		fs := strings.Fields(line)
		if len(fs) < 2 {
			continue
		}
		if mib, err := strconv.ParseFloat(fs[len(fs)-1], 64); err == nil {
			b.ReportMetric(mib, fs[0]+"-MiB")
		}
	}
}
