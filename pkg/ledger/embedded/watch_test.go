package embedded_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/embedded"
)

// receive reads n events from ch, failing the test after a deadline.
func receive(t *testing.T, ch <-chan ledger.Event, n int) []ledger.Event {
	t.Helper()
	deadline := time.After(20 * time.Second)
	var got []ledger.Event
	for len(got) < n {
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Fatalf("channel closed after %d of %d events", len(got), n)
			}
			got = append(got, ev)
		case <-deadline:
			t.Fatalf("received %d of %d events", len(got), n)
		}
	}
	return got
}

// waitClosed fails the test unless ch is closed (after draining it) before
// a deadline.
func waitClosed(t *testing.T, ch <-chan ledger.Event) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatal("watch channel not closed")
		}
	}
}

// checkSequence checks that events are blocks from+1, from+2, ... with no
// gap and no duplicate.
func checkSequence(t *testing.T, events []ledger.Event, from uint64) {
	t.Helper()
	for i, ev := range events {
		if want := from + uint64(i) + 1; ev.Block != want {
			t.Fatalf("event %d is block %d, want %d", i, ev.Block, want)
		}
	}
}

func TestWatchReplay(t *testing.T) {
	l := open(t)
	h1 := mustPutHost(t, l, as(alice), host("cmp-1", "JP", "CompanyA"))
	r1 := mustPutRegulation(t, l, as(bob), filter.VMSubject(vm1), filter.Rule{Country: "JP", Organization: "CompanyA"})
	if err := l.DeleteRegulation(as(carol), filter.VMSubject(vm1)); err != nil {
		t.Fatal(err)
	}
	h2 := mustPutHost(t, l, as(alice), host("cmp-1", "GB", "CompanyA"))

	all := []ledger.Event{
		{Kind: ledger.KindHost, Key: "cmp-1", Op: ledger.OpPut, TxID: h1.TxID, Block: 1, Writer: alice, Time: h1.UpdatedAt, Host: &h1},
		{Kind: ledger.KindRegulation, Key: "vm:" + vm1, Op: ledger.OpPut, TxID: r1.TxID, Block: 2, Writer: bob, Time: r1.UpdatedAt, Regulation: &r1},
		{Kind: ledger.KindRegulation, Key: "vm:" + vm1, Op: ledger.OpDelete, Block: 3, Writer: carol},
		{Kind: ledger.KindHost, Key: "cmp-1", Op: ledger.OpPut, TxID: h2.TxID, Block: 4, Writer: alice, Time: h2.UpdatedAt, Host: &h2},
	}
	tests := []struct {
		name  string
		after uint64
		want  []ledger.Event
	}{
		{"from the start", 0, all},
		{"after a block", 2, all[2:]},
		{"after the head", 4, nil},
		{"beyond the head", 10, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			ch, err := l.Watch(ctx, tt.after)
			if err != nil {
				t.Fatalf("Watch: %v", err)
			}
			got := receive(t, ch, len(tt.want))
			for i, w := range tt.want {
				g := got[i]
				if g.Kind != w.Kind || g.Key != w.Key || g.Op != w.Op || g.Block != w.Block || g.Writer != w.Writer {
					t.Errorf("event %d = %+v, want %+v", i, g, w)
				}
				if w.TxID != "" && (g.TxID != w.TxID || !g.Time.Equal(w.Time)) {
					t.Errorf("event %d: tx %s at %v, want %s at %v", i, g.TxID, g.Time, w.TxID, w.Time)
				}
				if len(g.TxID) != 64 || g.Time.IsZero() {
					t.Errorf("event %d: tx id %q, time %v", i, g.TxID, g.Time)
				}
				switch {
				case w.Host != nil:
					if g.Host == nil || !g.Host.Host.Equal(w.Host.Host) || g.Host.TxID != w.TxID || g.Regulation != nil {
						t.Errorf("event %d carries host %+v, want %+v", i, g.Host, w.Host)
					}
				case w.Regulation != nil:
					if g.Regulation == nil || g.Regulation.Owner != w.Regulation.Owner || g.Regulation.Version != w.Regulation.Version || g.Host != nil {
						t.Errorf("event %d carries regulation %+v, want %+v", i, g.Regulation, w.Regulation)
					}
				default:
					if g.Host != nil || g.Regulation != nil {
						t.Errorf("delete event %d carries a value", i)
					}
				}
			}
			select {
			case ev := <-ch:
				t.Errorf("unexpected event %+v", ev)
			case <-time.After(20 * time.Millisecond):
			}
		})
	}
}

// TestWatchLive runs concurrent writers and three watchers: one that keeps
// up, one that starts in the middle, and one that reads nothing until every
// write has returned (so writers cannot have waited for it). Each must see
// every block once, in order.
func TestWatchLive(t *testing.T) {
	l := open(t)
	const writers, perWriter, before = 4, 60, 10
	for i := range before {
		mustPutHost(t, l, as(alice), host(fmt.Sprintf("old-%d", i), "JP", "CompanyA"))
	}
	total := before + writers*perWriter // more than the channel buffer and a read batch

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fast, err := l.Watch(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	slow, err := l.Watch(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	var fastGot []ledger.Event
	fastDone := make(chan struct{})
	go func() {
		defer close(fastDone)
		for ev := range fast {
			fastGot = append(fastGot, ev)
			if len(fastGot) == total {
				return
			}
		}
	}()

	var wg sync.WaitGroup
	var late <-chan ledger.Event
	var lateFrom uint64
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			wctx := as(ledger.Writer{ID: fmt.Sprintf("writer-%d", w)})
			for i := range perWriter {
				if w == 0 && i == perWriter/2 {
					h, err := l.Height(context.Background())
					if err != nil {
						t.Error(err)
						return
					}
					lateFrom = h
					if late, err = l.Watch(ctx, h); err != nil {
						t.Error(err)
						return
					}
				}
				var err error
				if i%3 == 2 {
					_, _, err = l.PutRegulation(wctx, filter.ProjectSubject(fmt.Sprintf("p-%d-%d", w, i)), filter.Terms{Allow: []filter.Rule{{Country: "JP", Organization: "*"}}})
				} else {
					_, _, err = l.PutHost(wctx, host(fmt.Sprintf("cmp-%d-%d", w, i), "GB", "CompanyB"))
				}
				if err != nil {
					t.Errorf("write: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait() // every write returned while slow has read nothing
	if t.Failed() {
		return
	}

	select {
	case <-fastDone:
	case <-time.After(20 * time.Second):
		t.Fatalf("fast watcher got %d of %d events", len(fastGot), total)
	}
	checkSequence(t, fastGot, 0)
	checkSequence(t, receive(t, slow, total), 0)
	checkSequence(t, receive(t, late, total-int(lateFrom)), lateFrom)

	// Events carry what the ledger returns.
	h, err := l.History(context.Background(), ledger.KindHost, "cmp-2-0")
	if err != nil {
		t.Fatal(err)
	}
	ev := fastGot[h[0].Block-1]
	if ev.Key != "cmp-2-0" || ev.TxID != h[0].TxID || ev.Writer.ID != "writer-2" || ev.Host == nil || ev.Host.Country != "GB" {
		t.Errorf("event of block %d = %+v, want the write of cmp-2-0 %+v", h[0].Block, ev, h[0])
	}

	// Live again after the burst.
	rec := mustPutHost(t, l, as(alice), host("cmp-last", "JP", "CompanyA"))
	for _, ch := range []<-chan ledger.Event{slow, late} {
		if got := receive(t, ch, 1); got[0].Block != uint64(total+1) || got[0].TxID != rec.TxID {
			t.Errorf("live event %+v, want block %d", got[0], total+1)
		}
	}
}

func TestWatchEnds(t *testing.T) {
	tests := []struct {
		name string
		end  func(cancel context.CancelFunc, l *embedded.Ledger)
	}{
		{"context cancelled", func(cancel context.CancelFunc, _ *embedded.Ledger) { cancel() }},
		{"ledger closed", func(_ context.CancelFunc, l *embedded.Ledger) { l.Close() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := open(t)
			const n = 100 // more than a watcher's channel holds
			for i := range n {
				mustPutHost(t, l, as(alice), host(fmt.Sprintf("cmp-%d", i), "JP", "CompanyA"))
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			idle, err := l.Watch(ctx, n) // waiting for a commit
			if err != nil {
				t.Fatal(err)
			}
			stuck, err := l.Watch(ctx, 0) // never read: blocked on a send
			if err != nil {
				t.Fatal(err)
			}
			tt.end(cancel, l)
			waitClosed(t, idle)
			waitClosed(t, stuck)
		})
	}
}
