package access

import (
	"errors"
	"testing"

	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
)

var (
	attestor2 = Identity{MSP: "Org2MSP", ID: "x509::CN=att", Role: RoleAttestor}
	policy3   = Identity{MSP: "Org3MSP", ID: "x509::CN=policy", Role: RolePolicyAdmin}
	eAttestor = Identity{ID: "attestor-1", Role: RoleAttestor}
)

func registry(version uint64, members map[string][]string) *ledger.RegistryRecord {
	r := &ledger.RegistryRecord{Version: version, Registry: ledger.Registry{Members: map[string]ledger.Member{}}}
	for msp, orgs := range members {
		r.Members[msp] = ledger.Member{Organizations: orgs}
	}
	return r
}

func TestMayClaim(t *testing.T) {
	reg := registry(3, map[string][]string{"Org1MSP": {"CompanyA"}, "Org2MSP": {"CompanyB", "CompanyC"}})
	pat := registry(4, map[string][]string{"Org1MSP": {filter.Any}})
	pat.Members["Org1MSP"] = ledger.Member{Organizations: []string{filter.Any}, HostPatterns: []string{"tokyo-*"}}
	host := func(name string, orgs ...string) filter.Host {
		return filter.Host{Name: name, Country: "JP", Organizations: orgs}
	}
	tests := []struct {
		name    string
		who     Identity
		h       filter.Host
		reg     *ledger.RegistryRecord
		allowed bool
		words   []string
	}{
		{"no registry: anything", hostAdmin2, host("hm9", "CompanyA"), nil, true, nil},
		{"Org1 claims its code", hostAdmin1, host("hm9", "CompanyA"), reg, true, nil},
		{"Org2 claims Org1's code", hostAdmin2, host("hm9", "CompanyA"), reg, false, []string{"Org2MSP", "CompanyA", "version 3"}},
		{"Org2 claims one of its own and one not", hostAdmin2, host("hm9", "CompanyB", "CompanyA"), reg, false, []string{"CompanyA"}},
		{"Org2 claims its codes", org2HM1, host("hm1", "CompanyB", "CompanyC"), reg, true, nil},
		{"a non-member", Identity{MSP: "Org3MSP", ID: "x", Role: RoleHostAdmin}, host("hm9", "CompanyA"), reg, false, []string{"Org3MSP", "not a member"}},
		{"a pattern allows", hostAdmin1, host("tokyo-1", "Anything"), pat, true, nil},
		{"a pattern refuses", hostAdmin1, host("osaka-1", "Anything"), pat, false, []string{"osaka-1", "tokyo-*"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wantForbidden(t, MayWriteHost(tc.who, tc.h, ledger.HostRecord{}, false, tc.reg), tc.allowed, tc.words...)
		})
	}
}

func TestMayAttest(t *testing.T) {
	claimed := ledger.HostRecord{Host: filter.Host{Name: "hm1", Country: "JP", Organizations: []string{"CompanyA"}}, Writer: agentHM1.Writer()}
	eClaimed := ledger.HostRecord{Host: claimed.Host, Writer: eAgent.Writer()}
	facts := claimed.Host
	tests := []struct {
		name    string
		who     Identity
		rec     ledger.HostRecord
		facts   filter.Host
		allowed bool
		words   []string
	}{
		{"an attestor of another organisation", attestor2, claimed, facts, true, nil},
		{"an attestor of the same organisation", attestor, claimed, facts, false, []string{"same organisation", "Org1MSP"}},
		{"the host agent itself", agentHM1, claimed, facts, false, []string{RoleAttestor, RoleHostAgent}},
		{"a policy admin of another organisation", policy2, claimed, facts, false, []string{RoleAttestor}},
		{"embedded: another identity", eAttestor, eClaimed, facts, true, nil},
		{"embedded: the claimant", Identity{ID: eAgent.ID, Role: RoleAttestor}, eClaimed, facts, false, []string{"own claim"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wantForbidden(t, MayAttest(tc.who, tc.rec, tc.facts, nil), tc.allowed, tc.words...)
		})
	}
	// Under a registry: the attestor's organisation must be a member, and
	// the claim one its claimant may make now (a claim made before the
	// registry that breaks it is never attested).
	reg := registry(2, map[string][]string{"Org1MSP": {"CompanyB"}, "Org2MSP": {"CompanyA"}})
	wantForbidden(t, MayAttest(attestor2, claimed, facts, reg), false, "break the registry", "CompanyA")
	fits := registry(3, map[string][]string{"Org1MSP": {"CompanyA"}, "Org2MSP": {"CompanyB"}})
	wantForbidden(t, MayAttest(attestor2, claimed, facts, fits), true)
	wantForbidden(t, MayAttest(Identity{MSP: "Org3MSP", ID: "x", Role: RoleAttestor}, claimed, facts, fits), false, "Org3MSP", "not a member")
	// Facts other than the record's: stale, refused as invalid.
	other := filter.Host{Name: "hm1", Country: "GB", Organizations: []string{"CompanyA"}}
	if err := MayAttest(attestor2, claimed, other, nil); !errors.Is(err, ledger.ErrInvalid) {
		t.Errorf("attesting facts the record does not hold: %v, want ErrInvalid", err)
	}
}

func TestAttestationFollowsTheFacts(t *testing.T) {
	rec := ledger.HostRecord{Host: filter.Host{Name: "hm1", Country: "JP", Organizations: []string{"CompanyA"}}, Writer: agentHM1.Writer()}
	if rec.Attested() {
		t.Fatal("a record without attestation is attested")
	}
	a, changed := Attestation(attestor2, rec, "tx1", rec.UpdatedAt)
	if !changed || a.Writer != attestor2.Writer() || a.Country != "JP" {
		t.Fatalf("Attestation = %+v, %v", a, changed)
	}
	rec.Attestation = a
	if !rec.Attested() {
		t.Fatal("attested record not Attested")
	}
	if _, changed := Attestation(attestor2, rec, "tx2", rec.UpdatedAt); changed {
		t.Error("attesting attested facts again changed the record")
	}
	// A region change keeps it; a country or organisation change drops it.
	if KeepAttestation(rec, true, filter.Host{Name: "hm1", Country: "JP", Organizations: []string{"CompanyA"}, Region: "r2"}) == nil {
		t.Error("a region change dropped the attestation")
	}
	if KeepAttestation(rec, true, filter.Host{Name: "hm1", Country: "GB", Organizations: []string{"CompanyA"}}) != nil {
		t.Error("a country change kept the attestation")
	}
	if KeepAttestation(rec, true, filter.Host{Name: "hm1", Country: "JP", Organizations: []string{"CompanyA", "CompanyB"}}) != nil {
		t.Error("an organisation change kept the attestation")
	}
	// Facts changed under an attestation (a record written without
	// KeepAttestation) are not attested.
	rec.Country = "GB"
	if rec.Attested() {
		t.Error("a record whose country differs from its attestation's is attested")
	}
}

func TestProposeAndApprove(t *testing.T) {
	two := ledger.Registry{Members: map[string]ledger.Member{"Org1MSP": {Organizations: []string{"CompanyA"}}, "Org2MSP": {Organizations: []string{"CompanyB"}}}}
	one := ledger.Registry{Members: map[string]ledger.Member{"Org2MSP": {Organizations: []string{"CompanyA"}}}}
	// A first registry naming one organisation is refused on Fabric.
	_, _, _, err := Propose(policy2, ledger.Proposal{Kind: ledger.ProposeRegistry, Registry: &one}, nil, nil)
	wantForbidden(t, err, false, "at least 2")
	// Only a policy admin proposes.
	_, _, _, err = Propose(hostAdmin1, ledger.Proposal{Kind: ledger.ProposeRegistry, Registry: &two}, nil, nil)
	wantForbidden(t, err, false, RolePolicyAdmin)
	// A first registry of two needs both.
	p, needed, base, err := Propose(policy1, ledger.Proposal{Kind: ledger.ProposeRegistry, Registry: &two}, nil, nil)
	if err != nil || base != 0 || len(needed) != 2 || needed[0] != "Org1MSP" || needed[1] != "Org2MSP" || p.Registry == nil {
		t.Fatalf("Propose = %+v %v %d %v", p, needed, base, err)
	}
	rec := &ledger.ProposalRecord{Proposal: p, ID: "tx1", Base: base, Needed: needed, State: ledger.ProposalOpen,
		Approvals: []ledger.Approval{{Writer: policy1.Writer()}}}
	if m := rec.Missing(); len(m) != 1 || m[0] != "Org2MSP" {
		t.Fatalf("Missing = %v", m)
	}
	wantForbidden(t, MayApprove(policy3, rec, 0), false, "Org3MSP")
	wantForbidden(t, MayApprove(carol, rec, 0), false, RolePolicyAdmin)
	if err := MayApprove(policy1, rec, 0); !errors.Is(err, ledger.ErrInvalid) {
		t.Errorf("a second approval by Org1: %v, want ErrInvalid", err)
	}
	if err := MayApprove(policy2, rec, 1); !errors.Is(err, ledger.ErrInvalid) {
		t.Errorf("an approval of a stale proposal: %v, want ErrInvalid", err)
	}
	if err := MayApprove(policy2, rec, 0); err != nil {
		t.Errorf("Org2's approval: %v", err)
	}
	rec.State = ledger.ProposalApplied
	if err := MayApprove(policy2, rec, 0); !errors.Is(err, ledger.ErrInvalid) {
		t.Errorf("an approval of an applied proposal: %v, want ErrInvalid", err)
	}
	// With a registry in force, a change needs its members and the new ones.
	cur := registry(1, map[string][]string{"Org1MSP": {"CompanyA"}, "Org2MSP": {"CompanyB"}})
	three := ledger.Registry{Members: map[string]ledger.Member{"Org1MSP": {Organizations: []string{"CompanyA"}}, "Org3MSP": {Organizations: []string{"CompanyC"}}}}
	_, needed, base, err = Propose(policy1, ledger.Proposal{Kind: ledger.ProposeRegistry, Registry: &three}, cur, nil)
	if err != nil || base != 1 || len(needed) != 3 {
		t.Fatalf("dropping Org2 and adding Org3: needed %v base %d err %v; want all three", needed, base, err)
	}
	// Once a registry is in force, only its members propose.
	_, _, _, err = Propose(policy3, ledger.Proposal{Kind: ledger.ProposeRegistry, Registry: &three}, cur, nil)
	wantForbidden(t, err, false, "Org3MSP", "not a member")
	// The embedded ledger's one organisation needs no other approval.
	eReg := ledger.Registry{Members: map[string]ledger.Member{"": {Organizations: []string{"CompanyA"}}}}
	_, needed, _, err = Propose(ePolicy, ledger.Proposal{Kind: ledger.ProposeRegistry, Registry: &eReg}, nil, nil)
	if err != nil || len(needed) != 1 || needed[0] != "" {
		t.Fatalf("embedded: needed %v err %v", needed, err)
	}
	// Bad proposals.
	for _, bad := range []ledger.Proposal{
		{Kind: "other"},
		{Kind: ledger.ProposeRegistry},
		{Kind: ledger.ProposeRegistry, Registry: &ledger.Registry{}},
		{Kind: ledger.ProposeRegistry, Registry: &ledger.Registry{Members: map[string]ledger.Member{"Org1MSP": {}}}},
		{Kind: ledger.ProposeRegistry, Registry: &ledger.Registry{Members: map[string]ledger.Member{"Org 1": {Organizations: []string{"A"}}}}},
		{Kind: ledger.ProposeRegistry, Registry: &ledger.Registry{Members: map[string]ledger.Member{"Org1MSP": {Organizations: []string{"A"}, HostPatterns: []string{"["}}}}},
		{Kind: ledger.ProposeBinding},
	} {
		if _, _, _, err := Propose(policy1, bad, cur, nil); !errors.Is(err, ledger.ErrInvalid) {
			t.Errorf("Propose(%+v) = %v, want ErrInvalid", bad, err)
		}
	}
}

func TestBindingsAndProjectRegulations(t *testing.T) {
	const project = "p1"
	subj := filter.ProjectSubject(project)
	bound1 := &ledger.BindingRecord{Binding: ledger.Binding{Project: project, MSP: "Org1MSP"}, Version: 1}
	// Binding: a policy admin, first binding wins.
	wantForbidden(t, MayBindProject(alice, project, nil), false, RolePolicyAdmin)
	wantForbidden(t, MayBindProject(policy1, project, nil), true)
	wantForbidden(t, MayBindProject(policy1, project, bound1), true)
	wantForbidden(t, MayBindProject(policy2, project, bound1), false, "Org1MSP", "every organisation")
	// A project's regulation: only its organisation's writers, and on
	// Fabric only once bound.
	terms := filter.Terms{Allow: []filter.Rule{{Country: "JP", Organization: filter.Any}}}
	wantForbidden(t, MayWriteRegulation(alice, subj, terms, ledger.RegulationRecord{}, false, bound1), true)
	wantForbidden(t, MayWriteRegulation(carol, subj, terms, ledger.RegulationRecord{}, false, bound1), false, "bound to Org1MSP", "Org2MSP")
	wantForbidden(t, MayWriteRegulation(carol, subj, terms, ledger.RegulationRecord{}, false, nil), false, "bound to no organisation")
	wantForbidden(t, MayWriteRegulation(eAlice, subj, terms, ledger.RegulationRecord{}, false, nil), true)
	// A VM's regulation naming a project of another organisation.
	vm := filter.VMSubject("0b4e8a4c-6c1e-4a43-9d7e-0a1f2b3c4d5e")
	named := filter.Terms{Allow: terms.Allow, Project: project}
	wantForbidden(t, MayWriteRegulation(carol, vm, named, ledger.RegulationRecord{}, false, bound1), false, "bound to Org1MSP")
	wantForbidden(t, MayWriteRegulation(alice, vm, named, ledger.RegulationRecord{}, false, bound1), true)
	wantForbidden(t, MayWriteRegulation(carol, vm, named, ledger.RegulationRecord{}, false, nil), true)
	// Its owner changing it to name another organisation's project.
	owned := ledger.RegulationRecord{Regulation: filter.Regulation{Subject: vm, Owner: carol.String()}}
	wantForbidden(t, MayWriteRegulation(carol, vm, named, owned, true, bound1), false, "bound to Org1MSP")
	// After a move to Org2: Org2's policy admin changes the regulation that
	// Org1's vmmanager owns; Org1's writers no longer do.
	owned1 := ledger.RegulationRecord{Regulation: filter.Regulation{Subject: subj, Owner: alice.String()}}
	bound2 := &ledger.BindingRecord{Binding: ledger.Binding{Project: project, MSP: "Org2MSP"}, Version: 2}
	wantForbidden(t, MayWriteRegulation(policy2, subj, terms, owned1, true, bound2), true)
	wantForbidden(t, MayWriteRegulation(carol, subj, terms, owned1, true, bound2), false, "owner")
	wantForbidden(t, MayWriteRegulation(alice, subj, terms, owned1, true, bound2), false, "bound to Org2MSP")
	wantForbidden(t, MayWriteRegulation(policy1, subj, terms, owned1, true, bound2), false, "bound to Org2MSP")
	wantForbidden(t, MayWriteRegulation(alice, subj, terms, owned1, true, bound1), true)
	// A move: every member, the project's organisation and the new one.
	cur := registry(2, map[string][]string{"Org1MSP": {"CompanyA"}, "Org2MSP": {"CompanyB"}})
	_, needed, base, err := Propose(policy2, ledger.Proposal{Kind: ledger.ProposeBinding, Binding: &ledger.Binding{Project: project, MSP: "Org3MSP"}}, cur, bound1)
	if err != nil || base != 1 || len(needed) != 3 {
		t.Fatalf("move: needed %v base %d err %v", needed, base, err)
	}
	if _, _, _, err := Propose(policy2, ledger.Proposal{Kind: ledger.ProposeBinding, Binding: &ledger.Binding{Project: project, MSP: "Org3MSP"}}, cur, nil); !errors.Is(err, ledger.ErrInvalid) {
		t.Errorf("moving an unbound project: %v, want ErrInvalid", err)
	}
}
