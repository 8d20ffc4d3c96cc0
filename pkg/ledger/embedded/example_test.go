package embedded_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/embedded"
)

func Example() {
	dir, err := os.MkdirTemp("", "ledgerfence")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	l, err := embedded.Open(filepath.Join(dir, embedded.FileName))
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()

	ctx := ledger.WithWriter(context.Background(), ledger.Writer{ID: "vm-manager"})
	vm := filter.VMSubject("3f0c9a52-6b1e-4d8a-9c1e-2a7b5d4e6f10")

	// Register a host and regulate a VM.
	if _, _, err := l.PutHost(ctx, filter.Host{Name: "compute-jp-1", Country: "jp", Organizations: []string{"CompanyA"}}); err != nil {
		log.Fatal(err)
	}
	reg, _, err := l.PutRegulation(ctx, vm, filter.Terms{Allow: []filter.Rule{{Country: "JP", Organization: "CompanyA"}, {Country: "GB", Organization: "All"}}})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("regulation", reg.Subject, reg.Allow, "owner", reg.Owner, "version", reg.Version)

	// Writing the same host again is a no-op.
	_, changed, _ := l.PutHost(ctx, filter.Host{Name: "compute-jp-1", Country: "JP", Organizations: []string{"CompanyA"}})
	fmt.Println("changed:", changed)

	// Bad input is refused and nothing is written.
	_, _, err = l.PutHost(ctx, filter.Host{Name: "compute-xx-1", Country: "XX", Organizations: []string{"CompanyA"}})
	fmt.Println(err)

	// One batched read, as the scheduler's webhook does.
	res, err := l.Lookup(ctx, []filter.Subject{vm}, []string{"compute-jp-1", "compute-de-1"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("height", res.Height, "regulations", len(res.Regulations), "hosts", len(res.Hosts))

	// The file matches its hash chain.
	rep, err := l.Verify(ctx)
	fmt.Println("verified", rep.OK, "entries", rep.Height, err)

	// Output:
	// regulation vm:3f0c9a52-6b1e-4d8a-9c1e-2a7b5d4e6f10 [GB.* JP.CompanyA] owner vm-manager version 1
	// changed: false
	// ledger: invalid input: country: "XX" is not an ISO 3166-1 alpha-2 country code
	// height 2 regulations 1 hosts 1
	// verified true entries 2 <nil>
}

func ExampleLedger_Watch() {
	dir, err := os.MkdirTemp("", "ledgerfence")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	l, err := embedded.Open(filepath.Join(dir, embedded.FileName))
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	l.PutHost(ctx, filter.Host{Name: "compute-jp-1", Country: "JP", Organizations: []string{"CompanyA"}})

	// Replay from the start, then follow new writes.
	events, err := l.Watch(ctx, 0)
	if err != nil {
		log.Fatal(err)
	}
	l.PutHost(ctx, filter.Host{Name: "compute-gb-1", Country: "GB", Organizations: []string{"CompanyB"}})
	for range 2 {
		ev := <-events
		fmt.Println(ev.Block, ev.Kind, ev.Op, ev.Key, ev.Host.Country, ev.Writer)
	}
	// Output:
	// 1 host put compute-jp-1 JP embedded
	// 2 host put compute-gb-1 GB embedded
}
