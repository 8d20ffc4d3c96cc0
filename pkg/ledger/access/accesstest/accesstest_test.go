package accesstest_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/access"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/access/accesstest"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/embedded"
)

// as is the embedded ledger as one identity writes to it in-process.
type as struct {
	*embedded.Ledger
	who access.Identity
}

func (a as) ctx(ctx context.Context) context.Context { return access.WithIdentity(ctx, a.who) }

func (a as) PutHost(ctx context.Context, h filter.Host) (ledger.HostRecord, bool, error) {
	return a.Ledger.PutHost(a.ctx(ctx), h)
}

func (a as) PutRegulation(ctx context.Context, s filter.Subject, r filter.Terms) (ledger.RegulationRecord, bool, error) {
	return a.Ledger.PutRegulation(a.ctx(ctx), s, r)
}

func (a as) DeleteRegulation(ctx context.Context, s filter.Subject) error {
	return a.Ledger.DeleteRegulation(a.ctx(ctx), s)
}

func (a as) Propose(ctx context.Context, p ledger.Proposal) (ledger.ProposalRecord, error) {
	return a.Ledger.Propose(a.ctx(ctx), p)
}

func (a as) Approve(ctx context.Context, id string) (ledger.ProposalRecord, error) {
	return a.Ledger.Approve(a.ctx(ctx), id)
}

func (a as) BindProject(ctx context.Context, project string) (ledger.BindingRecord, bool, error) {
	return a.Ledger.BindProject(a.ctx(ctx), project)
}

func (a as) AttestHost(ctx context.Context, name, country string, orgs []string) (ledger.HostRecord, bool, error) {
	return a.Ledger.AttestHost(a.ctx(ctx), name, country, orgs)
}

func (a as) RecordPlacement(ctx context.Context, p ledger.Placement) (ledger.PlacementRecord, bool, error) {
	return a.Ledger.RecordPlacement(a.ctx(ctx), p)
}

// inProcess is the embedded ledger with an identity per case; with msp
// set, every identity is of that organisation, as the chaincode's are of
// one MSP (the rules that tell organisations apart then apply).
type inProcess struct {
	l   *embedded.Ledger
	msp string
}

func (b inProcess) As(_ testing.TB, id accesstest.Identity) ledger.Ledger {
	return as{Ledger: b.l, who: access.Identity{MSP: b.msp, ID: id.Name, Role: id.Role, Host: id.Host}}
}

func (b inProcess) IsWriter(id accesstest.Identity, w ledger.Writer) bool {
	return w.MSP == b.msp && w.ID == id.Name
}

// TestTableInProcess plays the table against the embedded ledger called
// directly, the check of the table and its runner; cmd/filterd's tests play it
// through filterd's REST API, the Fabric integration tests on the chaincode.
func TestTableInProcess(t *testing.T) {
	l, err := embedded.Open(filepath.Join(t.TempDir(), embedded.FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accesstest.Run(t, context.Background(), inProcess{l: l})
}

// TestTableInProcessWithMSP plays the table with identities of one MSP,
// as the chaincode sees them: the cases of rules between organisations
// (Case.WithMSP) are refused.
func TestTableInProcessWithMSP(t *testing.T) {
	l, err := embedded.Open(filepath.Join(t.TempDir(), embedded.FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accesstest.Run(t, context.Background(), inProcess{l: l, msp: "Org1MSP"})
}

// TestTableCoversEveryRoleAndAction: each role of access.Roles tries each
// action, on its own record and another's.
func TestTableCoversEveryRoleAndAction(t *testing.T) {
	seen := map[string]bool{}
	for _, c := range accesstest.Cases() {
		seen[c.As.Role+"/"+string(c.Action)] = true
		if !c.Allowed && len(c.Words) == 0 {
			t.Errorf("%s: a refusal without the words it must say", c.Name())
		}
	}
	for _, r := range access.Roles() {
		for _, a := range accesstest.Actions() {
			if !seen[r+"/"+string(a)] {
				t.Errorf("no case of %s %s", r, a)
			}
		}
	}
}
