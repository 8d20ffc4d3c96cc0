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
// their median and 99th percentile: signed, every new head signed with
// Ed25519 as filterd signs it (signHeads) and the head file following;
// unsigned, the head file only. The README compares them with the same loop
// before heads existed.
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
				opts = append(opts, embedded.WithHeadSigner(signer(b, dir)))
			}
			l := openAt(b, filepath.Join(dir, embedded.FileName), opts...)
			if signed {
				signHeads(b, l)
			}
			lat := make([]time.Duration, 0, b.N)
			i := 0
			for b.Loop() {
				lat = append(lat, timedPut(b, l, i))
				i++
			}
			reportLatency(b, lat)
		})
	}
}

// BenchmarkWriteLatencyPaired writes alternately to two ledgers in the same
// process, so that both see the same load of a shared machine: one with
// its head file and every new head signed as filterd signs it, one with
// neither (the writes of before heads existed).
func BenchmarkWriteLatencyPaired(b *testing.B) {
	dir, plainDir := b.TempDir(), b.TempDir()
	heads := openAt(b, filepath.Join(dir, embedded.FileName), embedded.WithHeadSigner(signer(b, dir)))
	plain := openAt(b, filepath.Join(plainDir, embedded.FileName), embedded.WithoutHeadFile())
	signHeads(b, heads)
	var with, without []time.Duration
	i := 0
	for b.Loop() {
		if i%2 == 0 {
			with = append(with, timedPut(b, heads, i))
			without = append(without, timedPut(b, plain, i))
		} else {
			without = append(without, timedPut(b, plain, i))
			with = append(with, timedPut(b, heads, i))
		}
		i++
	}
	q := func(d []time.Duration, f float64) float64 {
		slices.Sort(d)
		return float64(d[min(len(d)-1, int(f*float64(len(d))))].Microseconds()) / 1000
	}
	b.ReportMetric(q(with, 0.5), "heads-p50-ms")
	b.ReportMetric(q(with, 0.99), "heads-p99-ms")
	b.ReportMetric(q(without, 0.5), "none-p50-ms")
	b.ReportMetric(q(without, 0.99), "none-p99-ms")
}

func signer(b *testing.B, dir string) *head.Signer {
	b.Helper()
	s, _, err := head.LoadOrCreateSigner(dir)
	if err != nil {
		b.Fatal(err)
	}
	return s
}

// signHeads signs every new head of l, as filterd's head loop does, until
// the benchmark ends.
func signHeads(b *testing.B, l *embedded.Ledger) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			wake := l.Changes()
			if _, err := l.SignedHead(ctx); err != nil && ctx.Err() == nil {
				b.Error(err)
			}
			select {
			case <-ctx.Done():
				return
			case <-wake:
			}
		}
	}()
	b.Cleanup(func() { cancel(); <-done })
}

// timedPut writes host i and returns how long the write took.
func timedPut(b *testing.B, l *embedded.Ledger, i int) time.Duration {
	start := time.Now()
	if _, _, err := l.PutHost(as(alice), filter.Host{Name: fmt.Sprintf("cmp-%07d", i), Country: "JP", Organizations: []string{"CompanyA", "CompanyB"}}); err != nil {
		b.Fatal(err)
	}
	return time.Since(start)
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
