package embedded_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/access"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/embedded"
)

// BenchmarkAttestHost measures one durable attestation (one synced bbolt
// commit), each of a host registered before the timer starts, by an
// attestor token's identity, with its median and 99th percentile.
func BenchmarkAttestHost(b *testing.B) {
	l := open(b)
	orgs := []string{"CompanyA", "CompanyB"}
	const batch = 10_000
	registered := 0
	register := func(n int) {
		puts := make([]any, 0, n)
		for i := registered; i < registered+n; i++ {
			puts = append(puts, filter.Host{Name: fmt.Sprintf("cmp-%07d", i), Country: "JP", Organizations: orgs})
		}
		if err := embedded.PutBatch(l, ledger.Writer{ID: "agent"}, puts, 1000); err != nil {
			b.Fatal(err)
		}
		registered += n
	}
	ctx := access.WithIdentity(context.Background(), access.Identity{ID: "attestor", Role: access.RoleAttestor})
	lat := make([]time.Duration, 0, b.N)
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		if i == registered {
			b.StopTimer()
			register(batch)
			b.StartTimer()
		}
		start := time.Now()
		if _, changed, err := l.AttestHost(ctx, fmt.Sprintf("cmp-%07d", i), "JP", orgs); err != nil || !changed {
			b.Fatalf("attestation %d: %v, changed %v", i, err, changed)
		}
		lat = append(lat, time.Since(start))
		i++
	}
	reportLatency(b, lat)
}

// BenchmarkPutHostRegistry measures one durable host write by a host
// admin's identity, which reads and applies the registry in force: none,
// or one of 64 members (the most a registry has) of 100 or 1,000
// organisation codes each (the writer's member the last in order).
func BenchmarkPutHostRegistry(b *testing.B) {
	for _, tc := range []struct {
		name    string
		members int
		orgs    int
	}{
		{"none", 0, 0},
		{"64x100", 64, 100},
		{"64x1000", 64, 1000},
	} {
		b.Run(tc.name, func(b *testing.B) {
			l := open(b)
			if tc.members > 0 {
				reg := &ledger.Registry{Members: map[string]ledger.Member{}}
				for m := 0; m < tc.members; m++ {
					msp := fmt.Sprintf("Org%02dMSP", m)
					if m == tc.members-1 {
						msp = ""
					}
					codes := make([]string, tc.orgs)
					for o := range codes {
						codes[o] = fmt.Sprintf("Company%04d", o)
					}
					reg.Members[msp] = ledger.Member{Organizations: codes}
				}
				if _, err := l.Propose(as(alice), ledger.Proposal{Kind: ledger.ProposeRegistry, Registry: reg}); err != nil {
					b.Fatal(err)
				}
			}
			ctx := access.WithIdentity(context.Background(), access.Identity{ID: "hostadmin", Role: access.RoleHostAdmin})
			orgs := []string{"Company0001", "Company0002"}
			lat := make([]time.Duration, 0, b.N)
			i := 0
			b.ReportAllocs()
			for b.Loop() {
				start := time.Now()
				if _, _, err := l.PutHost(ctx, filter.Host{Name: fmt.Sprintf("cmp-%07d", i), Country: "JP", Organizations: orgs}); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(start))
				i++
			}
			reportLatency(b, lat)
		})
	}
}
