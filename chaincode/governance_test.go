package chaincode

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/ledgerfence/ledgerfence/pkg/decide"
	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/fabric/wire"
)

var (
	attestor1  = ident("Org1MSP", "attestor", wire.AttrRole, wire.RoleAttestor)
	attestor2  = ident("Org2MSP", "attestor", wire.AttrRole, wire.RoleAttestor)
	policy3    = ident("Org3MSP", "policy", wire.AttrRole, wire.RolePolicyAdmin)
	hostAdmin3 = ident("Org3MSP", "hostadmin", wire.AttrRole, wire.RoleHostAdmin)
	org2HM9    = ident("Org2MSP", "hm9agent", wire.AttrRole, wire.RoleHostAgent, wire.AttrHost, "hm9")
)

// call runs one transaction of the contract as id and decodes its result
// into a T; writes and event are what the transaction committed.
func call[T any](l *ledgerState, id fakeIdentity, fn func(ctx Ctx) (string, error)) (T, []string, *event, error) {
	var v T
	writes, ev, err := l.tx(id, func(ctx Ctx) error {
		out, err := fn(ctx)
		if err != nil {
			return err
		}
		return json.Unmarshal([]byte(out), &v)
	})
	return v, writes, ev, err
}

func propose(l *ledgerState, id fakeIdentity, p ledger.Proposal) (ledger.ProposalRecord, []string, *event, error) {
	body, _ := json.Marshal(p)
	return call[ledger.ProposalRecord](l, id, func(ctx Ctx) (string, error) { return cc.Propose(ctx, string(body)) })
}

func approve(l *ledgerState, id fakeIdentity, pid string) (ledger.ProposalRecord, []string, *event, error) {
	return call[ledger.ProposalRecord](l, id, func(ctx Ctx) (string, error) { return cc.Approve(ctx, pid) })
}

func bind(t *testing.T, l *ledgerState, id fakeIdentity, project string) wire.BindProjectResult {
	t.Helper()
	res, _, _, err := call[wire.BindProjectResult](l, id, func(ctx Ctx) (string, error) { return cc.BindProject(ctx, project) })
	must(t, err)
	return res
}

func attest(l *ledgerState, id fakeIdentity, name, country string, orgs ...string) (wire.AttestHostResult, []string, *event, error) {
	body, _ := json.Marshal(orgs)
	return call[wire.AttestHostResult](l, id, func(ctx Ctx) (string, error) { return cc.AttestHost(ctx, name, country, string(body)) })
}

func registryOf(members map[string][]string) *ledger.Registry {
	r := &ledger.Registry{Members: map[string]ledger.Member{}}
	for msp, orgs := range members {
		r.Members[msp] = ledger.Member{Organizations: orgs}
	}
	return r
}

func proposeRegistry(r *ledger.Registry) ledger.Proposal {
	return ledger.Proposal{Kind: ledger.ProposeRegistry, Registry: r}
}

func decodeEvent(t *testing.T, ev *event) ledger.Event {
	t.Helper()
	if ev == nil {
		t.Fatal("no event")
	}
	var got ledger.Event
	must(t, json.Unmarshal(ev.payload, &got))
	return got
}

// inForce puts a registry of Org1MSP (CompanyA) and Org2MSP (CompanyB) in
// force: proposed by Org1, approved by Org2.
func inForce(t *testing.T, l *ledgerState, r *ledger.Registry) ledger.RegistryRecord {
	t.Helper()
	if r == nil {
		r = registryOf(map[string][]string{"Org1MSP": {"CompanyA"}, "Org2MSP": {"CompanyB"}})
	}
	p, _, _, err := propose(l, policy1, proposeRegistry(r))
	must(t, err)
	_, _, _, err = approve(l, policy2, p.ID)
	must(t, err)
	reg, err := read[ledger.RegistryRecord](t, l, func(ctx Ctx) (string, error) { return cc.GetRegistry(ctx) })
	must(t, err)
	return reg
}

func TestRegistryProposalAndApproval(t *testing.T) {
	l := newLedgerState()
	_, err := read[ledger.RegistryRecord](t, l, func(ctx Ctx) (string, error) { return cc.GetRegistry(ctx) })
	wantCode(t, err, wire.CodeNotFound, "no registry")

	// a first registry naming one organisation: refused, nothing written
	_, writes, _, err := propose(l, policy1, proposeRegistry(registryOf(map[string][]string{"Org1MSP": {"*"}})))
	wantCode(t, err, wire.CodeForbid, "at least 2")
	if len(writes) != 0 {
		t.Fatalf("a refused proposal wrote %v", writes)
	}
	// only a policy admin proposes
	_, _, _, err = propose(l, alice, proposeRegistry(registryOf(map[string][]string{"Org1MSP": {"CompanyA"}, "Org2MSP": {"CompanyB"}})))
	wantCode(t, err, wire.CodeForbid, "policyadmin", "role is vmmanager")

	r := registryOf(map[string][]string{"Org1MSP": {"CompanyA", "CompanyA"}, "Org2MSP": {"CompanyB"}})
	p, writes, ev, err := propose(l, policy1, proposeRegistry(r))
	must(t, err)
	if p.ID == "" || p.State != ledger.ProposalOpen || p.Base != 0 || !reflect.DeepEqual(p.Needed, []string{"Org1MSP", "Org2MSP"}) ||
		len(p.Approvals) != 1 || p.Approvals[0].Writer.MSP != "Org1MSP" || p.Approvals[0].TxID != p.ID {
		t.Fatalf("proposal %+v", p)
	}
	if !reflect.DeepEqual(p.Registry.Members["Org1MSP"].Organizations, []string{"CompanyA"}) {
		t.Errorf("registry not normalised: %+v", p.Registry)
	}
	if !reflect.DeepEqual(writes, []string{"proposal/" + p.ID}) || ev.name != "proposal.put" {
		t.Fatalf("writes %v event %s", writes, ev.name)
	}
	if got := decodeEvent(t, ev); got.Kind != ledger.KindProposal || got.Key != p.ID || got.Proposal == nil || got.Registry != nil {
		t.Errorf("event %+v", got)
	}
	// not in force until every organisation approved
	_, err = read[ledger.RegistryRecord](t, l, func(ctx Ctx) (string, error) { return cc.GetRegistry(ctx) })
	wantCode(t, err, wire.CodeNotFound)
	open, err := read[[]ledger.ProposalRecord](t, l, func(ctx Ctx) (string, error) { return cc.ListProposals(ctx) })
	must(t, err)
	if len(open) != 1 || open[0].ID != p.ID || !reflect.DeepEqual(open[0].Missing(), []string{"Org2MSP"}) {
		t.Fatalf("open proposals %+v", open)
	}

	// refused approvals change nothing
	for _, tc := range []struct {
		as    fakeIdentity
		code  string
		words []string
	}{
		{policy1, wire.CodeInvalid, []string{"already approved by Org1MSP"}},
		{carol, wire.CodeForbid, []string{"policyadmin", "role is vmmanager"}},
		{policy3, wire.CodeForbid, []string{"needs the approval of Org1MSP, Org2MSP", "not of Org3MSP"}},
	} {
		_, writes, _, err := approve(l, tc.as, p.ID)
		wantCode(t, err, tc.code, tc.words...)
		if len(writes) != 0 {
			t.Fatalf("a refused approval wrote %v", writes)
		}
	}
	_, _, _, err = approve(l, policy2, "nosuch")
	wantCode(t, err, wire.CodeNotFound, "nosuch")
	_, _, _, err = approve(l, policy2, "../host/hm1")
	wantCode(t, err, wire.CodeInvalid, "proposal id")

	// the last approval needed applies it
	done, writes, ev, err := approve(l, policy2, p.ID)
	must(t, err)
	if done.State != ledger.ProposalApplied || len(done.Approvals) != 2 || done.Approvals[1].Writer.MSP != "Org2MSP" || len(done.Missing()) != 0 {
		t.Fatalf("approved %+v", done)
	}
	if !reflect.DeepEqual(writes, []string{"registry/", "proposal/" + p.ID}) || ev.name != "registry.put" {
		t.Fatalf("writes %v event %s", writes, ev.name)
	}
	got := decodeEvent(t, ev)
	if got.Kind != ledger.KindRegistry || got.Key != ledger.RegistryKey || got.Registry == nil || got.Registry.Version != 1 ||
		got.Proposal == nil || got.Proposal.State != ledger.ProposalApplied || got.Writer.MSP != "Org2MSP" {
		t.Errorf("event %+v", got)
	}
	reg, err := read[ledger.RegistryRecord](t, l, func(ctx Ctx) (string, error) { return cc.GetRegistry(ctx) })
	must(t, err)
	if reg.Version != 1 || reg.Proposal != p.ID || reg.TxID != done.Approvals[1].TxID || len(reg.Members) != 2 {
		t.Fatalf("registry %+v", reg)
	}
	_, _, _, err = approve(l, policy2, p.ID)
	wantCode(t, err, wire.CodeInvalid, "applied")
	open, err = read[[]ledger.ProposalRecord](t, l, func(ctx Ctx) (string, error) { return cc.ListProposals(ctx) })
	must(t, err)
	if len(open) != 0 {
		t.Errorf("open proposals %+v", open)
	}

	// History of the registry and of the proposal
	hist, err := read[[]ledger.Change](t, l, func(ctx Ctx) (string, error) { return cc.History(ctx, "registry", "registry") })
	must(t, err)
	if len(hist) != 1 || hist[0].Registry == nil || hist[0].Registry.Version != 1 || hist[0].Writer.MSP != "Org2MSP" {
		t.Errorf("registry history %+v", hist)
	}
	hist, err = read[[]ledger.Change](t, l, func(ctx Ctx) (string, error) { return cc.History(ctx, "proposal", p.ID) })
	must(t, err)
	if len(hist) != 2 || hist[0].Proposal.State != ledger.ProposalOpen || hist[1].Proposal.State != ledger.ProposalApplied ||
		hist[0].Writer.MSP != "Org1MSP" || hist[1].Writer.MSP != "Org2MSP" {
		t.Errorf("proposal history %+v", hist)
	}
	_, err = read[[]ledger.Change](t, l, func(ctx Ctx) (string, error) { return cc.History(ctx, "registry", "other") })
	wantCode(t, err, wire.CodeInvalid, "registry")
}

func TestRegistryChangeNeedsEveryOrganisation(t *testing.T) {
	l := newLedgerState()
	v1 := inForce(t, l, nil)

	// a change approved by one organisation only stays open; the registry is unchanged
	wider := registryOf(map[string][]string{"Org1MSP": {"*"}, "Org2MSP": {"CompanyB"}})
	p, _, _, err := propose(l, policy1, proposeRegistry(wider))
	must(t, err)
	if p.Base != 1 || p.State != ledger.ProposalOpen {
		t.Fatalf("proposal %+v", p)
	}
	reg, err := read[ledger.RegistryRecord](t, l, func(ctx Ctx) (string, error) { return cc.GetRegistry(ctx) })
	must(t, err)
	if !reflect.DeepEqual(reg, v1) {
		t.Fatalf("registry changed by one organisation: %+v", reg)
	}

	// adding a member needs the new member's approval too
	three := registryOf(map[string][]string{"Org1MSP": {"CompanyA"}, "Org2MSP": {"CompanyB"}, "Org3MSP": {"CompanyC"}})
	p3, _, _, err := propose(l, policy2, proposeRegistry(three))
	must(t, err)
	if !reflect.DeepEqual(p3.Needed, []string{"Org1MSP", "Org2MSP", "Org3MSP"}) {
		t.Fatalf("needed %v", p3.Needed)
	}

	// two proposals on version 1: the first applied makes the other stale
	_, _, _, err = approve(l, policy2, p.ID)
	must(t, err)
	_, writes, _, err := approve(l, policy1, p3.ID)
	wantCode(t, err, wire.CodeInvalid, "stale", "version 1", "now at version 2")
	if len(writes) != 0 {
		t.Fatalf("a stale approval wrote %v", writes)
	}
	got, err := read[ledger.ProposalRecord](t, l, func(ctx Ctx) (string, error) { return cc.GetProposal(ctx, p3.ID) })
	must(t, err)
	if got.State != ledger.ProposalStale {
		t.Errorf("state %s, want stale", got.State)
	}
	open, err := read[[]ledger.ProposalRecord](t, l, func(ctx Ctx) (string, error) { return cc.ListProposals(ctx) })
	must(t, err)
	if len(open) != 0 {
		t.Errorf("open proposals %+v", open)
	}
	reg, err = read[ledger.RegistryRecord](t, l, func(ctx Ctx) (string, error) { return cc.GetRegistry(ctx) })
	must(t, err)
	if reg.Version != 2 || reg.Proposal != p.ID || !reflect.DeepEqual(reg.Members["Org1MSP"].Organizations, []string{"*"}) {
		t.Errorf("registry %+v", reg)
	}
	_, err = read[ledger.ProposalRecord](t, l, func(ctx Ctx) (string, error) { return cc.GetProposal(ctx, "nosuch") })
	wantCode(t, err, wire.CodeNotFound)
}

func TestRegistryRestrictsHostWrites(t *testing.T) {
	l := newLedgerState()
	// before any registry, Org2 may claim anything
	_, _, _, err := putHost(l, hostAdmin2, filter.Host{Name: "early", Country: "JP", Organizations: []string{"CompanyA"}})
	must(t, err)
	r := registryOf(map[string][]string{"Org1MSP": {"CompanyA"}, "Org2MSP": {"CompanyB"}})
	r.Members["Org2MSP"] = ledger.Member{Organizations: []string{"CompanyB"}, HostPatterns: []string{"o2-*", "hm9"}}
	inForce(t, l, r)

	tests := []struct {
		name  string
		as    fakeIdentity
		host  filter.Host
		code  string
		words []string
	}{
		{name: "Org2 claims Org1's code on a new host", as: org2HM9, host: filter.Host{Name: "hm9", Country: "JP", Organizations: []string{"CompanyA"}},
			code: wire.CodeForbid, words: []string{"Org2MSP may not claim organisation CompanyA", "version 1", "CompanyB"}},
		{name: "Org2 claims its own and Org1's", as: hostAdmin2, host: filter.Host{Name: "o2-1", Country: "JP", Organizations: []string{"CompanyA", "CompanyB"}},
			code: wire.CodeForbid, words: []string{"CompanyA"}},
		{name: "Org2 claims its own code", as: org2HM9, host: filter.Host{Name: "hm9", Country: "JP", Organizations: []string{"CompanyB"}}},
		{name: "Org2 outside its host patterns", as: hostAdmin2, host: filter.Host{Name: "x1", Country: "JP", Organizations: []string{"CompanyB"}},
			code: wire.CodeForbid, words: []string{"may not register host x1", "hm9, o2-*"}},
		{name: "Org1 claims its own code", as: hostAdmin1, host: filter.Host{Name: "hm1", Country: "GB", Organizations: []string{"CompanyA"}}},
		{name: "an organisation not in the registry", as: hostAdmin3, host: filter.Host{Name: "o3-1", Country: "JP", Organizations: []string{"CompanyC"}},
			code: wire.CodeForbid, words: []string{"Org3MSP is not a member"}},
		{name: "Org2 rewrites a host registered before the registry", as: hostAdmin2, host: filter.Host{Name: "early", Country: "GB", Organizations: []string{"CompanyA"}},
			code: wire.CodeForbid, words: []string{"CompanyA"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before, _ := l.state["host/"+tc.host.Name]
			_, writes, _, err := putHost(l, tc.as, tc.host)
			wantCode(t, err, tc.code, tc.words...)
			if tc.code != "" {
				if len(writes) != 0 || string(l.state["host/"+tc.host.Name]) != string(before) {
					t.Fatalf("a refused write changed %s", tc.host.Name)
				}
			}
		})
	}
}

func TestAttestation(t *testing.T) {
	l := newLedgerState()
	hm1 := filter.Host{Name: "hm1", Country: "JP", Organizations: []string{"CompanyA"}, Region: "r1"}
	first, _, _, err := putHost(l, agentHM1, hm1)
	must(t, err)
	if first.Record.Attested() || first.Record.Attestation != nil {
		t.Fatalf("a new record is attested: %+v", first.Record)
	}

	refusals := []struct {
		name    string
		as      fakeIdentity
		host    string
		country string
		orgs    []string
		code    string
		words   []string
	}{
		{"the host's own agent", agentHM1, "hm1", "JP", []string{"CompanyA"}, wire.CodeForbid, []string{"attestor", "role is hostagent"}},
		{"an attestor of the claimer's organisation", attestor1, "hm1", "JP", []string{"CompanyA"}, wire.CodeForbid, []string{"claimed through Org1MSP", "same organisation"}},
		{"other facts than the record's", attestor2, "hm1", "GB", []string{"CompanyA"}, wire.CodeInvalid, []string{"JP CompanyA", "not GB CompanyA"}},
		{"an unknown host", attestor2, "nohost", "JP", []string{"CompanyA"}, wire.CodeNotFound, []string{"nohost"}},
		{"an invalid country", attestor2, "hm1", "XX", []string{"CompanyA"}, wire.CodeInvalid, []string{"country"}},
	}
	for _, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			before := string(l.state["host/hm1"])
			_, writes, _, err := attest(l, tc.as, tc.host, tc.country, tc.orgs...)
			wantCode(t, err, tc.code, tc.words...)
			if len(writes) != 0 || string(l.state["host/hm1"]) != before {
				t.Fatal("a refused attestation wrote")
			}
		})
	}
	_, _, err = l.tx(attestor2, func(ctx Ctx) error { _, err := cc.AttestHost(ctx, "hm1", "JP", `{"a":1}`); return err })
	wantCode(t, err, wire.CodeInvalid, "JSON list")
	_, _, err = l.tx(attestor2, func(ctx Ctx) error {
		_, err := cc.AttestHost(ctx, "hm1", "JP", `["`+strings.Repeat("A", maxAttestOrgsBytes)+`"]`)
		return err
	})
	wantCode(t, err, wire.CodeInvalid, "larger than")

	// the other organisation's attestor: attested, the claimer still the writer
	res, writes, ev, err := attest(l, attestor2, "hm1", "jp", "CompanyA")
	must(t, err)
	rec := res.Record
	if !res.Changed || !rec.Attested() || rec.Writer != first.Record.Writer || rec.Attestation.Writer.MSP != "Org2MSP" ||
		rec.Attestation.Writer.Role != wire.RoleAttestor || rec.Attestation.TxID != rec.TxID || rec.Region != "r1" {
		t.Fatalf("attested %+v (attestation %+v)", rec, rec.Attestation)
	}
	if !reflect.DeepEqual(writes, []string{"host/hm1"}) || ev.name != "host.attest" {
		t.Fatalf("writes %v event %s", writes, ev.name)
	}
	if got := decodeEvent(t, ev); got.Op != ledger.OpAttest || got.Host == nil || !got.Host.Attested() || got.Writer.MSP != "Org2MSP" {
		t.Errorf("event %+v", got)
	}
	// again: already attested, nothing written
	again, writes, ev, err := attest(l, attestor2, "hm1", "JP", "CompanyA")
	must(t, err)
	if again.Changed || len(writes) != 0 || ev != nil || again.Record.TxID != rec.TxID {
		t.Fatalf("a second attestation wrote: %+v %v", again, writes)
	}

	// a change of region keeps the attestation; of country drops it
	r2, _, _, err := putHost(l, agentHM1, filter.Host{Name: "hm1", Country: "JP", Organizations: []string{"CompanyA"}, Region: "r2"})
	must(t, err)
	if !r2.Record.Attested() || r2.Record.Attestation.TxID != rec.TxID {
		t.Fatalf("a region change dropped the attestation: %+v", r2.Record)
	}
	moved, _, _, err := putHost(l, agentHM1, filter.Host{Name: "hm1", Country: "GB", Organizations: []string{"CompanyA"}, Region: "r2"})
	must(t, err)
	if moved.Record.Attested() || moved.Record.Attestation != nil {
		t.Fatalf("a country change kept the attestation: %+v", moved.Record)
	}
	_, _, _, err = attest(l, attestor2, "hm1", "JP", "CompanyA")
	wantCode(t, err, wire.CodeInvalid, "attest the facts as they are now")
	re, _, _, err := attest(l, attestor2, "hm1", "GB", "CompanyA")
	must(t, err)
	if !re.Changed || !re.Record.Attested() || re.Record.Country != "GB" {
		t.Fatalf("re-attested %+v", re.Record)
	}

	hist, err := read[[]ledger.Change](t, l, func(ctx Ctx) (string, error) { return cc.History(ctx, "host", "hm1") })
	must(t, err)
	var ops []string
	for _, c := range hist {
		ops = append(ops, string(c.Op)+":"+c.Writer.MSP+":"+c.Writer.Role+":"+c.Host.Country)
	}
	want := []string{"put:Org1MSP:hostagent:JP", "attest:Org2MSP:attestor:JP", "put:Org1MSP:hostagent:JP", "put:Org1MSP:hostagent:GB", "attest:Org2MSP:attestor:GB"}
	if !reflect.DeepEqual(ops, want) {
		t.Errorf("history %v, want %v", ops, want)
	}
}

func TestProjectBinding(t *testing.T) {
	l := newLedgerState()
	const reg = `{"allow": ["JP.CompanyA"]}`

	// an unbound project's regulation is refused
	_, _, _, err := putReg(l, alice, "project:p1", reg)
	wantCode(t, err, wire.CodeForbid, "bound to no organisation", "policyadmin of Org1MSP")
	_, err = read[ledger.BindingRecord](t, l, func(ctx Ctx) (string, error) { return cc.GetBinding(ctx, "p1") })
	wantCode(t, err, wire.CodeNotFound, "p1")

	_, _, _, err = call[wire.BindProjectResult](l, alice, func(ctx Ctx) (string, error) { return cc.BindProject(ctx, "p1") })
	wantCode(t, err, wire.CodeForbid, "policyadmin", "role is vmmanager")
	_, _, _, err = call[wire.BindProjectResult](l, policy1, func(ctx Ctx) (string, error) { return cc.BindProject(ctx, "bad id!") })
	wantCode(t, err, wire.CodeInvalid)

	res, writes, ev, err := call[wire.BindProjectResult](l, policy1, func(ctx Ctx) (string, error) { return cc.BindProject(ctx, "p1") })
	must(t, err)
	if !res.Changed || res.Record.Project != "p1" || res.Record.MSP != "Org1MSP" || res.Record.Version != 1 || res.Record.Writer.Role != wire.RolePolicyAdmin {
		t.Fatalf("bound %+v", res)
	}
	if !reflect.DeepEqual(writes, []string{"binding/p1"}) || ev.name != "binding.put" {
		t.Fatalf("writes %v event %s", writes, ev.name)
	}
	if got := decodeEvent(t, ev); got.Kind != ledger.KindBinding || got.Key != "p1" || got.Binding == nil || got.Binding.MSP != "Org1MSP" {
		t.Errorf("event %+v", got)
	}
	// again by its organisation: nothing written
	again, writes, ev, err := call[wire.BindProjectResult](l, policy1, func(ctx Ctx) (string, error) { return cc.BindProject(ctx, "p1") })
	must(t, err)
	if again.Changed || len(writes) != 0 || ev != nil {
		t.Fatalf("binding again wrote %v", writes)
	}
	// another organisation cannot take it
	_, writes, _, err = call[wire.BindProjectResult](l, policy2, func(ctx Ctx) (string, error) { return cc.BindProject(ctx, "p1") })
	wantCode(t, err, wire.CodeForbid, "bound to Org1MSP", "proposal")
	if len(writes) != 0 {
		t.Fatal("a refused binding wrote")
	}

	// only the bound organisation's writers create the project's regulation
	_, writes, _, err = putReg(l, carol, "project:p1", reg)
	wantCode(t, err, wire.CodeForbid, "bound to Org1MSP", "Org2MSP may not regulate it")
	if len(writes) != 0 {
		t.Fatal("a refused regulation wrote")
	}
	_, _, _, err = putReg(l, policy2, "project:p1", reg)
	wantCode(t, err, wire.CodeForbid, "bound to Org1MSP")
	_, _, _, err = putReg(l, alice, "project:p1", reg)
	must(t, err)
	// a VM's regulation names a project of its writer's organisation, or an unbound one
	_, _, _, err = putReg(l, carol, vm1, `{"allow": ["JP.CompanyA"], "project": "p1"}`)
	wantCode(t, err, wire.CodeForbid, "bound to Org1MSP")
	_, _, _, err = putReg(l, carol, vm1, `{"allow": ["JP.CompanyA"], "project": "p-free"}`)
	must(t, err)

	// a move needs every organisation's approval
	_, _, _, err = propose(l, policy2, ledger.Proposal{Kind: ledger.ProposeBinding, Binding: &ledger.Binding{Project: "p-none", MSP: "Org2MSP"}})
	wantCode(t, err, wire.CodeInvalid, "bound to no organisation")
	_, _, _, err = propose(l, policy2, ledger.Proposal{Kind: ledger.ProposeBinding, Binding: &ledger.Binding{Project: "p1", MSP: "Org1MSP"}})
	wantCode(t, err, wire.CodeInvalid, "already bound to Org1MSP")
	p, _, _, err := propose(l, policy1, ledger.Proposal{Kind: ledger.ProposeBinding, Binding: &ledger.Binding{Project: "p1", MSP: "Org2MSP"}})
	must(t, err)
	if p.Base != 1 || p.Binding.Project != "p1" || !reflect.DeepEqual(p.Needed, []string{"Org1MSP", "Org2MSP"}) {
		t.Fatalf("proposal %+v", p)
	}
	b, err := read[ledger.BindingRecord](t, l, func(ctx Ctx) (string, error) { return cc.GetBinding(ctx, "p1") })
	must(t, err)
	if b.MSP != "Org1MSP" {
		t.Fatalf("moved before every approval: %+v", b)
	}
	done, writes, ev, err := approve(l, policy2, p.ID)
	must(t, err)
	if done.State != ledger.ProposalApplied || !reflect.DeepEqual(writes, []string{"binding/p1", "proposal/" + p.ID}) || ev.name != "binding.put" {
		t.Fatalf("approved %+v writes %v event %s", done, writes, ev.name)
	}
	if got := decodeEvent(t, ev); got.Binding == nil || got.Binding.MSP != "Org2MSP" || got.Proposal == nil || got.Proposal.ID != p.ID {
		t.Errorf("event %+v", got)
	}
	b, err = read[ledger.BindingRecord](t, l, func(ctx Ctx) (string, error) { return cc.GetBinding(ctx, "p1") })
	must(t, err)
	if b.MSP != "Org2MSP" || b.Version != 2 || b.Proposal != p.ID || b.Writer.MSP != "Org2MSP" {
		t.Fatalf("binding %+v", b)
	}
	hist, err := read[[]ledger.Change](t, l, func(ctx Ctx) (string, error) { return cc.History(ctx, "binding", "p1") })
	must(t, err)
	if len(hist) != 2 || hist[0].Binding.MSP != "Org1MSP" || hist[1].Binding.MSP != "Org2MSP" || hist[1].Binding.Proposal != p.ID {
		t.Errorf("binding history %+v", hist)
	}
	// now the project is Org2's: a new project regulation is theirs to make
	_, _, err = l.tx(alice, func(ctx Ctx) error { return cc.DeleteRegulation(ctx, "project:p1") })
	must(t, err)
	_, _, _, err = putReg(l, alice, "project:p1", reg)
	wantCode(t, err, wire.CodeForbid, "bound to Org2MSP")
	_, _, _, err = putReg(l, carol, "project:p1", reg)
	must(t, err)
}

func TestProposeRefusesMalformedInput(t *testing.T) {
	l := newLedgerState()
	for _, tc := range []struct{ body, word string }{
		{`{"kind": "registry"`, "one JSON object"},
		{`{"kind": "registry", "registry": {"members": {"Org1MSP": {"organizations": ["A"]}, "Org2MSP": {"organizations": ["B"]}}}, "extra": 1}`, "one JSON object"},
		{`{"kind": "registry", "registry": {"members": {"Org1MSP": {"organizations": ["A"]}}}} {}`, "one JSON object"},
		{`{"kind": "other"}`, "proposal kind"},
		{`{"kind": "registry"}`, "carries a registry"},
		{`{"kind": "registry", "registry": {"members": {"Org1MSP": {"organizations": ["A"]}, "Org 2": {"organizations": ["B"]}}}}`, "MSP id"},
		{`{"kind": "registry", "registry": {"members": {"Org1MSP": {"organizations": ["A"]}, "Org2MSP": {"organizations": []}}}}`, "at least one organisation"},
		{`{"kind": "registry", "registry": {"members": {"Org1MSP": {"organizations": ["A"]}, "Org2MSP": {"organizations": ["B"], "host_patterns": ["["]}}}}`, "host pattern"},
		{`{"kind": "binding", "binding": {"project": "p1", "msp": "Org2MSP"}, "registry": {"members": {}}}`, "carries a binding"},
		{`{"kind": "registry", "registry": {"members": {}}, "pad": "` + strings.Repeat("x", maxProposalBytes) + `"}`, "larger than"},
	} {
		_, writes, _, err := call[ledger.ProposalRecord](l, policy1, func(ctx Ctx) (string, error) { return cc.Propose(ctx, tc.body) })
		wantCode(t, err, wire.CodeInvalid, tc.word)
		if len(writes) != 0 {
			t.Fatalf("a refused proposal wrote %v", writes)
		}
	}
}

func TestCheckRequiresAttestation(t *testing.T) {
	l := newLedgerState()
	seedHosts(t, l,
		filter.Host{Name: "jp-a", Country: "JP", Organizations: []string{"CompanyA"}},
		filter.Host{Name: "jp-b", Country: "JP", Organizations: []string{"CompanyA"}},
	)
	_, _, _, err := attest(l, attestor2, "jp-b", "JP", "CompanyA")
	must(t, err)
	const vmA, vmB = "0b4e8a4c-6c1e-4a43-9d7e-0a1f2b3c4d5e", "11111111-2222-3333-4444-555555555555"
	_, _, _, err = putReg(l, alice, "vm:"+vmA, `{"allow": ["JP.CompanyA"], "require_attested": true}`)
	must(t, err)
	_, _, _, err = putReg(l, alice, "vm:"+vmB, `{"allow": ["JP.CompanyA"]}`)
	must(t, err)
	check := func(vm string) map[string]filter.Reason {
		t.Helper()
		res, err := read[decide.Report](t, l, func(ctx Ctx) (string, error) { return cc.Check(ctx, vm, "", `["jp-a","jp-b"]`, false) })
		must(t, err)
		got := map[string]filter.Reason{}
		for _, v := range res.Verdicts {
			got[v.Host] = v.Reason
		}
		return got
	}
	if got := check(vmA); !reflect.DeepEqual(got, map[string]filter.Reason{"jp-a": filter.HostUnattested, "jp-b": ""}) {
		t.Errorf("a regulation requiring attestation: %v", got)
	}
	if got := check(vmB); !reflect.DeepEqual(got, map[string]filter.Reason{"jp-a": "", "jp-b": ""}) {
		t.Errorf("a regulation not requiring it: %v", got)
	}

	// the registry requires it cloud-wide: Lookup says so and Check applies it
	r := registryOf(map[string][]string{"Org1MSP": {"CompanyA"}, "Org2MSP": {"CompanyB"}})
	r.RequireAttested = true
	inForce(t, l, r)
	lk, err := read[wire.LookupResult](t, l, func(ctx Ctx) (string, error) { return cc.Lookup(ctx, `[]`, `["jp-a"]`) })
	must(t, err)
	jpA := lk.Hosts["jp-a"]
	if !lk.RequireAttested || jpA.Attested() {
		t.Errorf("lookup %+v", lk)
	}
	if got := check(vmB); !reflect.DeepEqual(got, map[string]filter.Reason{"jp-a": filter.HostUnattested, "jp-b": ""}) {
		t.Errorf("the registry requiring attestation: %v", got)
	}
}
