package embedded

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/access"
)

func identity(id, role, host string) context.Context {
	return access.WithIdentity(context.Background(), access.Identity{ID: id, Role: role, Host: host})
}

var (
	gAgent     = identity("agent-hm1", access.RoleHostAgent, "hm1")
	gHostAdmin = identity("hostadmin", access.RoleHostAdmin, "")
	gPolicy    = identity("policy", access.RolePolicyAdmin, "")
	gPolicy2   = identity("policy2", access.RolePolicyAdmin, "")
	gVMM       = identity("vmm", access.RoleVMManager, "")
	gAttestor  = identity("attestor", access.RoleAttestor, "")
	gOperator  = ledger.WithWriter(context.Background(), ledger.Writer{ID: "admin", Role: access.RoleOperator})
)

func registryOf(members map[string][]string, requireAttested bool) *ledger.Registry {
	r := &ledger.Registry{Members: map[string]ledger.Member{}, RequireAttested: requireAttested}
	for msp, orgs := range members {
		r.Members[msp] = ledger.Member{Organizations: orgs}
	}
	return r
}

func openTemp(t *testing.T) *Ledger {
	t.Helper()
	l, err := Open(filepath.Join(t.TempDir(), FileName))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// refusedUnchanged asserts that err is of kind want and says words, and
// that the ledger's height did not move.
func refusedUnchanged(t *testing.T, l *Ledger, before uint64, err, want error, words ...string) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("err = %v, want %v", err, want)
	}
	for _, w := range words {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("%q does not say %q", err, w)
		}
	}
	if h, _ := l.Height(context.Background()); h != before {
		t.Fatalf("a refused write moved the height from %d to %d", before, h)
	}
}

func mustHeight(t *testing.T, l *Ledger) uint64 {
	t.Helper()
	h, err := l.Height(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func verifyOK(t *testing.T, l *Ledger) VerifyReport {
	t.Helper()
	rep, err := l.Verify(context.Background())
	if err != nil || !rep.OK {
		t.Fatalf("Verify = %+v, %v", rep, err)
	}
	return rep
}

func TestRegistryRules(t *testing.T) {
	ctx := context.Background()
	l := openTemp(t)
	if _, err := l.Registry(ctx); !errors.Is(err, ledger.ErrNotFound) {
		t.Fatalf("Registry of a new ledger: %v, want ErrNotFound", err)
	}
	// With no registry, any organisation code may be claimed.
	if _, _, err := l.PutHost(gAgent, filter.Host{Name: "hm1", Country: "JP", Organizations: []string{"CompanyC"}}); err != nil {
		t.Fatal(err)
	}

	h := mustHeight(t, l)
	for _, ctx := range []context.Context{gVMM, gAgent, gAttestor, gHostAdmin} {
		_, err := l.Propose(ctx, ledger.Proposal{Kind: ledger.ProposeRegistry, Registry: registryOf(map[string][]string{"": {"*"}}, false)})
		refusedUnchanged(t, l, h, err, ledger.ErrForbidden, "proposing a change needs the role policyadmin")
	}
	_, err := l.Propose(gPolicy, ledger.Proposal{Kind: ledger.ProposeRegistry})
	refusedUnchanged(t, l, h, err, ledger.ErrInvalid, "a registry proposal carries a registry")
	_, err = l.Propose(gPolicy, ledger.Proposal{Kind: "coup"})
	refusedUnchanged(t, l, h, err, ledger.ErrInvalid, "proposal kind")

	// The ledger's one organisation proposes: applied at once.
	p, err := l.Propose(gPolicy, ledger.Proposal{Kind: ledger.ProposeRegistry, Registry: registryOf(map[string][]string{"": {"CompanyB", "CompanyA", "CompanyA"}}, false)})
	if err != nil {
		t.Fatal(err)
	}
	if p.State != ledger.ProposalApplied || len(p.ID) != 64 || !slices.Equal(p.Needed, []string{""}) || len(p.Approvals) != 1 || p.Approvals[0].Writer.ID != "policy" {
		t.Fatalf("proposal %+v", p)
	}
	reg, err := l.Registry(ctx)
	if err != nil || reg.Version != 1 || reg.Proposal != p.ID || !slices.Equal(reg.Members[""].Organizations, []string{"CompanyA", "CompanyB"}) || reg.RequireAttested {
		t.Fatalf("Registry = %+v, %v", reg, err)
	}
	if got, err := l.GetProposal(ctx, p.ID); err != nil || got.State != ledger.ProposalApplied {
		t.Fatalf("GetProposal = %+v, %v", got, err)
	}
	if open, err := l.ListProposals(ctx); err != nil || len(open) != 0 {
		t.Fatalf("ListProposals = %+v, %v", open, err)
	}

	// Host writes under the registry.
	h = mustHeight(t, l)
	_, _, err = l.PutHost(gAgent, filter.Host{Name: "hm1", Country: "JP", Organizations: []string{"CompanyA", "CompanyC"}})
	refusedUnchanged(t, l, h, err, ledger.ErrForbidden, "may not claim organisation CompanyC", "version 1")
	if _, _, err := l.PutHost(gAgent, filter.Host{Name: "hm1", Country: "JP", Organizations: []string{"CompanyA", "CompanyB"}}); err != nil {
		t.Fatal(err)
	}
	// The operator is checked by no rule.
	if _, _, err := l.PutHost(gOperator, filter.Host{Name: "hm9", Country: "JP", Organizations: []string{"CompanyZ"}}); err != nil {
		t.Fatal(err)
	}

	// Host patterns and the cloud-wide setting.
	p2, err := l.Propose(gPolicy2, ledger.Proposal{Kind: ledger.ProposeRegistry, Registry: &ledger.Registry{
		Members:         map[string]ledger.Member{"": {Organizations: []string{"*"}, HostPatterns: []string{"hm*"}}},
		RequireAttested: true,
	}})
	if err != nil || p2.State != ledger.ProposalApplied || p2.Base != 1 {
		t.Fatalf("second registry: %+v, %v", p2, err)
	}
	h = mustHeight(t, l)
	_, _, err = l.PutHost(gHostAdmin, filter.Host{Name: "db1", Country: "JP", Organizations: []string{"CompanyA"}})
	refusedUnchanged(t, l, h, err, ledger.ErrForbidden, "may not register host db1", "hm*")
	if _, _, err := l.PutHost(gHostAdmin, filter.Host{Name: "hm2", Country: "JP", Organizations: []string{"CompanyQ"}}); err != nil {
		t.Fatal(err)
	}
	lk, err := l.Lookup(ctx, nil, []string{"hm1"})
	if err != nil || !lk.RequireAttested {
		t.Fatalf("Lookup = %+v, %v; want RequireAttested", lk, err)
	}

	// A registry proposal naming an organisation the embedded ledger has
	// no writer of stays open; a later change makes it stale.
	open, err := l.Propose(gPolicy, ledger.Proposal{Kind: ledger.ProposeRegistry, Registry: registryOf(map[string][]string{"": {"*"}, "OtherMSP": {"*"}}, false)})
	if err != nil || open.State != ledger.ProposalOpen || !slices.Equal(open.Needed, []string{"", "OtherMSP"}) || open.Base != 2 {
		t.Fatalf("open proposal: %+v, %v", open, err)
	}
	if list, err := l.ListProposals(ctx); err != nil || len(list) != 1 || list[0].ID != open.ID {
		t.Fatalf("ListProposals = %+v, %v", list, err)
	}
	h = mustHeight(t, l)
	_, err = l.Approve(gPolicy2, open.ID)
	refusedUnchanged(t, l, h, err, ledger.ErrInvalid, "already approved by the ledger's organisation")
	_, err = l.Approve(gVMM, open.ID)
	refusedUnchanged(t, l, h, err, ledger.ErrForbidden, "approving a proposal needs the role policyadmin")
	_, err = l.Approve(gPolicy, strings.Repeat("0", 64))
	refusedUnchanged(t, l, h, err, ledger.ErrNotFound)
	_, err = l.Approve(gPolicy, "a/b")
	refusedUnchanged(t, l, h, err, ledger.ErrInvalid)

	if _, err := l.Propose(gOperator, ledger.Proposal{Kind: ledger.ProposeRegistry, Registry: registryOf(map[string][]string{"": {"*"}}, false)}); err != nil {
		t.Fatal(err)
	}
	if got, err := l.GetProposal(ctx, open.ID); err != nil || got.State != ledger.ProposalStale {
		t.Fatalf("GetProposal of a proposal overtaken: %+v, %v; want stale", got, err)
	}
	if list, err := l.ListProposals(ctx); err != nil || len(list) != 0 {
		t.Fatalf("ListProposals = %+v, %v; want none open", list, err)
	}
	h = mustHeight(t, l)
	_, err = l.Approve(gPolicy, open.ID)
	refusedUnchanged(t, l, h, err, ledger.ErrInvalid, "stale")

	// The operator's proposal took effect at once.
	reg, err = l.Registry(ctx)
	if err != nil || reg.Version != 3 || reg.RequireAttested {
		t.Fatalf("Registry = %+v, %v", reg, err)
	}
	hist, err := l.History(ctx, ledger.KindRegistry, ledger.RegistryKey)
	if err != nil || len(hist) != 3 || hist[2].Registry == nil || hist[2].Writer.Role != access.RoleOperator {
		t.Fatalf("registry history = %+v, %v", hist, err)
	}
	if hist, err := l.History(ctx, ledger.KindProposal, open.ID); err != nil || len(hist) != 1 || hist[0].Proposal.ID != open.ID {
		t.Fatalf("proposal history = %+v, %v", hist, err)
	}
	rep := verifyOK(t, l)
	if rep.Proposals != 4 || rep.RegistryVersion != 3 {
		t.Fatalf("Verify = %+v", rep)
	}
}

func TestOperatorProposalsNeedNoApproval(t *testing.T) {
	ctx := context.Background()
	l := openTemp(t)
	// A registry naming an organisation of which no writer exists here:
	// the operator's proposal applies at once, and a policyadmin's
	// proposals now need OtherMSP's approval.
	p, err := l.Propose(gOperator, ledger.Proposal{Kind: ledger.ProposeRegistry, Registry: registryOf(map[string][]string{"": {"*"}, "OtherMSP": {"*"}}, false)})
	if err != nil || p.State != ledger.ProposalApplied {
		t.Fatalf("operator's proposal: %+v, %v", p, err)
	}
	q, err := l.Propose(gPolicy, ledger.Proposal{Kind: ledger.ProposeRegistry, Registry: registryOf(map[string][]string{"": {"*"}}, false)})
	if err != nil || q.State != ledger.ProposalOpen || !slices.Equal(q.Missing(), []string{"OtherMSP"}) {
		t.Fatalf("policyadmin's proposal: %+v, %v", q, err)
	}
	h := mustHeight(t, l)
	_, err = l.Approve(gOperator, q.ID)
	refusedUnchanged(t, l, h, err, ledger.ErrInvalid, "already approved")
	if _, err := l.Registry(ctx); err != nil {
		t.Fatal(err)
	}
	verifyOK(t, l)
}

func TestRegistryMembership(t *testing.T) {
	l := openTemp(t)
	// The operator's registry without the ledger's own organisation: its
	// writers may register no host.
	if _, err := l.Propose(gOperator, ledger.Proposal{Kind: ledger.ProposeRegistry, Registry: registryOf(map[string][]string{"OtherMSP": {"*"}}, false)}); err != nil {
		t.Fatal(err)
	}
	h := mustHeight(t, l)
	_, _, err := l.PutHost(gHostAdmin, filter.Host{Name: "hm1", Country: "JP", Organizations: []string{"A"}})
	refusedUnchanged(t, l, h, err, ledger.ErrForbidden, "the ledger's organisation is not a member of the registry")

	// Identities of an organisation with an MSP: a first registry names
	// two organisations at least, each by its MSP id.
	m := openTemp(t)
	org1 := access.WithIdentity(context.Background(), access.Identity{MSP: "Org1MSP", ID: "policy", Role: access.RolePolicyAdmin})
	_, err = m.Propose(org1, ledger.Proposal{Kind: ledger.ProposeRegistry, Registry: registryOf(map[string][]string{"Org1MSP": {"*"}}, false)})
	refusedUnchanged(t, m, 0, err, ledger.ErrForbidden, "a first registry must name at least 2 organisations")
	_, err = m.Propose(org1, ledger.Proposal{Kind: ledger.ProposeRegistry, Registry: registryOf(map[string][]string{"Org1MSP": {"*"}, "": {"*"}}, false)})
	refusedUnchanged(t, m, 0, err, ledger.ErrInvalid, "an MSP id is needed for every member")
	p, err := m.Propose(org1, ledger.Proposal{Kind: ledger.ProposeRegistry, Registry: registryOf(map[string][]string{"Org1MSP": {"*"}, "Org2MSP": {"*"}}, false)})
	if err != nil || p.State != ledger.ProposalOpen || !slices.Equal(p.Missing(), []string{"Org2MSP"}) {
		t.Fatalf("first registry of two organisations: %+v, %v", p, err)
	}
	org2 := access.WithIdentity(context.Background(), access.Identity{MSP: "Org2MSP", ID: "policy", Role: access.RolePolicyAdmin})
	a, err := m.Approve(org2, p.ID)
	if err != nil || a.State != ledger.ProposalApplied || len(a.Approvals) != 2 {
		t.Fatalf("Approve = %+v, %v", a, err)
	}
	if reg, err := m.Registry(context.Background()); err != nil || reg.Proposal != p.ID || reg.Version != 1 {
		t.Fatalf("Registry = %+v, %v", reg, err)
	}
	h = mustHeight(t, m)
	_, err = m.Approve(org2, p.ID)
	refusedUnchanged(t, m, h, err, ledger.ErrInvalid, "is applied and can no longer be approved")
	verifyOK(t, m)
}

func TestOpenProposalsBounded(t *testing.T) {
	defer func(n int) { maxOpenProposals = n }(maxOpenProposals)
	maxOpenProposals = 2
	l := openTemp(t)
	if _, err := l.Propose(gOperator, ledger.Proposal{Kind: ledger.ProposeRegistry, Registry: registryOf(map[string][]string{"": {"*"}, "OtherMSP": {"*"}}, false)}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if _, err := l.Propose(gPolicy, ledger.Proposal{Kind: ledger.ProposeRegistry, Registry: registryOf(map[string][]string{"": {"*"}}, i == 1)}); err != nil {
			t.Fatal(err)
		}
	}
	h := mustHeight(t, l)
	_, err := l.Propose(gPolicy, ledger.Proposal{Kind: ledger.ProposeRegistry, Registry: registryOf(map[string][]string{"": {"*"}}, false)})
	refusedUnchanged(t, l, h, err, ledger.ErrInvalid, "2 proposals are open")
	// Once they are stale, proposals may be made again.
	if _, err := l.Propose(gOperator, ledger.Proposal{Kind: ledger.ProposeRegistry, Registry: registryOf(map[string][]string{"": {"*"}, "OtherMSP": {"A"}}, false)}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Propose(gPolicy, ledger.Proposal{Kind: ledger.ProposeRegistry, Registry: registryOf(map[string][]string{"": {"*"}}, false)}); err != nil {
		t.Fatal(err)
	}
	verifyOK(t, l)
}

func TestBindingRules(t *testing.T) {
	ctx := context.Background()
	l := openTemp(t)
	h := mustHeight(t, l)
	for _, c := range []context.Context{gVMM, gAgent, gAttestor, gHostAdmin} {
		_, _, err := l.BindProject(c, "p1")
		refusedUnchanged(t, l, h, err, ledger.ErrForbidden, "binding a project needs the role policyadmin")
	}
	_, _, err := l.BindProject(gPolicy, "bad project!")
	refusedUnchanged(t, l, h, err, ledger.ErrInvalid)
	if _, err := l.GetBinding(ctx, "p1"); !errors.Is(err, ledger.ErrNotFound) {
		t.Fatalf("GetBinding of an unbound project: %v", err)
	}
	b, changed, err := l.BindProject(gPolicy, "P1")
	if err != nil || !changed || b.Project != "P1" || b.MSP != "" || b.Version != 1 || b.Writer.ID != "policy" {
		t.Fatalf("BindProject = %+v, %v, %v", b, changed, err)
	}
	h = mustHeight(t, l)
	if b2, changed, err := l.BindProject(gPolicy2, "P1"); err != nil || changed || b2.TxID != b.TxID {
		t.Fatalf("binding again: %+v, %v, %v", b2, changed, err)
	}
	if mustHeight(t, l) != h {
		t.Fatal("binding again wrote")
	}
	// Keystone's hex ids are matched in any case.
	uuid := "3F0C9A52-6B1E-4D8A-9C1E-2A7B5D4E6F10"
	if _, _, err := l.BindProject(gPolicy, uuid); err != nil {
		t.Fatal(err)
	}
	if got, err := l.GetBinding(ctx, "3f0c9a526b1e4d8a9c1e2a7b5d4e6f10"); err != nil || got.Version != 1 {
		t.Fatalf("GetBinding = %+v, %v", got, err)
	}

	// A move is a proposal: bound to the ledger's organisation, to itself
	// is no move; to another it needs that organisation's approval.
	_, err = l.Propose(gPolicy, ledger.Proposal{Kind: ledger.ProposeBinding, Binding: &ledger.Binding{Project: "P1", MSP: ""}})
	refusedUnchanged(t, l, h+1, err, ledger.ErrInvalid, "already bound")
	_, err = l.Propose(gPolicy, ledger.Proposal{Kind: ledger.ProposeBinding, Binding: &ledger.Binding{Project: "p-unbound", MSP: "OtherMSP"}})
	refusedUnchanged(t, l, h+1, err, ledger.ErrInvalid, "bound to no organisation")
	mv, err := l.Propose(gPolicy, ledger.Proposal{Kind: ledger.ProposeBinding, Binding: &ledger.Binding{Project: "P1", MSP: "OtherMSP"}})
	if err != nil || mv.State != ledger.ProposalOpen || !slices.Equal(mv.Needed, []string{"", "OtherMSP"}) || mv.Base != 1 {
		t.Fatalf("move proposal: %+v, %v", mv, err)
	}

	// Regulations of a project of the ledger's organisation, and of an
	// unbound one, are created by its vmmanagers.
	if _, _, err := l.PutRegulation(gVMM, filter.ProjectSubject("P1"), filter.Terms{Allow: []filter.Rule{{Country: "JP", Organization: "*"}}}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := l.PutRegulation(gVMM, filter.ProjectSubject("p2"), filter.Terms{Allow: []filter.Rule{{Country: "JP", Organization: "*"}}}); err != nil {
		t.Fatal(err)
	}

	// The operator moves p3 to OtherMSP (its proposal needs no approval):
	// the ledger's organisation may no longer regulate it.
	if _, _, err := l.BindProject(gPolicy, "p3"); err != nil {
		t.Fatal(err)
	}
	moved, err := l.Propose(gOperator, ledger.Proposal{Kind: ledger.ProposeBinding, Binding: &ledger.Binding{Project: "p3", MSP: "OtherMSP"}})
	if err != nil || moved.State != ledger.ProposalApplied {
		t.Fatalf("operator's move: %+v, %v", moved, err)
	}
	got, err := l.GetBinding(ctx, "p3")
	if err != nil || got.MSP != "OtherMSP" || got.Version != 2 || got.Proposal != moved.ID {
		t.Fatalf("GetBinding after the move = %+v, %v", got, err)
	}
	h = mustHeight(t, l)
	_, _, err = l.PutRegulation(gVMM, filter.ProjectSubject("p3"), filter.Terms{Allow: []filter.Rule{{Country: "JP", Organization: "*"}}})
	refusedUnchanged(t, l, h, err, ledger.ErrForbidden, "project p3 is bound to OtherMSP", "may not regulate it")
	vm := filter.VMSubject("3f0c9a52-6b1e-4d8a-9c1e-2a7b5d4e6f10")
	_, _, err = l.PutRegulation(gVMM, vm, filter.Terms{Allow: []filter.Rule{{Country: "JP", Organization: "*"}}, Project: "p3"})
	refusedUnchanged(t, l, h, err, ledger.ErrForbidden, "project p3 is bound to OtherMSP")
	_, _, err = l.BindProject(gPolicy, "p3")
	refusedUnchanged(t, l, h, err, ledger.ErrForbidden, "moving it needs a proposal")
	rec, _, err := l.PutRegulation(gVMM, vm, filter.Terms{Allow: []filter.Rule{{Country: "JP", Organization: "*"}}, Project: "P1", RequireAttested: true})
	if err != nil || rec.Project != "P1" || !rec.RequireAttested {
		t.Fatalf("VM regulation naming a project: %+v, %v", rec, err)
	}
	// Changing the VM's project to one of another organisation is refused.
	_, _, err = l.PutRegulation(gVMM, vm, filter.Terms{Allow: []filter.Rule{{Country: "JP", Organization: "*"}}, Project: "p3", RequireAttested: true})
	refusedUnchanged(t, l, h+1, err, ledger.ErrForbidden, "project p3 is bound to OtherMSP")
	// The open move of P1 was not overtaken: still open.
	if got, err := l.GetProposal(ctx, mv.ID); err != nil || got.State != ledger.ProposalOpen {
		t.Fatalf("GetProposal = %+v, %v", got, err)
	}
	if hist, err := l.History(ctx, ledger.KindBinding, "p3"); err != nil || len(hist) != 2 || hist[1].Binding.MSP != "OtherMSP" {
		t.Fatalf("binding history = %+v, %v", hist, err)
	}
	rep := verifyOK(t, l)
	if rep.Bindings != 3 || rep.Regulations != 3 {
		t.Fatalf("Verify = %+v", rep)
	}
}

func TestAttestationRules(t *testing.T) {
	ctx := context.Background()
	l := openTemp(t)
	hm1, _, err := l.PutHost(gAgent, filter.Host{Name: "hm1", Country: "JP", Organizations: []string{"CompanyA", "CompanyB"}})
	if err != nil {
		t.Fatal(err)
	}
	if hm1.Attested() {
		t.Fatal("a claimed record is attested")
	}
	h := mustHeight(t, l)
	for _, c := range []context.Context{gVMM, gAgent, gPolicy, gHostAdmin} {
		_, _, err := l.AttestHost(c, "hm1", "JP", []string{"CompanyA", "CompanyB"})
		refusedUnchanged(t, l, h, err, ledger.ErrForbidden, "attesting a host needs the role attestor")
	}
	// The writer of the facts may not attest them, even holding the role.
	_, _, err = l.AttestHost(identity("agent-hm1", access.RoleAttestor, ""), "hm1", "JP", []string{"CompanyA", "CompanyB"})
	refusedUnchanged(t, l, h, err, ledger.ErrForbidden, "may not attest its own claim")
	_, _, err = l.AttestHost(gAttestor, "hm1", "GB", []string{"CompanyA", "CompanyB"})
	refusedUnchanged(t, l, h, err, ledger.ErrInvalid, "attest the facts as they are now")
	_, _, err = l.AttestHost(gAttestor, "hm1", "JP", []string{"CompanyA"})
	refusedUnchanged(t, l, h, err, ledger.ErrInvalid, "attest the facts as they are now")
	_, _, err = l.AttestHost(gAttestor, "nohost", "JP", []string{"CompanyA"})
	refusedUnchanged(t, l, h, err, ledger.ErrNotFound)
	_, _, err = l.AttestHost(gAttestor, "hm1", "Japan", []string{"CompanyA"})
	refusedUnchanged(t, l, h, err, ledger.ErrInvalid)

	events, err := l.Watch(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	// Facts are attested in any spelling the host record accepts.
	rec, changed, err := l.AttestHost(gAttestor, "hm1", "jp", []string{"CompanyB", "CompanyA"})
	if err != nil || !changed || !rec.Attested() || rec.Attestation.Writer.ID != "attestor" || rec.Writer.ID != "agent-hm1" || rec.TxID == hm1.TxID || rec.TxID != rec.Attestation.TxID {
		t.Fatalf("AttestHost = %+v, %v, %v", rec, changed, err)
	}
	select {
	case ev := <-events:
		if ev.Kind != ledger.KindHost || ev.Op != ledger.OpAttest || ev.Host == nil || !ev.Host.Attested() || ev.Key != "hm1" {
			t.Fatalf("event %+v", ev)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no event for the attestation")
	}
	if again, changed, err := l.AttestHost(identity("attestor2", access.RoleAttestor, ""), "hm1", "JP", []string{"CompanyA", "CompanyB"}); err != nil || changed || again.Attestation.Writer.ID != "attestor" {
		t.Fatalf("attesting again: %+v, %v, %v", again, changed, err)
	}
	lk, err := l.Lookup(ctx, nil, []string{"hm1"})
	if got := lk.Hosts["hm1"]; err != nil || !got.Attested() {
		t.Fatalf("Lookup = %+v, %v", lk, err)
	}
	// A change of region keeps the attestation; of organisations, drops it.
	if rec, _, err := l.PutHost(gAgent, filter.Host{Name: "hm1", Country: "JP", Organizations: []string{"CompanyA", "CompanyB"}, Region: "r2"}); err != nil || !rec.Attested() {
		t.Fatalf("region changed: %+v, %v", rec, err)
	}
	if got, err := l.GetHost(ctx, "hm1"); err != nil || !got.Attested() {
		t.Fatalf("GetHost = %+v, %v", got, err)
	}
	if rec, _, err := l.PutHost(gAgent, filter.Host{Name: "hm1", Country: "JP", Organizations: []string{"CompanyA"}, Region: "r2"}); err != nil || rec.Attested() || rec.Attestation != nil {
		t.Fatalf("organisations changed: %+v, %v", rec, err)
	}
	// The operator attests as an attestor of the ledger's organisation.
	if rec, changed, err := l.AttestHost(gOperator, "hm1", "JP", []string{"CompanyA"}); err != nil || !changed || rec.Attestation.Writer.Role != access.RoleOperator {
		t.Fatalf("operator's attestation: %+v, %v, %v", rec, changed, err)
	}
	hist, err := l.History(ctx, ledger.KindHost, "hm1")
	if err != nil {
		t.Fatal(err)
	}
	var ops []ledger.Op
	for _, c := range hist {
		ops = append(ops, c.Op)
	}
	if want := []ledger.Op{"put", "attest", "put", "put", "attest"}; !slices.Equal(ops, want) {
		t.Fatalf("history ops %v, want %v", ops, want)
	}
	if !hist[2].Host.Attested() || hist[3].Host.Attestation != nil {
		t.Fatalf("history records: %+v", hist)
	}
	verifyOK(t, l)
}

func TestGovernanceEvents(t *testing.T) {
	ctx := context.Background()
	l := openTemp(t)
	events, err := l.Watch(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	p, err := l.Propose(gPolicy, ledger.Proposal{Kind: ledger.ProposeRegistry, Registry: registryOf(map[string][]string{"": {"*"}}, true)})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := l.BindProject(gPolicy, "p1"); err != nil {
		t.Fatal(err)
	}
	want := []struct {
		kind ledger.Kind
		key  string
		ok   func(ev ledger.Event) bool
	}{
		{ledger.KindProposal, p.ID, func(ev ledger.Event) bool { return ev.Proposal != nil && ev.Proposal.State == ledger.ProposalApplied }},
		{ledger.KindRegistry, ledger.RegistryKey, func(ev ledger.Event) bool {
			return ev.Registry != nil && ev.Registry.RequireAttested && ev.Registry.Version == 1
		}},
		{ledger.KindBinding, "p1", func(ev ledger.Event) bool { return ev.Binding != nil && ev.Binding.Project == "p1" }},
	}
	for i, w := range want {
		select {
		case ev := <-events:
			if ev.Kind != w.kind || ev.Key != w.key || ev.Block != uint64(i+1) || !w.ok(ev) {
				t.Fatalf("event %d: %+v", i+1, ev)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("event %d did not come", i+1)
		}
	}
	// The genesis of a ledger whose first write appended two entries.
	l.Close()
	l2, err := Open(l.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	verifyOK(t, l2)
}

// fillGovernance writes a ledger of governance's entries:
//
//	1 host hm1 (agent)          5 binding p1
//	2 proposal: registry        6 regulation project:p1 (require_attested)
//	3 registry (applied)        7 proposal: move p1 to OtherMSP (open)
//	4 attestation of hm1        8 proposal: registry with OtherMSP (open)
func fillGovernance(t *testing.T, path string) {
	t.Helper()
	l, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	steps := []func() error{
		func() error {
			_, _, err := l.PutHost(gAgent, filter.Host{Name: "hm1", Country: "JP", Organizations: []string{"A"}})
			return err
		},
		func() error {
			_, err := l.Propose(gPolicy, ledger.Proposal{Kind: ledger.ProposeRegistry, Registry: registryOf(map[string][]string{"": {"A", "B"}}, false)})
			return err
		},
		func() error { _, _, err := l.AttestHost(gAttestor, "hm1", "JP", []string{"A"}); return err },
		func() error { _, _, err := l.BindProject(gPolicy, "p1"); return err },
		func() error {
			_, _, err := l.PutRegulation(gVMM, filter.ProjectSubject("p1"), filter.Terms{Allow: []filter.Rule{{Country: "JP", Organization: "A"}}, RequireAttested: true})
			return err
		},
		func() error {
			_, err := l.Propose(gPolicy, ledger.Proposal{Kind: ledger.ProposeBinding, Binding: &ledger.Binding{Project: "p1", MSP: "OtherMSP"}})
			return err
		},
		func() error {
			_, err := l.Propose(gPolicy, ledger.Proposal{Kind: ledger.ProposeRegistry, Registry: registryOf(map[string][]string{"": {"A"}, "OtherMSP": {"A"}}, false)})
			return err
		},
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("step %d: %v", i+1, err)
		}
	}
}

func editState(bucket []byte, key func(tx *bolt.Tx) string, from, to string) func(tx *bolt.Tx) error {
	return func(tx *bolt.Tx) error {
		k := []byte(key(tx))
		v := tx.Bucket(bucket).Get(k)
		if !strings.Contains(string(v), from) {
			return errors.New("nothing to edit: " + string(v))
		}
		return tx.Bucket(bucket).Put(k, []byte(strings.Replace(string(v), from, to, 1)))
	}
}

func keyOf(s string) func(*bolt.Tx) string { return func(*bolt.Tx) string { return s } }

// txAt is the tx id of entry seq (a proposal's id).
func txAt(seq uint64) func(tx *bolt.Tx) string {
	return func(tx *bolt.Tx) string {
		e, err := readEntry(tx, seq)
		if err != nil {
			return ""
		}
		return e.TxID
	}
}

func TestVerifyGovernance(t *testing.T) {
	tests := []struct {
		name      string
		tamper    func(tx *bolt.Tx) error
		wantSeq   uint64
		wantWords string
	}{
		{"untouched", nil, 0, ""},
		{"attestation in the state forged", editState(bucketHosts, keyOf("hm1"), `"id":"attestor"`, `"id":"mallory"`), 4, `host record "hm1" differs`},
		{"attestation removed from the state", func(tx *bolt.Tx) error {
			v := tx.Bucket(bucketHosts).Get([]byte("hm1"))
			i, j := strings.Index(string(v), `,"attestation":`), strings.Index(string(v), `,"tx_id"`)
			return tx.Bucket(bucketHosts).Put([]byte("hm1"), []byte(string(v[:i])+string(v[j:])))
		}, 4, `host record "hm1" differs`},
		{"registry in the state edited", editState(bucketRegistry, keyOf(ledger.RegistryKey), `"members":{`, `"require_attested":true,"members":{`), 3, `registry record "registry" differs`},
		{"registry member added in the state", editState(bucketRegistry, keyOf(ledger.RegistryKey), `"B"]`, `"B","C"]`), 3, "differs"},
		{"open proposal marked applied", editState(bucketProposals, txAt(7), `"state":"open"`, `"state":"applied"`), 7, "differs"},
		{"binding removed", del(bucketBindings, []byte("p1")), 5, `binding record "p1" is missing`},
		{"regulation's require_attested dropped", editState(bucketRegulations, keyOf("project:p1"), `"require_attested":true,`, ``), 6, "differs"},
		{"attestation entry edited", editEntry(4, false, func(e *entry) { e.Writer.ID = "mallory" }), 4, "does not match its hash"},
		{"attestation by its claimer, chain rewritten", forge(4, func(e *entry) { e.Writer = ledger.Writer{ID: "agent-hm1", Role: access.RoleHostAgent} }), 4, "by the writer of the facts"},
		{"attestation of other facts, chain rewritten", forge(4, func(e *entry) {
			e.Value = []byte(strings.Replace(string(e.Value), `"JP"`, `"GB"`, 1))
		}), 4, "not of host \"hm1\"'s record as it was"},
		{"registry entry forged, chain rewritten", forge(3, func(e *entry) {
			e.Value = []byte(strings.Replace(string(e.Value), `"B"]`, `"B","C"]`, 1))
		}), 3, "not the change of the proposal"},
		{"open proposal forged applied, chain rewritten", forge(7, func(e *entry) {
			e.Value = []byte(strings.Replace(string(e.Value), `"state":"open"`, `"state":"applied"`, 1))
		}), 7, `proposal state "applied", want "open"`},
		{"project regulation naming a project, chain rewritten", forge(6, func(e *entry) {
			e.Value = []byte(strings.Replace(string(e.Value), `"require_attested":true`, `"require_attested":true,"project":"p2"`, 1))
		}), 6, "terms (require_attested, project) are not normalised"},
		{"applied registry's entry removed", func(tx *bolt.Tx) error {
			// Entry 3 replaced by a copy of entry 1's kind: a host write.
			return forge(3, func(e *entry) {
				e.Kind, e.Key, e.Op = ledger.KindHost, "hm2", ledger.OpPut
				e.Value = []byte(`{"host":"hm2","country":"JP","organizations":["A"]}`)
			})(tx)
		}, 3, "is not its change"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), FileName)
			fillGovernance(t, path)
			if tt.tamper != nil {
				db, err := bolt.Open(path, 0o600, nil)
				if err != nil {
					t.Fatal(err)
				}
				if err := db.Update(tt.tamper); err != nil {
					t.Fatalf("tamper: %v", err)
				}
				if err := db.Close(); err != nil {
					t.Fatal(err)
				}
				if l, err := Open(path); !errors.Is(err, ErrTampered) {
					if l != nil {
						l.Close()
					}
					t.Fatalf("Open of a tampered file: %v, want ErrTampered", err)
				}
			}
			l, err := OpenReadOnly(path)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			rep, err := l.Verify(context.Background())
			if tt.wantWords == "" {
				if err != nil || !rep.OK || rep.Height != 8 || rep.Hosts != 1 || rep.Regulations != 1 || rep.Proposals != 3 || rep.Bindings != 1 || rep.RegistryVersion != 1 {
					t.Fatalf("Verify = %+v, %v", rep, err)
				}
				return
			}
			if !errors.Is(err, ErrTampered) {
				t.Fatalf("err = %v, want ErrTampered (report %+v)", err, rep)
			}
			if rep.OK || rep.BrokenSeq != tt.wantSeq || !strings.Contains(rep.Problem, tt.wantWords) {
				t.Errorf("report %+v, want broken entry %d and a problem saying %q", rep, tt.wantSeq, tt.wantWords)
			}
		})
	}
}

// TestOldFileOpens: a ledger written before governance existed (its
// buckets, host values without attestations, regulations without
// require_attested or project) opens, verifies, is read and written as
// before, and takes governance's entries.
func TestOldFileOpens(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	for _, name := range []string{FileName, "ledger.head"} {
		copyFile(t, filepath.Join("testdata", "before-governance", name), filepath.Join(dir, name))
	}
	path := filepath.Join(dir, FileName)
	l, err := Open(path)
	if err != nil {
		t.Fatalf("Open of a file written before governance: %v", err)
	}
	rep := verifyOK(t, l)
	if rep.Height != 7 || rep.Hosts != 3 || rep.Regulations != 2 {
		t.Fatalf("Verify = %+v", rep)
	}
	if _, err := l.Registry(ctx); !errors.Is(err, ledger.ErrNotFound) {
		t.Fatalf("Registry = %v", err)
	}
	if list, err := l.ListProposals(ctx); err != nil || len(list) != 0 {
		t.Fatalf("ListProposals = %v, %v", list, err)
	}
	if hist, err := l.History(ctx, ledger.KindRegulation, "project:p1"); err != nil || len(hist) != 3 {
		t.Fatalf("History = %+v, %v", hist, err)
	}
	lk, err := l.Lookup(ctx, []filter.Subject{"vm:3f0c9a52-6b1e-4d8a-9c1e-2a7b5d4e6f10"}, []string{"hm1", "hm3"})
	if got := lk.Hosts["hm1"]; err != nil || lk.RequireAttested || len(lk.Hosts) != 2 || len(lk.Regulations) != 1 || got.Attested() {
		t.Fatalf("Lookup = %+v, %v", lk, err)
	}
	if _, _, err := l.AttestHost(gAttestor, "hm1", "JP", []string{"CompanyA", "CompanyB"}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Propose(gPolicy, ledger.Proposal{Kind: ledger.ProposeRegistry, Registry: registryOf(map[string][]string{"": {"*"}}, true)}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := l.BindProject(gPolicy, "p1"); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	rep = verifyOK(t, l)
	if rep.Height != 11 || rep.RegistryVersion != 1 || rep.Bindings != 1 {
		t.Fatalf("Verify = %+v", rep)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
