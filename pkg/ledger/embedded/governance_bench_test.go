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

// BenchmarkLookupRegistry measures BenchmarkLookup's batched read (1,000
// hosts, a VM's two regulations) under no registry and under one of 64
// members of 1,000 organisation codes each, which every lookup reads for
// its require_attested.
func BenchmarkLookupRegistry(b *testing.B) {
	for _, members := range []int{0, 64} {
		b.Run(fmt.Sprintf("members=%d", members), func(b *testing.B) {
			l := open(b)
			ctx := as(alice)
			if members > 0 {
				reg := &ledger.Registry{Members: map[string]ledger.Member{}}
				for m := 0; m < members; m++ {
					codes := make([]string, 1000)
					for o := range codes {
						codes[o] = fmt.Sprintf("Company%04d", o)
					}
					reg.Members[fmt.Sprintf("Org%02dMSP", m)] = ledger.Member{Organizations: codes}
				}
				if _, err := l.Propose(ctx, ledger.Proposal{Kind: ledger.ProposeRegistry, Registry: reg}); err != nil {
					b.Fatal(err)
				}
			}
			const n = 1000
			names := make([]string, n)
			puts := make([]any, n)
			for i := range names {
				names[i] = fmt.Sprintf("cmp-%04d", i)
				puts[i] = filter.Host{Name: names[i], Country: "JP", Organizations: []string{"CompanyA"}}
			}
			if err := embedded.PutBatch(l, alice, puts, n); err != nil {
				b.Fatal(err)
			}
			vm, project := filter.VMSubject(vm1), filter.ProjectSubject("p1")
			mustPutRegulation(b, l, ctx, vm, filter.Rule{Country: "JP", Organization: "CompanyA"})
			subjects := []filter.Subject{vm, project}
			b.ReportAllocs()
			for b.Loop() {
				res, err := l.Lookup(context.Background(), subjects, names)
				if err != nil || len(res.Hosts) != n || res.RequireAttested {
					b.Fatalf("Lookup: %d hosts, %v", len(res.Hosts), err)
				}
			}
		})
	}
}
