package fabric_test

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/fabric"
)

// putHosts registers hosts prefix-0..n-1 (new facts each call) and returns
// their transaction ids in commit order.
func putHosts(t *testing.T, l *fabric.Ledger, prefix string, from, n int) []string {
	t.Helper()
	var txs []string
	for i := from; i < from+n; i++ {
		rec, changed, err := l.PutHost(ctx(t), filter.Host{Name: fmt.Sprintf("%s-%02d", prefix, i), Country: "JP", Organizations: []string{"CompanyA"}})
		if err != nil || !changed {
			t.Fatalf("put %s-%02d: changed %v, %v", prefix, i, changed, err)
		}
		txs = append(txs, rec.TxID)
	}
	return txs
}

// collect reads events of hosts named prefix-* until it has n of them or
// the stream ends or a minute passes; other events are ignored.
func collect(t *testing.T, events <-chan ledger.Event, prefix string, n int) []ledger.Event {
	t.Helper()
	var got []ledger.Event
	deadline := time.After(time.Minute)
	for len(got) < n {
		select {
		case ev, ok := <-events:
			if !ok {
				return got
			}
			if ev.Kind == ledger.KindHost && strings.HasPrefix(ev.Key, prefix+"-") {
				got = append(got, ev)
			}
		case <-deadline:
			t.Errorf("%d of %d events after a minute", len(got), n)
			return got
		}
	}
	return got
}

func txIDs(evs []ledger.Event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.TxID
	}
	return out
}

func TestEventsResumeFromCheckpoint(t *testing.T) {
	admin := connect(t, "hadmin")
	prefix := uniq("ev")
	start, err := admin.Height(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	cpFile := filepath.Join(t.TempDir(), "checkpoint.json")

	// first consumer: sees the first ten writes, then stops
	c1, cancel1 := context.WithCancel(ctx(t))
	w1 := connect(t, "org1-user", fabric.WithCheckpointFile(cpFile))
	events1, err := w1.Watch(c1, start+1)
	if err != nil {
		t.Fatal(err)
	}
	first := putHosts(t, admin, prefix, 0, 10)
	got1 := collect(t, events1, prefix, 10)
	cancel1()
	for range events1 {
	}
	w1.Close()
	if fmt.Sprint(txIDs(got1)) != fmt.Sprint(first) {
		t.Fatalf("first consumer got %v, want %v", txIDs(got1), first)
	}
	ev := got1[0]
	if ev.Op != ledger.OpPut || ev.Block <= start || ev.Host == nil || ev.Host.TxID != ev.TxID || ev.Host.Name != prefix+"-00" || ev.Writer.MSP != "Org1MSP" || ev.Time.IsZero() {
		t.Errorf("event %+v", ev)
	}

	// ten more while nobody listens
	second := putHosts(t, admin, prefix, 10, 10)

	// a new consumer with the same checkpoint file gets exactly those, in order
	w2 := connect(t, "org1-user", fabric.WithCheckpointFile(cpFile))
	c2, cancel2 := context.WithCancel(ctx(t))
	defer cancel2()
	events2, err := w2.Watch(c2, start+1)
	if err != nil {
		t.Fatal(err)
	}
	third := putHosts(t, admin, prefix, 20, 1)
	got2 := collect(t, events2, prefix, 11)
	if want := append(second, third...); fmt.Sprint(txIDs(got2)) != fmt.Sprint(want) {
		t.Fatalf("resumed consumer got %v, want %v (none lost, none twice)", txIDs(got2), want)
	}
}

func TestEventsOfRegulations(t *testing.T) {
	vmm := connect(t, "vmm1")
	start, err := vmm.Height(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	c, cancel := context.WithCancel(ctx(t))
	defer cancel()
	events, err := connect(t, "org2-user").Watch(c, start+1)
	if err != nil {
		t.Fatal(err)
	}
	vm := vmSubject(3)
	put, _, err := vmm.PutRegulation(c, vm, filter.Terms{Allow: []filter.Rule{{Country: "JP", Organization: "CompanyA"}}})
	if err != nil {
		t.Fatal(err)
	}
	// The delete is endorsed by both organisations' peers; the other
	// organisation's may not hold the put's block yet, and answers that
	// there is no regulation: try again while it catches up.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		err := vmm.DeleteRegulation(c, vm)
		if err == nil {
			break
		}
		if !errors.Is(err, ledger.ErrNotFound) || time.Now().After(deadline) {
			t.Fatal(err)
		}
	}
	var got []ledger.Event
	for len(got) < 2 {
		select {
		case ev := <-events:
			if ev.Key == string(vm) {
				got = append(got, ev)
			}
		case <-time.After(time.Minute):
			t.Fatalf("events after a minute: %+v", got)
		}
	}
	if got[0].Op != ledger.OpPut || got[0].Regulation == nil || got[0].Regulation.Version != 1 || got[0].TxID != put.TxID {
		t.Errorf("put event %+v", got[0])
	}
	if got[1].Op != ledger.OpDelete || got[1].Regulation != nil || got[1].Block <= got[0].Block {
		t.Errorf("delete event %+v", got[1])
	}
}

// TestEventsSurvivePeerRestart stops the watched peer and starts it again; a
// Watch with WithReconnect carries on with no event lost.
func TestEventsSurvivePeerRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("restarts a peer")
	}
	admin := connect(t, "hadmin")
	prefix := uniq("rs")
	start, err := admin.Height(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	c, cancel := context.WithCancel(ctx(t))
	defer cancel()
	w := connect(t, "org1-user", fabric.WithReconnect(200*time.Millisecond))
	events, err := w.Watch(c, start+1)
	if err != nil {
		t.Fatal(err)
	}
	before := putHosts(t, admin, prefix, 0, 3)
	ctl(t, "restart", "peer1")
	var after []string
	for deadline := time.Now().Add(time.Minute); ; {
		// the peer takes a moment to rejoin the channel after it listens
		rec, _, err := admin.PutHost(ctx(t), filter.Host{Name: prefix + "-03", Country: "JP", Organizations: []string{"CompanyA"}})
		if err == nil {
			after = append(after, rec.TxID)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no write a minute after the peer restarted: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	after = append(after, putHosts(t, admin, prefix, 4, 2)...)
	got := collect(t, events, prefix, 6)
	if want := append(before, after...); fmt.Sprint(txIDs(got)) != fmt.Sprint(want) {
		t.Fatalf("got %v, want %v", txIDs(got), want)
	}
}

func ctl(t *testing.T, args ...string) {
	t.Helper()
	cmd := exec.Command(net0.Get("CTL"), args...)
	cmd.Env = append(cmd.Environ(), "LEDGERFENCE_FABRIC_DIR="+net0.Get("DIR"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ctl.sh %v: %v\n%s", args, err, out)
	}
}

// TestPeerDownIsUnavailable: with its peer stopped or hung, the backend says
// ErrUnavailable (so filterd fails closed), never not found or forbidden, and
// works again once the peer is back.
func TestPeerDownIsUnavailable(t *testing.T) {
	if testing.Short() {
		t.Skip("stops a peer")
	}
	l := connect(t, "hm2agent")
	h := filter.Host{Name: "hm2", Country: "JP", Organizations: []string{"CompanyA"}}
	if _, _, err := l.PutHost(ctx(t), h); err != nil {
		t.Fatal(err)
	}

	ctl(t, "pause", "peer1")
	c, cancel := context.WithTimeout(ctx(t), 300*time.Millisecond)
	_, err := l.GetHost(c, "hm2")
	cancel()
	ctl(t, "resume", "peer1")
	wantErr(t, err, ledger.ErrUnavailable)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a hung peer: %v does not match context.DeadlineExceeded", err)
	}

	ctl(t, "stop", "peer1")
	_, err = l.GetHost(ctx(t), "hm2")
	wantErr(t, err, ledger.ErrUnavailable)
	_, _, err = l.PutHost(ctx(t), filter.Host{Name: "hm2", Country: "GB", Organizations: []string{"CompanyA"}})
	wantErr(t, err, ledger.ErrUnavailable)
	_, err = l.Watch(ctx(t), 0)
	wantErr(t, err, ledger.ErrUnavailable)
	ctl(t, "start", "peer1")

	for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
		rec, err := l.GetHost(ctx(t), "hm2")
		if err == nil {
			if rec.Country != "JP" {
				t.Errorf("a write while the peer was down changed hm2: %+v", rec)
			}
			break
		}
		if !errors.Is(err, ledger.ErrUnavailable) || time.Now().After(deadline) {
			t.Fatalf("after the restart: %v", err)
		}
	}
}

// TestChaincodeDownIsUnavailable: with the chaincode server killed, reads and
// writes are ErrUnavailable; restarted, it serves again.
func TestChaincodeDownIsUnavailable(t *testing.T) {
	if testing.Short() {
		t.Skip("kills the chaincode server")
	}
	l := connect(t, "hm2agent")
	ctl(t, "kill", "cc")
	_, err := l.GetHost(ctx(t), "hm2")
	wantErr(t, err, ledger.ErrUnavailable)
	_, _, err = l.PutHost(ctx(t), filter.Host{Name: "hm2", Country: "JP", Organizations: []string{"CompanyB"}})
	wantErr(t, err, ledger.ErrUnavailable)
	ctl(t, "start", "cc")
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
		_, err := l.GetHost(ctx(t), "hm2")
		if err == nil || errors.Is(err, ledger.ErrNotFound) {
			break
		}
		if !errors.Is(err, ledger.ErrUnavailable) || time.Now().After(deadline) {
			t.Fatalf("after the restart: %v", err)
		}
	}
}
