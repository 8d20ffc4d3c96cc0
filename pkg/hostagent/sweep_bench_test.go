package hostagent

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/ledgerfence/ledgerfence/pkg/cloud"
	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/embedded"
)

// BenchmarkSweep100 is one sweep of 100 servers, half of them regulated, on
// the embedded ledger: the ledger lookup and the decisions, without Nova's
// listing (measured against the mini cloud by the integration tests).
//
//	go test -run '^$' -bench Sweep100 -benchtime 200x ./pkg/hostagent
func BenchmarkSweep100(b *testing.B) {
	ctx := context.Background()
	l, err := embedded.Open(filepath.Join(b.TempDir(), embedded.FileName))
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	if _, _, err := l.PutHost(ctx, filter.Host{Name: "cmp", Country: "DE", Organizations: []string{"CompanyA"}}); err != nil {
		b.Fatal(err)
	}
	var servers []cloud.Server
	for i := 0; i < 100; i++ {
		id := fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i)
		servers = append(servers, cloud.Server{ID: id, ProjectID: fmt.Sprintf("p%d", i%10)})
		if i%2 == 0 {
			if _, _, err := l.PutRegulation(ctx, filter.VMSubject(id), filter.Terms{Allow: []filter.Rule{{Country: "JP", Organization: "CompanyA"}}}); err != nil {
				b.Fatal(err)
			}
		}
	}
	s := &Sweeper{Host: "cmp", Servers: &fakeServers{byHost: map[string][]cloud.Server{"cmp": servers}}, Ledger: l, Clock: SystemClock{}}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rep, err := s.Sweep(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if len(rep.Violations) != 50 {
			b.Fatalf("%d violations, want 50", len(rep.Violations))
		}
	}
}
