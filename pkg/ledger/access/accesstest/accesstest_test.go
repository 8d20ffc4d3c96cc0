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

type inProcess struct{ l *embedded.Ledger }

func (b inProcess) As(_ testing.TB, id accesstest.Identity) ledger.Ledger {
	return as{Ledger: b.l, who: access.Identity{ID: id.Name, Role: id.Role, Host: id.Host}}
}

func (inProcess) IsWriter(id accesstest.Identity, w ledger.Writer) bool {
	return w.MSP == "" && w.ID == id.Name
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
	accesstest.Run(t, context.Background(), inProcess{l})
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
		for _, a := range []accesstest.Action{accesstest.PutHost, accesstest.CreateRegulation, accesstest.ChangeRegulation, accesstest.DeleteRegulation} {
			if !seen[r+"/"+string(a)] {
				t.Errorf("no case of %s %s", r, a)
			}
		}
	}
}
