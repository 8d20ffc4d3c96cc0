package fabric_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/ledgerfence/ledgerfence/pkg/decide/decidetest"
	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/fabric"
)

// The chaincode's Check, on the real network, answers the one table of
// decisions as every other entry point does (tests/integration/decisions
// runs the same table through filterd and ledgerctl).
func TestChaincodeCheckDecidesAsEveryEntryPoint(t *testing.T) {
	admin := connect(t, "hadmin")
	vmm := connect(t, "vmm1")
	padmin := connect(t, "padmin")
	enroll(t, "org2", "attestor-org2", "attestor", "") // a network up.sh made before it had one
	attestor := connect(t, "attestor-org2")
	c := context.Background()
	for _, h := range decidetest.Hosts() {
		if _, _, err := admin.PutHost(c, h); err != nil {
			t.Fatalf("put %s: %v", h.Name, err)
		}
	}
	// Org2's attestor attests, through Org2's peer, once that peer holds
	// the hosts Org1 registered.
	g := &gov{n: net0, orgs: net0.Orgs(), ls: map[string]*fabric.Ledger{}}
	defer g.close()
	g.sync(t)
	for _, name := range decidetest.AttestedHosts() {
		h := hostOf(t, name)
		if _, _, err := attestor.AttestHost(c, h.Name, h.Country, h.Organizations); err != nil {
			t.Fatalf("attest %s: %v", name, err)
		}
	}
	for _, r := range decidetest.Regulations() {
		if r.Subject.Kind() == filter.KindProject {
			// a project's regulation is made by its organisation, once it is bound to it
			if _, _, err := padmin.BindProject(c, r.Subject.ID()); err != nil {
				t.Fatalf("bind %s: %v", r.Subject, err)
			}
		}
		b, _ := json.Marshal(filter.Terms{Allow: r.Allow, RequireAttested: r.RequireAttested})
		if _, _, err := vmm.PutRegulationJSON(c, r.Subject, b); err != nil {
			t.Fatalf("put %s: %v", r.Subject, err)
		}
	}
	reader := connect(t, "org1-user")
	for _, tc := range decidetest.Cases() {
		t.Run(tc.Name, func(t *testing.T) {
			rep, err := reader.Check(c, tc.VM, tc.Project, tc.Hosts, tc.Options)
			if err != nil {
				t.Fatal(err)
			}
			if err := tc.Check(rep); err != nil {
				t.Error(err)
			}
		})
	}
}

// hostOf is decidetest's host name.
func hostOf(tb testing.TB, name string) filter.Host {
	for _, h := range decidetest.Hosts() {
		if h.Name == name {
			return h
		}
	}
	tb.Fatalf("decidetest has no host %s", name)
	return filter.Host{}
}
