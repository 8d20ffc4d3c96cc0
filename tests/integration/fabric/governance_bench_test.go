package fabric_test

// Figures of governance on the real network, with two and three
// organisations (the governance tests' own networks, a registry in force):
//
//	LEDGERFENCE_FABRIC_PORT_BASE=23000 go test ./tests/integration/fabric -count=1 -run '^$' \
//	  -bench '^BenchmarkGoverned' -benchtime 100x -v

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/fabric"
	"github.com/ledgerfence/ledgerfence/tests/integration/fabricnet"
)

// inForce makes sure a registry giving each organisation its own code
// (Org1MSP CompanyA, ...) is in force on n: proposed by Org1, approved by
// every other organisation.
func inForce(tb testing.TB, g *gov) {
	tb.Helper()
	c := context.Background()
	org1 := g.as(tb, "padmin")
	if _, err := org1.Registry(c); err == nil {
		return
	} else if !errors.Is(err, ledger.ErrNotFound) {
		tb.Fatal(err)
	}
	p, err := org1.Propose(c, ledger.Proposal{Kind: ledger.ProposeRegistry, Registry: g.registry(nil)})
	if err != nil {
		tb.Fatal(err)
	}
	for _, o := range g.orgs[1:] {
		if _, err := g.as(tb, policyAdmins[o.Num]).Approve(c, p.ID); err != nil {
			tb.Fatal(err)
		}
	}
}

// BenchmarkGovernedCommit is the commit latency, from endorsement to the
// commit status, of a host registration (PutHost of a new host by Org1's
// host admin, checked against the registry in force) and of its attestation
// (AttestHost by Org2's attestor through Org2's peer, once that peer holds
// the registration), one at a time, with two and three organisations.
func BenchmarkGovernedCommit(b *testing.B) {
	for _, orgs := range []int{2, 3} {
		b.Run(fmt.Sprintf("orgs=%d", orgs), func(b *testing.B) {
			n := governedNetwork(b, orgs)
			g := &gov{n: n, orgs: n.Orgs(), ls: map[string]*fabric.Ledger{}}
			defer g.close()
			inForce(b, g)
			admin, attestor := g.as(b, "hadmin"), g.as(b, "attestor-org2")
			c := context.Background()
			prefix := uniq(fmt.Sprintf("gc%d-%d", orgs, b.N))
			var reg, att latencies
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				h := filter.Host{Name: fmt.Sprintf("%s-%d", prefix, i), Country: "JP", Organizations: []string{"CompanyA"}}
				reg.time(func() {
					if _, changed, err := admin.PutHost(c, h); err != nil || !changed {
						b.Fatalf("register: changed %v, %v", changed, err)
					}
				})
				g.sync(b) // the attestor's peer holds the host, as it would a while after its registration
				att.time(func() {
					if rec, changed, err := attestor.AttestHost(c, h.Name, h.Country, h.Organizations); err != nil || !changed || !rec.Attested() {
						b.Fatalf("attest: changed %v, %v", changed, err)
					}
				})
			}
			b.StopTimer()
			reg.reportAs(b, "register-")
			att.reportAs(b, "attest-")
		})
	}
}

// reportAs reports the percentiles with a prefix to their units.
func (l latencies) reportAs(b *testing.B, prefix string) {
	if len(l) == 0 {
		return
	}
	s := slices.Clone(l)
	slices.Sort(s)
	pct := func(p float64) float64 {
		i := int(p*float64(len(s))+0.5) - 1
		return float64(s[max(0, min(i, len(s)-1))].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.50), prefix+"p50-ms")
	b.ReportMetric(pct(0.95), prefix+"p95-ms")
}

// BenchmarkGovernedNetworkRSS reports the resident memory of each process
// of the governance tests' networks (ctl.sh status), with two and three
// organisations: run it after BenchmarkGovernedCommit.
func BenchmarkGovernedNetworkRSS(b *testing.B) {
	for _, orgs := range []int{2, 3} {
		b.Run(fmt.Sprintf("orgs=%d", orgs), func(b *testing.B) {
			n := governedNetwork(b, orgs)
			for b.Loop() {
			}
			reportRSS(b, n)
		})
	}
}

func reportRSS(b *testing.B, n *fabricnet.Network) {
	cmd := exec.Command(n.Get("CTL"), "status")
	cmd.Env = append(os.Environ(), "LEDGERFENCE_FABRIC_DIR="+n.Dir())
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
