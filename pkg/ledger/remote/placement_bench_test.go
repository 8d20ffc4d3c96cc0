package remote_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/access"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/remote"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/tokens"
)

// BenchmarkPlacementsOverHTTP measures, through a server of the ledger's
// HTTP side over an embedded ledger, one placement recorded by a
// recorder's token (one synced commit; median and 99th percentile), and
// the read of a VM's 10,000 placements (GET /v1/placements: the ledger's
// read, the answer's encoding and the client's decoding).
func BenchmarkPlacementsOverHTTP(b *testing.B) {
	dir := b.TempDir()
	url := placementServerLogging(b, dir, zap.NewNop())
	secret, _, err := tokens.Issue(filepath.Join(dir, tokens.FileName), access.Identity{ID: "recorder", Role: access.RoleRecorder}, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	op, err := remote.New(url, remote.WithToken(token))
	if err != nil {
		b.Fatal(err)
	}
	defer op.Close()
	rec, err := remote.New(url, remote.WithToken(secret))
	if err != nil {
		b.Fatal(err)
	}
	defer rec.Close()
	ctx := context.Background()
	for _, h := range []filter.Host{host("hm1", "JP", "A"), host("hm2", "DE", "A")} {
		if _, _, err := op.PutHost(ctx, h); err != nil {
			b.Fatal(err)
		}
	}
	if _, _, err := op.PutRegulation(ctx, filter.VMSubject(pvm1), filter.Terms{Allow: []filter.Rule{{Country: "JP", Organization: "A"}}}); err != nil {
		b.Fatal(err)
	}
	move := func(vm string, i int) ledger.Placement {
		return ledger.Placement{VM: vm, Project: "p1", Host: []string{"hm1", "hm2"}[i%2], Op: ledger.OpLiveMigration,
			At: pAt.Add(time.Duration(i) * time.Minute), Witness: ledger.WitnessNova, Ref: fmt.Sprintf("msg-%07d", i)}
	}
	b.Run("record", func(b *testing.B) {
		lat := make([]time.Duration, 0, b.N)
		i := 0
		for b.Loop() {
			start := time.Now()
			if _, changed, err := rec.RecordPlacement(ctx, move(pvm2, i)); err != nil || !changed {
				b.Fatalf("placement %d: %v, %v", i, err, changed)
			}
			lat = append(lat, time.Since(start))
			i++
		}
		slices.Sort(lat)
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(lat[min(len(lat)-1, len(lat)*99/100)].Microseconds())/1000, "p99-ms")
	})
	const n = 10_000
	for i := range n {
		if _, _, err := op.RecordPlacement(ctx, move(pvm1, i)); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("read 10000", func(b *testing.B) {
		for b.Loop() {
			got, err := rec.Placements(ctx, ledger.PlacementQuery{VM: pvm1})
			if err != nil || len(got) != n {
				b.Fatalf("%d placements, %v", len(got), err)
			}
		}
	})
}
