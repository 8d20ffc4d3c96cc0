package fabric

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/hyperledger/fabric-protos-go-apiv2/gateway"
	"github.com/hyperledger/fabric-protos-go-apiv2/peer"
	"google.golang.org/grpc/codes"

	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/fabric/wire"
)

func evaluating(t *testing.T, v any) func(context.Context) (*gateway.EvaluateResponse, error) {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return func(context.Context) (*gateway.EvaluateResponse, error) {
		return &gateway.EvaluateResponse{Result: &peer.Response{Status: 200, Payload: b}}, nil
	}
}

func TestGovernanceReads(t *testing.T) {
	c := context.Background()
	reg := ledger.RegistryRecord{Registry: ledger.Registry{Members: map[string]ledger.Member{"Org1MSP": {Organizations: []string{"*"}}}}, Version: 3, Proposal: "p"}
	got, err := newTestLedger(t, &fakeGateway{evaluate: evaluating(t, reg)}).Registry(c)
	if err != nil || got.Version != 3 || got.Members["Org1MSP"].Organizations[0] != "*" {
		t.Fatalf("registry %+v, %v", got, err)
	}
	props := []ledger.ProposalRecord{{ID: "a", State: ledger.ProposalOpen}}
	list, err := newTestLedger(t, &fakeGateway{evaluate: evaluating(t, props)}).ListProposals(c)
	if err != nil || len(list) != 1 || list[0].ID != "a" {
		t.Fatalf("proposals %+v, %v", list, err)
	}
	b := ledger.BindingRecord{Binding: ledger.Binding{Project: "p1", MSP: "Org1MSP"}, Version: 1}
	gb, err := newTestLedger(t, &fakeGateway{evaluate: evaluating(t, b)}).GetBinding(c, "p1")
	if err != nil || gb.MSP != "Org1MSP" {
		t.Fatalf("binding %+v, %v", gb, err)
	}
	notFound := func(context.Context) (*gateway.EvaluateResponse, error) {
		return nil, refused(codes.Unknown, "ledgerfence/not_found: no registry is in force")
	}
	_, err = newTestLedger(t, &fakeGateway{evaluate: notFound}).Registry(c)
	if !errors.Is(err, ledger.ErrNotFound) {
		t.Fatalf("want ErrNotFound, got %v", err)
	}
}

func TestGovernanceWrites(t *testing.T) {
	c := context.Background()
	valid := []peer.TxValidationCode{peer.TxValidationCode_VALID}
	prop := ledger.ProposalRecord{ID: "tx1", State: ledger.ProposalOpen, Needed: []string{"Org1MSP", "Org2MSP"}}
	fake := &fakeGateway{endorse: []func() (*gateway.EndorseResponse, error){endorsed(t, prop)}, commits: valid}
	p, err := newTestLedger(t, fake).Propose(c, ledger.Proposal{Kind: ledger.ProposeRegistry, Registry: &ledger.Registry{}})
	if err != nil || p.ID != "tx1" || fake.submitted != 1 {
		t.Fatalf("propose %+v, %v (submitted %d)", p, err, fake.submitted)
	}

	stale := func() (*gateway.EndorseResponse, error) {
		return nil, refused(codes.Aborted, "ledgerfence/invalid: proposal tx1 is stale")
	}
	fake = &fakeGateway{endorse: []func() (*gateway.EndorseResponse, error){stale}}
	_, err = newTestLedger(t, fake).Approve(c, "tx1")
	if !errors.Is(err, ledger.ErrInvalid) || fake.endorsed != refusalAttempts || fake.submitted != 0 {
		t.Fatalf("stale approval: %v (endorsed %d, submitted %d)", err, fake.endorsed, fake.submitted)
	}

	// an unchanged binding or attestation is not submitted
	br := wire.BindProjectResult{Record: ledger.BindingRecord{Binding: ledger.Binding{Project: "p1", MSP: "Org1MSP"}}, Changed: false}
	fake = &fakeGateway{endorse: []func() (*gateway.EndorseResponse, error){endorsed(t, br)}, commits: valid}
	rec, changed, err := newTestLedger(t, fake).BindProject(c, "p1")
	if err != nil || changed || rec.MSP != "Org1MSP" || fake.submitted != 0 {
		t.Fatalf("bind %+v %v %v (submitted %d)", rec, changed, err, fake.submitted)
	}
	host := ledger.HostRecord{Host: filter.Host{Name: "hm1", Country: "JP", Organizations: []string{"A"}},
		Attestation: &ledger.Attestation{Country: "JP", Organizations: []string{"A"}}}
	fake = &fakeGateway{endorse: []func() (*gateway.EndorseResponse, error){endorsed(t, wire.AttestHostResult{Record: host, Changed: true})}, commits: valid}
	hr, changed, err := newTestLedger(t, fake).AttestHost(c, "hm1", "JP", []string{"A"})
	if err != nil || !changed || !hr.Attested() || fake.submitted != 1 {
		t.Fatalf("attest %+v %v %v (submitted %d)", hr, changed, err, fake.submitted)
	}
}
