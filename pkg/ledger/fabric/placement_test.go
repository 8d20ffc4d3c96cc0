package fabric

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hyperledger/fabric-protos-go-apiv2/gateway"
	"github.com/hyperledger/fabric-protos-go-apiv2/peer"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/ledgerfence/ledgerfence/pkg/ledger"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/fabric/wire"
)

func TestRecordPlacement(t *testing.T) {
	c := context.Background()
	valid := []peer.TxValidationCode{peer.TxValidationCode_VALID}
	p := ledger.Placement{VM: "0b4e8a4c-6c1e-4a43-9d7e-0a1f2b3c4d5e", Host: "hm1", Op: ledger.OpBoot, At: time.Now(), Witness: ledger.WitnessNova, Ref: "m1"}
	rec := ledger.PlacementRecord{Placement: p, Verdict: &ledger.PlacementVerdict{Allowed: true, Regulations: []ledger.RegulationVersion{}}, TxID: "tx1"}

	fake := &fakeGateway{endorse: []func() (*gateway.EndorseResponse, error){endorsed(t, wire.RecordPlacementResult{Record: rec, Changed: true})}, commits: valid}
	got, changed, err := newTestLedger(t, fake).RecordPlacement(c, p)
	if err != nil || !changed || got.TxID != "tx1" || !got.Verdict.Allowed || fake.submitted != 1 {
		t.Fatalf("record %+v %v %v (submitted %d)", got, changed, err, fake.submitted)
	}

	// recorded before: the endorsement says so, nothing is submitted
	fake = &fakeGateway{endorse: []func() (*gateway.EndorseResponse, error){endorsed(t, wire.RecordPlacementResult{Record: rec, Changed: false})}, commits: valid}
	got, changed, err = newTestLedger(t, fake).RecordPlacement(c, p)
	if err != nil || changed || got.TxID != "tx1" || fake.submitted != 0 {
		t.Fatalf("again %+v %v %v (submitted %d)", got, changed, err, fake.submitted)
	}

	// a refusal keeps its kind
	forbidden := func() (*gateway.EndorseResponse, error) {
		return nil, refused(codes.Unknown, "ledgerfence/forbidden: recording a placement needs the role recorder or hostagent")
	}
	fake = &fakeGateway{endorse: []func() (*gateway.EndorseResponse, error){forbidden}}
	_, _, err = newTestLedger(t, fake).RecordPlacement(c, p)
	if !errors.Is(err, ledger.ErrForbidden) || fake.submitted != 0 {
		t.Fatalf("want ErrForbidden, got %v", err)
	}
}

// pagedPlacements serves Placements from n placements in pages, as the
// chaincode does, and keeps the queries it was asked.
type pagedPlacements struct {
	fakeGateway
	n int

	mu      sync.Mutex
	queries []wire.PlacementQuery
}

// evaluateArgs are the arguments of an evaluated transaction.
func evaluateArgs(req *gateway.EvaluateRequest) ([][]byte, error) {
	var prop peer.Proposal
	if err := proto.Unmarshal(req.GetProposedTransaction().GetProposalBytes(), &prop); err != nil {
		return nil, err
	}
	var payload peer.ChaincodeProposalPayload
	if err := proto.Unmarshal(prop.GetPayload(), &payload); err != nil {
		return nil, err
	}
	var spec peer.ChaincodeInvocationSpec
	if err := proto.Unmarshal(payload.GetInput(), &spec); err != nil {
		return nil, err
	}
	return spec.GetChaincodeSpec().GetInput().GetArgs(), nil
}

func (f *pagedPlacements) Evaluate(_ context.Context, req *gateway.EvaluateRequest) (*gateway.EvaluateResponse, error) {
	args, err := evaluateArgs(req)
	if err != nil || len(args) != 2 || string(args[0]) != wire.TxPlacements {
		return nil, fmt.Errorf("unexpected evaluate %q: %v", args, err)
	}
	var q wire.PlacementQuery
	if err := json.Unmarshal(args[1], &q); err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.queries = append(f.queries, q)
	f.mu.Unlock()
	start := 0
	if q.After != "" {
		start, _ = strconv.Atoi(q.After)
		start++
	}
	page := wire.PlacementPage{Placements: []ledger.PlacementRecord{}}
	for i := start; i < f.n; i++ {
		if len(page.Placements) == q.Limit {
			page.Next = strconv.Itoa(i - 1)
			break
		}
		page.Placements = append(page.Placements, ledger.PlacementRecord{Placement: ledger.Placement{VM: q.VM, Ref: strconv.Itoa(i)}})
	}
	b, _ := json.Marshal(page)
	return &gateway.EvaluateResponse{Result: &peer.Response{Status: 200, Payload: b}}, nil
}

func TestPlacementsReadsPages(t *testing.T) {
	c := context.Background()
	const vm = "0b4e8a4c-6c1e-4a43-9d7e-0a1f2b3c4d5e"
	from := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		n, limit int
		pages    []int // the page sizes asked
		err      error
	}{
		{n: 0, pages: []int{wire.MaxPlacementPage}},
		{n: 1000, pages: []int{wire.MaxPlacementPage}},
		{n: 4500, pages: []int{wire.MaxPlacementPage, wire.MaxPlacementPage, wire.MaxPlacementPage}},
		{n: 10, limit: 10, pages: []int{11}},
		{n: 11, limit: 10, pages: []int{11}, err: ledger.ErrInvalid},
		{n: 2500, limit: 2100, pages: []int{wire.MaxPlacementPage, 101}, err: ledger.ErrInvalid},
	} {
		fake := &pagedPlacements{n: tc.n}
		got, err := newTestLedgerWith(t, fake).Placements(c, ledger.PlacementQuery{VM: vm, From: from, Limit: tc.limit})
		if tc.err != nil {
			if !errors.Is(err, tc.err) {
				t.Fatalf("%d placements, limit %d: want %v, got %v", tc.n, tc.limit, tc.err, err)
			}
		} else if err != nil || len(got) != tc.n || got == nil {
			t.Fatalf("%d placements: got %d, %v", tc.n, len(got), err)
		}
		for i := range got {
			if got[i].Ref != strconv.Itoa(i) {
				t.Fatalf("placement %d is %s", i, got[i].Ref)
			}
		}
		if len(fake.queries) != len(tc.pages) {
			t.Fatalf("%d placements: %d pages read, want %d", tc.n, len(fake.queries), len(tc.pages))
		}
		for i, q := range fake.queries {
			if q.Limit != tc.pages[i] || q.VM != vm || !q.From.Equal(from) || !q.To.IsZero() || (i == 0) != (q.After == "") {
				t.Fatalf("%d placements: query %d %+v", tc.n, i, q)
			}
		}
	}
	for _, limit := range []int{-1, ledger.MaxPlacements + 1} {
		if _, err := newTestLedgerWith(t, &pagedPlacements{}).Placements(c, ledger.PlacementQuery{VM: vm, Limit: limit}); !errors.Is(err, ledger.ErrInvalid) {
			t.Errorf("limit %d: %v", limit, err)
		}
	}
}

func TestWatchDecodesPlacementEvents(t *testing.T) {
	fake := newEventLedger()
	rec := &ledger.PlacementRecord{
		Placement: ledger.Placement{VM: "0b4e8a4c-6c1e-4a43-9d7e-0a1f2b3c4d5e", Host: "hm3", Op: ledger.OpLiveMigration, At: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), Witness: ledger.WitnessNova, Ref: "m2"},
		Verdict:   &ledger.PlacementVerdict{Reason: "country_not_allowed", Regulation: "vm:0b4e8a4c-6c1e-4a43-9d7e-0a1f2b3c4d5e", Regulations: []ledger.RegulationVersion{{Subject: "vm:0b4e8a4c-6c1e-4a43-9d7e-0a1f2b3c4d5e", Version: 2}}},
		TxID:      "tx2",
	}
	fake.payloads = map[string]ledger.Event{"tx2": {Kind: ledger.KindPlacement, Key: rec.VM, Op: ledger.OpPut, Placement: rec}}
	l := newTestLedgerWith(t, fake)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events, err := l.Watch(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-events:
		p := ev.Placement
		if ev.Kind != ledger.KindPlacement || ev.Key != rec.VM || ev.Block != 2 || ev.TxID != "tx2" || p == nil || p.Host != "hm3" ||
			p.Verdict == nil || p.Verdict.Allowed || p.Verdict.Regulations[0].Version != 2 {
			t.Fatalf("placement event %+v", ev)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no event")
	}
}
