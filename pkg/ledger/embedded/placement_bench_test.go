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

var benchAt = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// placementLedger is a ledger with hosts hm1 (JP) and hm2 (DE) and the
// regulations of vm1 and its project p1, as a regulated VM has them.
func placementLedger(b testing.TB) *embedded.Ledger {
	l := open(b)
	ctx := as(alice)
	mustPutHost(b, l, ctx, filter.Host{Name: "hm1", Country: "JP", Organizations: []string{"CompanyA"}})
	mustPutHost(b, l, ctx, filter.Host{Name: "hm2", Country: "DE", Organizations: []string{"CompanyA"}})
	mustPutRegulation(b, l, ctx, filter.VMSubject(vm1), filter.Rule{Country: "JP", Organization: "CompanyA"})
	mustPutRegulation(b, l, ctx, filter.ProjectSubject("p1"), filter.Rule{Country: "*", Organization: "CompanyA"})
	return l
}

// moves are n placements of vm1, a minute apart, alternating between hm1
// and hm2 (every other one a violation).
func moves(n int) []ledger.Placement {
	ps := make([]ledger.Placement, n)
	for i := range ps {
		ps[i] = ledger.Placement{VM: vm1, Project: "p1", Host: []string{"hm1", "hm2"}[i%2], Op: ledger.OpLiveMigration,
			At: benchAt.Add(time.Duration(i) * time.Minute), Witness: ledger.WitnessNova, Ref: fmt.Sprintf("msg-%07d", i)}
	}
	return ps
}

// BenchmarkRecordPlacement measures one durable placement (one synced bbolt
// commit) by a recorder's identity, its verdict decided on the VM's two
// regulations and the host's record, with its median and 99th percentile.
func BenchmarkRecordPlacement(b *testing.B) {
	l := placementLedger(b)
	ctx := access.WithIdentity(context.Background(), access.Identity{ID: "recorder", Role: access.RoleRecorder})
	lat := make([]time.Duration, 0, b.N)
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		p := moves(1)[0]
		p.At, p.Ref = benchAt.Add(time.Duration(i)*time.Second), fmt.Sprintf("msg-%07d", i)
		start := time.Now()
		if _, changed, err := l.RecordPlacement(ctx, p); err != nil || !changed {
			b.Fatalf("placement %d: %v, changed %v", i, err, changed)
		}
		lat = append(lat, time.Since(start))
		i++
	}
	reportLatency(b, lat)
}

// BenchmarkPlacementsOfVM measures reading every placement of a VM that
// has 10,000, what a report of its whole life reads.
func BenchmarkPlacementsOfVM(b *testing.B) {
	const n = 10_000
	l := placementLedger(b)
	if err := embedded.RecordPlacements(l, ledger.Writer{ID: "recorder", Role: access.RoleRecorder}, moves(n), 1000); err != nil {
		b.Fatal(err)
	}
	for _, q := range []ledger.PlacementQuery{{VM: vm1}, {Project: "p1"}} {
		name := "vm"
		if q.Project != "" {
			name = "project"
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				got, err := l.Placements(context.Background(), q)
				if err != nil || len(got) != n {
					b.Fatalf("%d placements, %v", len(got), err)
				}
			}
		})
	}
}

// TestPlacementsOfALongLivedVM: a VM of 10,000 placements is read whole,
// in order, and a period of it is one range; how long the read took is
// logged (BenchmarkPlacementsOfVM measures it).
func TestPlacementsOfALongLivedVM(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: writes 10,000 placements")
	}
	const n = 10_000
	l := placementLedger(t)
	if err := embedded.RecordPlacements(l, ledger.Writer{ID: "recorder", Role: access.RoleRecorder}, moves(n), 1000); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	got, err := l.Placements(context.Background(), ledger.PlacementQuery{VM: vm1})
	took := time.Since(start)
	if err != nil || len(got) != n {
		t.Fatalf("%d placements, %v", len(got), err)
	}
	for i, p := range got {
		if !p.At.Equal(benchAt.Add(time.Duration(i)*time.Minute)) || p.Verdict == nil || p.Verdict.Allowed != (i%2 == 0) {
			t.Fatalf("placement %d: %+v", i, p)
		}
	}
	t.Logf("10,000 placements read in %s", took)
	got, err = l.Placements(context.Background(), ledger.PlacementQuery{VM: vm1, From: benchAt.Add(100 * time.Minute), To: benchAt.Add(200 * time.Minute)})
	if err != nil || len(got) != 100 || !got[0].At.Equal(benchAt.Add(100*time.Minute)) {
		t.Fatalf("a period: %d, %v", len(got), err)
	}
	if _, err := l.Verify(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkVerifyPlacements measures Verify of a ledger of 10,000
// placements (and the 4 writes of their facts): each verdict decided again
// on the replayed state, each record checked against its entry.
func BenchmarkVerifyPlacements(b *testing.B) {
	const n = 10_000
	l := placementLedger(b)
	if err := embedded.RecordPlacements(l, ledger.Writer{ID: "recorder", Role: access.RoleRecorder}, moves(n), 1000); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		rep, err := l.Verify(context.Background())
		if err != nil || rep.Placements != n {
			b.Fatalf("Verify = %+v, %v", rep, err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/n, "µs/placement")
}
