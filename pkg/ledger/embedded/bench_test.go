package embedded_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/ledgerfence/ledgerfence/pkg/filter"
)

// BenchmarkPutHost measures one durable host write (one bbolt commit with
// fsync), each of a host not yet stored.
func BenchmarkPutHost(b *testing.B) {
	l := open(b)
	ctx := as(alice)
	orgs := []string{"CompanyA", "CompanyB"}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, _, err := l.PutHost(ctx, filter.Host{Name: fmt.Sprintf("cmp-%07d", i), Country: "JP", Organizations: orgs}); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkLookup measures one batched read of 1,000 hosts and the two
// regulations of a VM, the miss path of filterd's webhook.
func BenchmarkLookup(b *testing.B) {
	l := open(b)
	ctx := as(alice)
	const n = 1000
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("cmp-%04d", i)
		mustPutHost(b, l, ctx, filter.Host{Name: names[i], Country: []string{"JP", "GB", "DE"}[i%3], Organizations: []string{"CompanyA", "CompanyB"}})
	}
	vm, project := filter.VMSubject(vm1), filter.ProjectSubject("p1")
	mustPutRegulation(b, l, ctx, vm, filter.Rule{Country: "JP", Organization: "CompanyA"}, filter.Rule{Country: "GB", Organization: "*"})
	mustPutRegulation(b, l, ctx, project, filter.Rule{Country: "*", Organization: "CompanyA"})
	subjects := []filter.Subject{vm, project}
	b.ReportAllocs()
	for b.Loop() {
		res, err := l.Lookup(context.Background(), subjects, names)
		if err != nil {
			b.Fatal(err)
		}
		if len(res.Hosts) != n || len(res.Regulations) != 2 {
			b.Fatalf("got %d hosts, %d regulations", len(res.Hosts), len(res.Regulations))
		}
	}
}
