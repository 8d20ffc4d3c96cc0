package fabric

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hyperledger/fabric-protos-go-apiv2/gateway"
	"github.com/hyperledger/fabric-protos-go-apiv2/peer"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
)

// eventLedger is the chaincode events of a few blocks, served the way a
// peer's gateway does: from the start block, skipping the start block's
// events up to and including the transaction a checkpoint names.
type eventLedger struct {
	fakeGateway
	blocks map[uint64][]string // block -> transaction ids, in order
	last   uint64

	// payloads, when set, are the events of some transactions (else a
	// host.put of host "h-<tx>")
	payloads map[string]ledger.Event

	mu        sync.Mutex
	starts    []string // "block/after-tx" of every stream opened
	breakEach int      // > 0: end every stream after this many events
}

func newEventLedger() *eventLedger {
	return &eventLedger{blocks: map[uint64][]string{
		2: {"tx2"},
		3: {"tx3a", "tx3b", "tx3c"},
		5: {"tx5"},
		6: {"tx6a", "tx6b"},
	}, last: 6}
}

func (e *eventLedger) ChaincodeEvents(req *gateway.SignedChaincodeEventsRequest, stream gateway.Gateway_ChaincodeEventsServer) error {
	var r gateway.ChaincodeEventsRequest
	if err := proto.Unmarshal(req.GetRequest(), &r); err != nil {
		return err
	}
	start := r.GetStartPosition().GetSpecified().GetNumber()
	skipTo := r.GetAfterTransactionId()
	e.mu.Lock()
	e.starts = append(e.starts, fmt.Sprintf("%d/%s", start, skipTo))
	breakEach := e.breakEach
	e.mu.Unlock()
	sent := 0
	for b := start; b <= e.last; b++ {
		var evs []*peer.ChaincodeEvent
		for _, tx := range e.blocks[b] {
			if b == start && skipTo != "" {
				if tx == skipTo {
					skipTo = ""
				}
				continue
			}
			if breakEach > 0 && sent == breakEach {
				break
			}
			ev, ok := e.payloads[tx]
			if !ok {
				ev = ledger.Event{Kind: ledger.KindHost, Key: "h-" + tx, Op: ledger.OpPut}
			}
			payload, _ := json.Marshal(ev)
			evs = append(evs, &peer.ChaincodeEvent{ChaincodeId: "ledgerfence", TxId: tx, EventName: string(ev.Kind) + "." + string(ev.Op), Payload: payload})
			sent++
		}
		if len(evs) > 0 {
			if err := stream.Send(&gateway.ChaincodeEventsResponse{BlockNumber: b, Events: evs}); err != nil {
				return err
			}
		}
		if breakEach > 0 && sent == breakEach {
			return status.Error(codes.Unavailable, "peer going away")
		}
	}
	<-stream.Context().Done() // a live stream waits for the next block
	return nil
}

func (e *eventLedger) opened() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.starts...)
}

// take reads n events, or fails the test after a while.
func take(t *testing.T, events <-chan ledger.Event, n int) []string {
	t.Helper()
	var got []string
	for len(got) < n {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatalf("stream closed after %v", got)
			}
			if ev.Key != "h-"+ev.TxID || ev.Block == 0 {
				t.Fatalf("event %+v", ev)
			}
			got = append(got, fmt.Sprintf("%d:%s", ev.Block, ev.TxID))
		case <-time.After(10 * time.Second):
			t.Fatalf("only %v", got)
		}
	}
	return got
}

func TestWatchStartsAtTheGivenBlock(t *testing.T) {
	fake := newEventLedger()
	l := newTestLedgerWith(t, fake)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events, err := l.Watch(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	got := take(t, events, 6)
	if want := "3:tx3a 3:tx3b 3:tx3c 5:tx5 6:tx6a 6:tx6b"; strings.Join(got, " ") != want {
		t.Errorf("got %v, want %s (block 3 itself included)", got, want)
	}
}

func TestWatchResumesFromCheckpointFile(t *testing.T) {
	fake := newEventLedger()
	cp := filepath.Join(t.TempDir(), "cp.json")

	l1 := newTestLedgerWith(t, fake, WithCheckpointFile(cp))
	ctx1, cancel1 := context.WithCancel(context.Background())
	events, err := l1.Watch(ctx1, 0)
	if err != nil {
		t.Fatal(err)
	}
	first := take(t, events, 3) // tx2, tx3a, tx3b: stops inside block 3
	cancel1()
	// Events received while the watch winds down are handed over (and
	// checkpointed) too: they count as handled.
	for ev := range events {
		first = append(first, fmt.Sprintf("%d:%s", ev.Block, ev.TxID))
	}
	l1.Close()
	const all = "2:tx2 3:tx3a 3:tx3b 3:tx3c 5:tx5 6:tx6a 6:tx6b"
	lastTx := first[len(first)-1]
	if strings.Count(all, " ") < len(first)-1 || !strings.HasPrefix(all, strings.Join(first, " ")) {
		t.Fatalf("first watch got %v", first)
	}

	l2 := newTestLedgerWith(t, fake, WithCheckpointFile(cp))
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	events, err = l2.Watch(ctx2, 0)
	if err != nil {
		t.Fatal(err)
	}
	second := take(t, events, strings.Count(all, " ")+1-len(first))
	if got := strings.Join(append(first, second...), " "); got != all {
		t.Errorf("got %s: lost or repeated events", got)
	}
	if opened, want := fake.opened(), strings.Replace(lastTx, ":", "/", 1); opened[len(opened)-1] != want {
		t.Errorf("resumed at %v, want %s", opened, want)
	}
	// while a Watch holds the checkpoint file, another one is refused
	if _, err := l2.Watch(ctx2, 0); err == nil {
		t.Error("a second Watch shares the checkpoint file")
	}
}

func TestWatchReconnects(t *testing.T) {
	fake := newEventLedger()
	fake.breakEach = 2
	l := newTestLedgerWith(t, fake, WithReconnect(time.Millisecond))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events, err := l.Watch(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	got := take(t, events, 7)
	if strings.Join(got, " ") != "2:tx2 3:tx3a 3:tx3b 3:tx3c 5:tx5 6:tx6a 6:tx6b" {
		t.Errorf("got %v", got)
	}
	if opened := fake.opened(); len(opened) < 4 || strings.Join(opened[:4], " ") != "1/ 3/tx3a 3/tx3c 6/tx6a" {
		t.Errorf("streams opened at %v", opened)
	}
}

func TestWatchWithoutReconnectEndsWithTheStream(t *testing.T) {
	fake := newEventLedger()
	fake.breakEach = 2
	l := newTestLedgerWith(t, fake)
	events, err := l.Watch(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	take(t, events, 2)
	select {
	case _, ok := <-events:
		if ok {
			t.Fatal("an event after the stream broke")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the channel stays open after the stream broke")
	}
}

func TestCloseEndsWatch(t *testing.T) {
	l := newTestLedgerWith(t, newEventLedger())
	events, err := l.Watch(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	take(t, events, 1)
	l.Close()
	for range events { // closed, after whatever was in flight
	}
}

// TestWatchDecodesGovernanceEvents: the registry's, a proposal's, a
// binding's and an attestation's events arrive with their records.
func TestWatchDecodesGovernanceEvents(t *testing.T) {
	fake := newEventLedger()
	prop := &ledger.ProposalRecord{ID: "tx3a", State: ledger.ProposalApplied, Needed: []string{"Org1MSP", "Org2MSP"}}
	reg := &ledger.RegistryRecord{Registry: ledger.Registry{Members: map[string]ledger.Member{"Org1MSP": {Organizations: []string{"CompanyA"}}}, RequireAttested: true}, Version: 1, Proposal: "tx3a"}
	att := &ledger.HostRecord{Host: filter.Host{Name: "hm1", Country: "JP", Organizations: []string{"CompanyA"}},
		Attestation: &ledger.Attestation{Country: "JP", Organizations: []string{"CompanyA"}, TxID: "tx3c"}}
	fake.payloads = map[string]ledger.Event{
		"tx2":  {Kind: ledger.KindProposal, Key: "tx2", Op: ledger.OpPut, Proposal: &ledger.ProposalRecord{ID: "tx2", State: ledger.ProposalOpen}},
		"tx3a": {Kind: ledger.KindRegistry, Key: ledger.RegistryKey, Op: ledger.OpPut, Registry: reg, Proposal: prop},
		"tx3b": {Kind: ledger.KindBinding, Key: "p1", Op: ledger.OpPut, Binding: &ledger.BindingRecord{Binding: ledger.Binding{Project: "p1", MSP: "Org2MSP"}, Version: 2}},
		"tx3c": {Kind: ledger.KindHost, Key: "hm1", Op: ledger.OpAttest, Host: att},
	}
	l := newTestLedgerWith(t, fake)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events, err := l.Watch(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	var got []ledger.Event
	for len(got) < 4 {
		select {
		case ev := <-events:
			got = append(got, ev)
		case <-time.After(10 * time.Second):
			t.Fatalf("only %d events", len(got))
		}
	}
	if p := got[0].Proposal; got[0].Kind != ledger.KindProposal || p == nil || p.State != ledger.ProposalOpen || got[0].Block != 2 {
		t.Errorf("proposal event %+v", got[0])
	}
	if r := got[1].Registry; got[1].Kind != ledger.KindRegistry || r == nil || !r.RequireAttested || r.Version != 1 || got[1].Proposal == nil || got[1].Proposal.State != ledger.ProposalApplied {
		t.Errorf("registry event %+v", got[1])
	}
	if b := got[2].Binding; got[2].Kind != ledger.KindBinding || b == nil || b.MSP != "Org2MSP" || b.Version != 2 {
		t.Errorf("binding event %+v", got[2])
	}
	if h := got[3].Host; got[3].Op != ledger.OpAttest || h == nil || !h.Attested() || got[3].TxID != "tx3c" {
		t.Errorf("attestation event %+v", got[3])
	}
}
