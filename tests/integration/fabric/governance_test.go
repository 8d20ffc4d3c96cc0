package fabric_test

// Governance on the real network: the registry of which organisation may
// claim which organisation codes, proposals every organisation approves,
// project bindings and attestations by a second organisation. Each attack
// is refused with a clear error and, read back, changed nothing; each
// legitimate flow works, with two organisations and with three.
//
// A registry in force restricts every later host write of its network, so
// these tests play on networks of their own (two and three organisations,
// brought up once and taken down at exit), never on the suite's.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/fabric"
	"github.com/ledgerfence/ledgerfence/tests/integration/fabricnet"
)

var (
	govMu   sync.Mutex
	govNets = map[int]*fabricnet.Network{}
)

// governedNetwork is a network of orgs organisations of the governance
// tests' own, brought up at the first call and taken down at exit. Its port
// range is searched from LEDGERFENCE_FABRIC_PORT_BASE's when that is set.
func governedNetwork(tb testing.TB, orgs int) *fabricnet.Network {
	tb.Helper()
	needNetwork(tb)
	govMu.Lock()
	defer govMu.Unlock()
	if n := govNets[orgs]; n != nil {
		return n
	}
	from := 19450
	if base, _ := strconv.Atoi(os.Getenv("LEDGERFENCE_FABRIC_PORT_BASE")); base > 0 {
		from = base + 100*orgs
	}
	n, err := fabricnet.Start(fabricnet.Options{Orgs: orgs, Hosts: []string{"hm1"}, SearchFrom: from, Log: os.Stderr})
	if err != nil {
		tb.Fatalf("a network of %d organisations for the governance tests: %v", orgs, err)
	}
	govNets[orgs] = n
	atExit = append(atExit, func() {
		if err := n.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "fabric integration:", err)
		}
	})
	return n
}

// Identities of each organisation on the harness's networks (README.md).
var (
	policyAdmins = map[int]string{1: "padmin", 2: "padmin-org2", 3: "padmin-org3"}
	attestors    = map[int]string{1: "attestor", 2: "attestor-org2", 3: "attestor-org3"}
	orgCodes     = map[int]string{1: "CompanyA", 2: "CompanyB", 3: "CompanyC"}
)

func TestGovernanceTwoOrganisations(t *testing.T) { playGovernance(t, governedNetwork(t, 2)) }

func TestGovernanceThreeOrganisations(t *testing.T) { playGovernance(t, governedNetwork(t, 3)) }

// gov is one governance test's view of its network.
type gov struct {
	n    *fabricnet.Network
	orgs []fabricnet.Org
	ls   map[string]*fabric.Ledger
}

// as is the backend as identity name (one connection per identity, closed
// by close), once every peer holds every block: each organisation's
// identities use their own organisation's peer, which commits a block a
// little after the writer's peer did, and a write refers to records the
// writer just read (a host to attest, a proposal to approve).
func (g *gov) as(t testing.TB, name string) *fabric.Ledger {
	t.Helper()
	g.sync(t)
	return g.conn(t, name)
}

// sync waits until every organisation's peer is at the same height.
func (g *gov) sync(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var hs []uint64
		for _, o := range g.orgs {
			h, err := g.conn(t, fmt.Sprintf("org%d-user", o.Num)).Height(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			hs = append(hs, h)
		}
		if slices.Min(hs) == slices.Max(hs) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the peers' heights stay apart: %v", hs)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (g *gov) conn(t testing.TB, name string) *fabric.Ledger {
	t.Helper()
	if l := g.ls[name]; l != nil {
		return l
	}
	org, err := g.n.OrgOf(name)
	if err != nil {
		t.Fatal(err)
	}
	id := g.n.Identity(name)
	l, err := fabric.Connect(fabric.Config{
		PeerEndpoint: org.PeerAddress, TLSCAFile: org.PeerTLSCA, ServerName: org.PeerServerName, MSPID: org.MSPID,
		CertFile: id.Cert, KeyFile: id.Key, Channel: g.n.Get("CHANNEL"), Chaincode: g.n.Get("CHAINCODE"),
	})
	if err != nil {
		t.Fatalf("connect as %s: %v", name, err)
	}
	g.ls[name] = l
	return l
}

func (g *gov) close() {
	for _, l := range g.ls {
		l.Close()
	}
}

func (g *gov) mspIDs() []string {
	var out []string
	for _, o := range g.orgs {
		out = append(out, o.MSPID)
	}
	return out
}

// registry gives each organisation its own code (Org1MSP CompanyA, ...).
func (g *gov) registry(extra map[int][]string) *ledger.Registry {
	r := &ledger.Registry{Members: map[string]ledger.Member{}}
	for _, o := range g.orgs {
		r.Members[o.MSPID] = ledger.Member{Organizations: append([]string{orgCodes[o.Num]}, extra[o.Num]...)}
	}
	return r
}

func writerName(w ledger.Writer) string {
	i := strings.Index(w.ID, "CN=")
	if i < 0 {
		return w.ID
	}
	rest := w.ID[i+3:]
	return rest[:strings.IndexAny(rest+",", ",:")]
}

func playGovernance(t *testing.T, n *fabricnet.Network) {
	g := &gov{n: n, orgs: n.Orgs(), ls: map[string]*fabric.Ledger{}}
	t.Cleanup(g.close)
	c := ctx(t)
	last := g.orgs[len(g.orgs)-1].Num
	org1 := func(t testing.TB) *fabric.Ledger { return g.as(t, "padmin") }

	// every write's event, from now on, on Org2's peer
	h0, err := org1(t).Height(c)
	if err != nil {
		t.Fatal(err)
	}
	wctx, stopWatch := context.WithCancel(c)
	defer stopWatch()
	events, err := g.as(t, policyAdmins[2]).Watch(wctx, h0+1)
	if err != nil {
		t.Fatal(err)
	}
	var evMu sync.Mutex
	var seen []ledger.Event
	go func() {
		for ev := range events {
			evMu.Lock()
			seen = append(seen, ev)
			evMu.Unlock()
		}
	}()

	step := func(name string, fn func(t *testing.T)) {
		if !t.Run(name, fn) {
			t.FailNow() // the steps build on each other
		}
	}

	step("a first registry naming one organisation is refused", func(t *testing.T) {
		_, err := org1(t).Propose(c, ledger.Proposal{Kind: ledger.ProposeRegistry, Registry: &ledger.Registry{
			Members: map[string]ledger.Member{"Org1MSP": {Organizations: []string{"*"}}}}})
		wantErr(t, err, ledger.ErrForbidden, "at least 2 organisations")
		_, err = org1(t).Registry(c)
		wantErr(t, err, ledger.ErrNotFound, "no registry")
		open, err := org1(t).ListProposals(c)
		if err != nil || len(open) != 0 {
			t.Fatalf("open proposals %+v, %v", open, err)
		}
	})

	var v1 ledger.RegistryRecord
	step("a registry takes effect when every organisation approved", func(t *testing.T) {
		p, err := org1(t).Propose(c, ledger.Proposal{Kind: ledger.ProposeRegistry, Registry: g.registry(nil)})
		if err != nil {
			t.Fatal(err)
		}
		if p.State != ledger.ProposalOpen || !slices.Equal(p.Needed, g.mspIDs()) || len(p.Approvals) != 1 || p.ID == "" {
			t.Fatalf("proposal %+v", p)
		}
		for _, o := range g.orgs[1:] {
			// not in force before the last approval
			_, err := org1(t).Registry(c)
			wantErr(t, err, ledger.ErrNotFound)
			got, err := g.as(t, policyAdmins[o.Num]).Approve(c, p.ID)
			if err != nil {
				t.Fatalf("%s approves: %v", o.MSPID, err)
			}
			if want := ledger.ProposalOpen; o.Num == last {
				want = ledger.ProposalApplied
				if got.State != want {
					t.Fatalf("after %s: %+v", o.MSPID, got)
				}
			} else if got.State != want || !slices.Equal(got.Missing(), g.mspIDs()[o.Num:]) {
				t.Fatalf("after %s: %+v", o.MSPID, got)
			}
		}
		v1, err = g.as(t, policyAdmins[last]).Registry(c)
		if err != nil || v1.Version != 1 || v1.Proposal != p.ID || len(v1.Members) != len(g.orgs) {
			t.Fatalf("registry %+v, %v", v1, err)
		}
		hist, err := org1(t).History(c, ledger.KindProposal, p.ID)
		if err != nil || len(hist) != len(g.orgs) {
			t.Fatalf("the proposal's history: %+v, %v", hist, err)
		}
		for i, ch := range hist {
			if ch.Writer.MSP != g.orgs[i].MSPID || ch.Writer.Role != "policyadmin" || ch.Block == 0 {
				t.Errorf("approval %d: %+v", i, ch)
			}
		}
		hist, err = org1(t).History(c, ledger.KindRegistry, ledger.RegistryKey)
		if err != nil || len(hist) != 1 || hist[0].Registry.Version != 1 || hist[0].Writer.MSP != g.orgs[len(g.orgs)-1].MSPID {
			t.Fatalf("the registry's history: %+v, %v", hist, err)
		}
	})

	step("Org2 cannot register a new host claiming Org1's organisation code", func(t *testing.T) {
		for _, who := range []string{"hm6agent", "hadmin-org2"} {
			name := "hm6"
			if who != "hm6agent" {
				name = uniq("o2-claim")
			}
			_, _, err := g.as(t, who).PutHost(c, filter.Host{Name: name, Country: "JP", Organizations: []string{"CompanyA"}})
			wantErr(t, err, ledger.ErrForbidden, "Org2MSP may not claim organisation CompanyA", "registry (version 1)")
			_, err = org1(t).GetHost(c, name)
			wantErr(t, err, ledger.ErrNotFound)
			_, err = org1(t).History(c, ledger.KindHost, name)
			wantErr(t, err, ledger.ErrNotFound)
		}
		// its own code it may
		rec, changed, err := g.as(t, "hm6agent").PutHost(c, filter.Host{Name: "hm6", Country: "JP", Organizations: []string{"CompanyB"}})
		if err != nil || !changed || rec.Writer.MSP != "Org2MSP" {
			t.Fatalf("Org2 claiming CompanyB: %+v %v %v", rec, changed, err)
		}
	})

	var pending ledger.ProposalRecord
	step("a registry change approved by one organisation stays open", func(t *testing.T) {
		var err error
		pending, err = org1(t).Propose(c, ledger.Proposal{Kind: ledger.ProposeRegistry, Registry: g.registry(map[int][]string{1: {"CompanyD"}})})
		if err != nil {
			t.Fatal(err)
		}
		reg, err := org1(t).Registry(c)
		if err != nil || reg.Version != 1 || reg.TxID != v1.TxID {
			t.Fatalf("registry after one approval: %+v, %v", reg, err)
		}
		got, err := org1(t).GetProposal(c, pending.ID)
		if err != nil || got.State != ledger.ProposalOpen || got.Base != 1 || !slices.Equal(got.Missing(), g.mspIDs()[1:]) {
			t.Fatalf("proposal %+v, %v", got, err)
		}
		open, err := g.as(t, policyAdmins[2]).ListProposals(c)
		if err != nil || len(open) != 1 || open[0].ID != pending.ID {
			t.Fatalf("open proposals %+v, %v", open, err)
		}
		// the proposer cannot approve twice, nor can a vm manager
		_, err = org1(t).Approve(c, pending.ID)
		wantErr(t, err, ledger.ErrInvalid, "already approved by Org1MSP")
		_, err = g.as(t, "vmm-org2").Approve(c, pending.ID)
		wantErr(t, err, ledger.ErrForbidden, "role is vmmanager")
		// Org1 still may not claim CompanyD
		_, _, err = g.as(t, "hadmin").PutHost(c, filter.Host{Name: uniq("o1-d"), Country: "JP", Organizations: []string{"CompanyD"}})
		wantErr(t, err, ledger.ErrForbidden, "CompanyD")
	})

	step("an approval of a proposal made stale by another is refused", func(t *testing.T) {
		rival, err := g.as(t, policyAdmins[2]).Propose(c, ledger.Proposal{Kind: ledger.ProposeRegistry, Registry: g.registry(map[int][]string{2: {"CompanyE"}})})
		if err != nil || rival.Base != 1 {
			t.Fatalf("rival %+v, %v", rival, err)
		}
		for _, o := range g.orgs[1:] {
			if _, err := g.as(t, policyAdmins[o.Num]).Approve(c, pending.ID); err != nil {
				t.Fatalf("%s approves: %v", o.MSPID, err)
			}
		}
		v2, err := org1(t).Registry(c)
		if err != nil || v2.Version != 2 || v2.Proposal != pending.ID || !slices.Contains(v2.Members["Org1MSP"].Organizations, "CompanyD") {
			t.Fatalf("registry %+v, %v", v2, err)
		}
		_, err = org1(t).Approve(c, rival.ID)
		wantErr(t, err, ledger.ErrInvalid, "stale", "version 1", "now at version 2")
		got, err := org1(t).GetProposal(c, rival.ID)
		if err != nil || got.State != ledger.ProposalStale || len(got.Approvals) != 1 {
			t.Fatalf("rival after the stale approval: %+v, %v", got, err)
		}
		reg, err := org1(t).Registry(c)
		if err != nil || reg.Version != 2 || reg.TxID != v2.TxID {
			t.Fatalf("registry after the stale approval: %+v, %v", reg, err)
		}
		open, err := org1(t).ListProposals(c)
		if err != nil || len(open) != 0 {
			t.Fatalf("open proposals %+v, %v", open, err)
		}
		// now Org1 may claim CompanyD
		if _, _, err := g.as(t, "hadmin").PutHost(c, filter.Host{Name: uniq("o1-d"), Country: "JP", Organizations: []string{"CompanyD"}}); err != nil {
			t.Fatal(err)
		}
	})

	var claimed ledger.HostRecord
	step("a host's facts are attested by another organisation's attestor only", func(t *testing.T) {
		agent := func(t testing.TB) *fabric.Ledger { return g.as(t, "hm1agent") }
		var err error
		claimed, _, err = agent(t).PutHost(c, filter.Host{Name: "hm1", Country: "JP", Organizations: []string{"CompanyA"}, Region: runID})
		if err != nil {
			t.Fatal(err)
		}
		if claimed.Attested() {
			t.Fatalf("a new record is attested: %+v", claimed)
		}
		_, _, err = agent(t).AttestHost(c, "hm1", "JP", []string{"CompanyA"})
		wantErr(t, err, ledger.ErrForbidden, "attestor", "role is hostagent")
		_, _, err = g.as(t, "attestor").AttestHost(c, "hm1", "JP", []string{"CompanyA"})
		wantErr(t, err, ledger.ErrForbidden, "claimed through Org1MSP", "same organisation")
		_, _, err = g.as(t, "attestor-org2").AttestHost(c, "hm1", "GB", []string{"CompanyA"})
		wantErr(t, err, ledger.ErrInvalid, "attest the facts as they are now")
		got, err := agent(t).GetHost(c, "hm1")
		if err != nil || got.TxID != claimed.TxID || got.Attestation != nil {
			t.Fatalf("hm1 after the refused attestations: %+v, %v", got, err)
		}

		rec, changed, err := g.as(t, "attestor-org2").AttestHost(c, "hm1", "jp", []string{"CompanyA"})
		if err != nil || !changed || !rec.Attested() {
			t.Fatalf("attested %+v %v %v", rec, changed, err)
		}
		if rec.Writer != claimed.Writer || rec.Attestation.Writer.MSP != "Org2MSP" || rec.Attestation.Writer.Role != "attestor" || rec.Region != runID {
			t.Fatalf("attested record %+v (attestation %+v)", rec, rec.Attestation)
		}
		// again: nothing submitted
		again, changed, err := g.as(t, "attestor-org2").AttestHost(c, "hm1", "JP", []string{"CompanyA"})
		if err != nil || changed || again.TxID != rec.TxID {
			t.Fatalf("attesting again: %+v %v %v", again, changed, err)
		}
	})

	step("a country change makes the record claimed, and it is attested again", func(t *testing.T) {
		agent := func(t testing.TB) *fabric.Ledger { return g.as(t, "hm1agent") }
		moved, changed, err := agent(t).PutHost(c, filter.Host{Name: "hm1", Country: "GB", Organizations: []string{"CompanyA"}, Region: runID})
		if err != nil || !changed || moved.Attested() || moved.Attestation != nil {
			t.Fatalf("moved %+v %v %v", moved, changed, err)
		}
		reattestor := attestors[last]
		_, _, err = g.as(t, reattestor).AttestHost(c, "hm1", "JP", []string{"CompanyA"})
		wantErr(t, err, ledger.ErrInvalid, "GB CompanyA")
		rec, changed, err := g.as(t, reattestor).AttestHost(c, "hm1", "GB", []string{"CompanyA"})
		if err != nil || !changed || !rec.Attested() || rec.Country != "GB" || rec.Attestation.Writer.MSP != g.orgs[len(g.orgs)-1].MSPID {
			t.Fatalf("re-attested %+v %v %v", rec, changed, err)
		}
		hist, err := agent(t).History(c, ledger.KindHost, "hm1")
		if err != nil {
			t.Fatal(err)
		}
		var ops []string
		for _, ch := range hist {
			ops = append(ops, fmt.Sprintf("%s:%s:%s", ch.Op, writerName(ch.Writer), ch.Host.Country))
		}
		want := []string{"put:hm1agent:JP", "attest:attestor-org2:JP", "put:hm1agent:GB", "attest:" + reattestor + ":GB"}
		if !slices.Equal(ops, want) {
			t.Errorf("hm1's history %v, want %v", ops, want)
		}
	})

	project := uniq("proj")
	step("a project is bound by its organisation first, and another cannot take it", func(t *testing.T) {
		vmm1 := func(t testing.TB) *fabric.Ledger { return g.as(t, "vmm1") }
		vmm2 := func(t testing.TB) *fabric.Ledger { return g.as(t, "vmm-org2") }
		subject := filter.ProjectSubject(project)
		jp := filter.Terms{Allow: []filter.Rule{{Country: "JP", Organization: "*"}}}
		_, _, err := vmm1(t).PutRegulation(c, subject, jp)
		wantErr(t, err, ledger.ErrForbidden, "bound to no organisation")

		rec, changed, err := org1(t).BindProject(c, project)
		if err != nil || !changed || rec.MSP != "Org1MSP" || rec.Version != 1 {
			t.Fatalf("bound %+v %v %v", rec, changed, err)
		}
		if _, changed, err := org1(t).BindProject(c, project); err != nil || changed {
			t.Fatalf("binding again: changed %v, %v", changed, err)
		}
		_, _, err = g.as(t, policyAdmins[2]).BindProject(c, project)
		wantErr(t, err, ledger.ErrForbidden, "bound to Org1MSP", "proposal")
		_, _, err = vmm2(t).PutRegulation(c, subject, jp)
		wantErr(t, err, ledger.ErrForbidden, "bound to Org1MSP", "Org2MSP may not regulate it")
		_, err = vmm2(t).GetRegulation(c, subject)
		wantErr(t, err, ledger.ErrNotFound)
		b, err := vmm2(t).GetBinding(c, project)
		if err != nil || b.MSP != "Org1MSP" || b.TxID != rec.TxID {
			t.Fatalf("binding after the attempts: %+v, %v", b, err)
		}
		if _, _, err := vmm1(t).PutRegulation(c, subject, jp); err != nil {
			t.Fatalf("Org1's vm manager: %v", err)
		}
	})

	step("a project moves when every organisation approved", func(t *testing.T) {
		p, err := g.as(t, policyAdmins[2]).Propose(c, ledger.Proposal{Kind: ledger.ProposeBinding, Binding: &ledger.Binding{Project: project, MSP: "Org2MSP"}})
		if err != nil || !slices.Equal(p.Needed, g.mspIDs()) {
			t.Fatalf("proposal %+v, %v", p, err)
		}
		for _, o := range g.orgs {
			if o.Num == 2 {
				continue
			}
			b, err := org1(t).GetBinding(c, project)
			if err != nil || b.MSP != "Org1MSP" {
				t.Fatalf("moved before every approval: %+v, %v", b, err)
			}
			if _, err := g.as(t, policyAdmins[o.Num]).Approve(c, p.ID); err != nil {
				t.Fatalf("%s approves: %v", o.MSPID, err)
			}
		}
		b, err := org1(t).GetBinding(c, project)
		if err != nil || b.MSP != "Org2MSP" || b.Version != 2 || b.Proposal != p.ID {
			t.Fatalf("binding %+v, %v", b, err)
		}
		hist, err := org1(t).History(c, ledger.KindBinding, project)
		if err != nil || len(hist) != 2 || hist[0].Binding.MSP != "Org1MSP" || hist[1].Binding.MSP != "Org2MSP" {
			t.Fatalf("the binding's history %+v, %v", hist, err)
		}
	})

	step("a regulation requiring attestation denies the claimed host", func(t *testing.T) {
		vm := vmSubject(900 + len(g.orgs))
		terms := filter.Terms{Allow: []filter.Rule{{Country: "*", Organization: "*"}}, RequireAttested: true}
		if _, _, err := g.as(t, "vmm1").PutRegulation(c, vm, terms); err != nil {
			t.Fatal(err)
		}
		res, err := org1(t).Check(c, vm.ID(), "", []string{"hm1", "hm6"}, filter.Options{})
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]filter.Reason{}
		for _, v := range res.Verdicts {
			got[v.Host] = v.Reason
		}
		if got["hm1"] != "" || got["hm6"] != filter.HostUnattested {
			t.Errorf("verdicts %v: want hm1 allowed (attested), hm6 %s", got, filter.HostUnattested)
		}
	})

	// one event per write, of each kind, arrived on the other organisation's peer
	deadline := time.Now().Add(30 * time.Second)
	for {
		evMu.Lock()
		kinds := map[string]int{}
		for _, ev := range seen {
			kinds[string(ev.Kind)+"."+string(ev.Op)]++
		}
		evMu.Unlock()
		ok := kinds["registry.put"] == 2 && kinds["binding.put"] == 2 && kinds["host.attest"] == 2 && kinds["proposal.put"] >= 2
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("events seen: %v", kinds)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestGovernanceRefusalsNeedNoNetworkState: refusals the rules make before
// reading anything, on the suite's network (no registry is put in force).
func TestGovernanceRefusalsNeedNoNetworkState(t *testing.T) {
	c := ctx(t)
	l := connect(t, "vmm1")
	_, err := l.Propose(c, ledger.Proposal{Kind: ledger.ProposeRegistry, Registry: &ledger.Registry{
		Members: map[string]ledger.Member{"Org1MSP": {Organizations: []string{"*"}}, "Org2MSP": {Organizations: []string{"*"}}}}})
	wantErr(t, err, ledger.ErrForbidden, "policyadmin", "role is vmmanager")
	_, err = l.Approve(c, "0000")
	wantErr(t, err, ledger.ErrNotFound, "no proposal")
	_, err = l.Approve(c, "../registry")
	wantErr(t, err, ledger.ErrInvalid, "proposal id")
	_, _, err = l.AttestHost(c, "no-such-host-"+runID, "JP", []string{"CompanyA"})
	if !errors.Is(err, ledger.ErrNotFound) {
		t.Fatalf("attesting an unknown host: %v", err)
	}
}
