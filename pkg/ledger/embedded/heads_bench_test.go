package embedded_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/ledgerfence/ledgerfence/pkg/cache"
	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/embedded"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/head"
)

// reportLatency reports the median and 99th percentile of d.
func reportLatency(b *testing.B, d []time.Duration) {
	if len(d) == 0 {
		return
	}
	slices.Sort(d)
	at := func(q float64) float64 {
		return float64(d[min(len(d)-1, int(q*float64(len(d))))].Microseconds()) / 1000
	}
	b.ReportMetric(at(0.50), "p50-ms")
	b.ReportMetric(at(0.99), "p99-ms")
}

// BenchmarkWriteLatency measures durable host writes (one synced bbolt
// commit each) one after another, as filterd's REST API makes them, with
// their median and 99th percentile: signed, the head signed with Ed25519
// after every commit and the head file following; unsigned, the head file
// only. The README compares them with the same loop before heads existed.
func BenchmarkWriteLatency(b *testing.B) {
	for _, signed := range []bool{false, true} {
		name := "unsigned"
		if signed {
			name = "signed"
		}
		b.Run(name, func(b *testing.B) {
			dir := b.TempDir()
			var opts []embedded.Option
			if signed {
				s, _, err := head.LoadOrCreateSigner(dir)
				if err != nil {
					b.Fatal(err)
				}
				opts = append(opts, embedded.WithHeadSigner(s))
			}
			l := openAt(b, filepath.Join(dir, embedded.FileName), opts...)
			ctx := as(alice)
			orgs := []string{"CompanyA", "CompanyB"}
			lat := make([]time.Duration, 0, b.N)
			i := 0
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

func TestMain(m *testing.M) {
	code := m.Run()
	if big.dir != "" {
		os.RemoveAll(big.dir)
	}
	os.Exit(code)
}

// big is a ledger of 100,000 entries, made once per test binary: 10,000
// hosts put five times each (a changed organisation every time) and 25,000
// project regulations put twice each.
var big struct {
	once sync.Once
	dir  string
	err  error
}

const bigEntries = 100_000

func bigLedger(b *testing.B) string {
	b.Helper()
	big.once.Do(func() {
		big.dir, big.err = os.MkdirTemp("", "ledgerfence-bench-")
		if big.err != nil {
			return
		}
		s, _, err := head.LoadOrCreateSigner(big.dir)
		if err != nil {
			big.err = err
			return
		}
		l, err := embedded.Open(filepath.Join(big.dir, embedded.FileName), embedded.WithHeadSigner(s))
		if err != nil {
			big.err = err
			return
		}
		puts := make([]any, 0, bigEntries)
		countries := []string{"JP", "GB", "DE", "FR", "US"}
		for v := range 5 {
			for h := range 10_000 {
				puts = append(puts, filter.Host{Name: fmt.Sprintf("cmp-%05d", h), Country: countries[h%5],
					Organizations: []string{"CompanyA", fmt.Sprintf("Org%d", v)}})
			}
		}
		for v := range 2 {
			for p := range 25_000 {
				puts = append(puts, filter.Regulation{Subject: filter.ProjectSubject(fmt.Sprintf("p%05d", p)),
					Allow: []filter.Rule{{Country: countries[(p+v)%5], Organization: "CompanyA"}, {Country: "*", Organization: fmt.Sprintf("Org%d", p%7)}}})
			}
		}
		if big.err = embedded.PutBatch(l, alice, puts, 1000); big.err != nil {
			l.Close()
			return
		}
		big.err = l.Close()
	})
	if big.err != nil {
		b.Fatal(big.err)
	}
	return filepath.Join(big.dir, embedded.FileName)
}

// BenchmarkVerify100k measures ledgerctl verify of a 100,000-entry ledger:
// opening it read-only (its pages and bbolt's consistency check), then the
// whole chain recomputed and the state replayed.
func BenchmarkVerify100k(b *testing.B) {
	path := bigLedger(b)
	for b.Loop() {
		l, err := embedded.OpenReadOnly(path)
		if err != nil {
			b.Fatal(err)
		}
		rep, err := l.Verify(context.Background())
		if err != nil || rep.Height != bigEntries {
			b.Fatalf("Verify = %+v, %v", rep, err)
		}
		l.Close()
	}
	fi, _ := os.Stat(path)
	b.ReportMetric(float64(fi.Size())/(1<<20), "file-MiB")
}

// BenchmarkOpenCheck100k measures the structural part of opening a
// 100,000-entry ledger alone: every page checked, then bbolt's consistency
// check (tx.Check).
func BenchmarkOpenCheck100k(b *testing.B) {
	path := bigLedger(b)
	for b.Loop() {
		l, err := embedded.OpenReadOnly(path)
		if err != nil {
			b.Fatal(err)
		}
		l.Close()
	}
}

// BenchmarkStartup100k measures what filterd does before it is ready, on a
// 100,000-entry ledger: Open (pages, tx.Check, Verify, the head file, the
// head signed), then the cache filled with its 10,000 hosts.
func BenchmarkStartup100k(b *testing.B) {
	path := bigLedger(b)
	s, _, err := head.LoadOrCreateSigner(filepath.Dir(path))
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		l, err := embedded.Open(path, embedded.WithHeadSigner(s))
		if err != nil {
			b.Fatal(err)
		}
		c, err := cache.New(l, zap.NewNop(), prometheus.NewRegistry(), cache.Config{})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = c.Run(ctx) }()
		for !c.Ready() {
			time.Sleep(100 * time.Microsecond)
		}
		cancel()
		<-done
		l.Close()
	}
}
