// Package accesstest is the one table of who may write what (package
// access's rules, role x action x own or another's record) that every
// backend must agree on, and the runner that plays it against a backend:
// the embedded ledger through filterd's REST API with a writer token per
// identity (cmd/filterd's tests), and the chaincode on a real Fabric network
// with a certificate per identity (tests/integration/fabric). Each case
// asserts the same outcome on both: allowed, or refused with an error
// matching ledger.ErrForbidden that says the same words; a refused write
// changes nothing, and an allowed one is recorded under the credential's
// identity and role.
//
// Every identity is of one organisation: the rules between organisations
// (a host registered through one MSP is not taken over through another) need
// two, which only Fabric has, and its own tests cover them. Where a rule
// tells the embedded ledger's one organisation (MSP "") from an organisation
// with an MSP (an attestor attests another organisation's claim; a project
// is bound before it is regulated), a case says what is refused where the
// identities have an MSP (Case.WithMSP).
//
// Governance's cases (proposals, approvals, bindings, attestations,
// regulations of bound projects) run on a backend whose ledgers implement
// ledger.Governance, and are skipped on one that does not serve them;
// placements' cases (a recorder records Nova's word, a host agent its own
// host's) are skipped on one that does not serve placements, likewise.
package accesstest

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/access"
)

// Identity is one credential of the table: a Fabric identity enrolled
// with ledgerfence.role (and ledgerfence.host), or a writer token of the
// embedded ledger, named Name.
type Identity struct {
	Name string
	Role string
	// Host is the host a host agent's credential names.
	Host string
}

// OwnHost is the host the table's host agent is bound to.
const OwnHost = "acc-own-host"

// The table's identities: one per role, and two that prepare the records the
// others try to write (Registrar registers hosts, Owner creates
// regulations).
var (
	HostAgent   = Identity{Name: "acc-hostagent", Role: access.RoleHostAgent, Host: OwnHost}
	HostAdmin   = Identity{Name: "acc-hostadmin", Role: access.RoleHostAdmin}
	VMManager   = Identity{Name: "acc-vmmanager", Role: access.RoleVMManager}
	PolicyAdmin = Identity{Name: "acc-policyadmin", Role: access.RolePolicyAdmin}
	Attestor    = Identity{Name: "acc-attestor", Role: access.RoleAttestor}
	Recorder    = Identity{Name: "acc-recorder", Role: access.RoleRecorder}

	Registrar = Identity{Name: "acc-registrar", Role: access.RoleHostAdmin}
	Owner     = Identity{Name: "acc-owner", Role: access.RoleVMManager}
)

// Identities are every identity the table uses.
func Identities() []Identity {
	return []Identity{HostAgent, HostAdmin, VMManager, PolicyAdmin, Attestor, Recorder, Registrar, Owner}
}

// Action is the write a case tries.
type Action string

const (
	PutHost          Action = "put host"
	CreateRegulation Action = "create regulation"
	ChangeRegulation Action = "change regulation"
	DeleteRegulation Action = "delete regulation"

	// Governance's actions. Propose: a move of a project that PolicyAdmin
	// bound to the identities' organisation, to another organisation (a
	// proposal that stays open); Approve: such a proposal of PolicyAdmin's;
	// BindProject: a new project; AttestHost: the facts of a host Registrar
	// registered; CreateProjectRegulation: the regulation of a project
	// bound to the identities' organisation (Own) or of an unbound one
	// (None).
	Propose                 Action = "propose"
	Approve                 Action = "approve"
	BindProject             Action = "bind project"
	AttestHost              Action = "attest host"
	CreateProjectRegulation Action = "create project regulation"

	// Placements' actions. RecordNova: a placement of witness nova (Nova's
	// word) of a new VM on OwnHost; RecordSeen: a placement of witness
	// hostagent (the host agent's word) on OwnHost (Own) or on another
	// host (Other).
	RecordNova Action = "record nova placement"
	RecordSeen Action = "record hostagent placement"
)

// Actions lists every action, the table's first four, then governance's.
func Actions() []Action {
	return []Action{PutHost, CreateRegulation, ChangeRegulation, DeleteRegulation, Propose, Approve, BindProject, AttestHost, CreateProjectRegulation,
		RecordNova, RecordSeen}
}

// OtherMSP is the organisation the table's proposals move projects to: no
// identity of the table is of it, so they stay open.
const OtherMSP = "AccOtherMSP"

func places(a Action) bool { return a == RecordNova || a == RecordSeen }

func governs(a Action) bool {
	switch a {
	case Propose, Approve, BindProject, AttestHost, CreateProjectRegulation:
		return true
	}
	return false
}

// Whose is the record a case writes.
type Whose string

const (
	// Own: for a host, the host the credential names (a host agent), or a
	// host no one registered yet (the other roles); for a regulation, one
	// the identity created.
	Own Whose = "own"
	// Other: a host Registrar registered; a regulation Owner created.
	Other Whose = "other's"
	// None: a record that does not exist yet (creating a regulation).
	None Whose = "new"
)

// Case is one row: who tries what on whose record, and whether the rules
// allow it. A refusal's text holds every one of Words.
type Case struct {
	As      Identity
	Action  Action
	Whose   Whose
	Allowed bool
	Words   []string
	// Invalid: the write is refused as invalid (ledger.ErrInvalid), not
	// forbidden, saying Words.
	Invalid bool
	// WithMSP, when set, are the words of the refusal (ErrForbidden) of an
	// allowed case where the identities' organisation has an MSP (Fabric):
	// a rule that tells organisations apart, which on the embedded ledger's
	// one organisation tells identities apart or nothing.
	WithMSP []string
}

// Name names the case, e.g. "hostagent put host other's".
func (c Case) Name() string { return fmt.Sprintf("%s %s %s", c.As.Role, c.Action, c.Whose) }

// Cases is the table.
func Cases() []Case {
	var out []Case
	add := func(as Identity, a Action, w Whose, allowed bool, words ...string) {
		out = append(out, Case{As: as, Action: a, Whose: w, Allowed: allowed, Words: words})
	}
	notOwner := []string{"only the owner", Owner.Name, "may change it"}
	notOwnerDel := []string{"only the owner", Owner.Name, "may delete it"}

	add(HostAgent, PutHost, Own, true)
	add(HostAgent, PutHost, Other, false, "may write only its own host", OwnHost)
	add(HostAgent, CreateRegulation, None, false, "creating a regulation", "role is hostagent")
	add(HostAgent, ChangeRegulation, Other, false, notOwner...)
	add(HostAgent, DeleteRegulation, Other, false, notOwnerDel...)

	add(HostAdmin, PutHost, Own, true)
	add(HostAdmin, PutHost, Other, true)
	add(HostAdmin, CreateRegulation, None, false, "creating a regulation", "role is hostadmin")
	add(HostAdmin, ChangeRegulation, Other, false, notOwner...)
	add(HostAdmin, DeleteRegulation, Other, false, notOwnerDel...)

	for _, id := range []Identity{VMManager, PolicyAdmin} {
		add(id, PutHost, Own, false, "writing a host needs", "role is "+id.Role)
		add(id, PutHost, Other, false, "role is "+id.Role)
		add(id, CreateRegulation, None, true)
		add(id, ChangeRegulation, Own, true)
		add(id, DeleteRegulation, Own, true)
	}
	add(VMManager, ChangeRegulation, Other, false, notOwner...)
	add(VMManager, DeleteRegulation, Other, false, notOwnerDel...)
	add(PolicyAdmin, ChangeRegulation, Other, true)
	add(PolicyAdmin, DeleteRegulation, Other, true)

	for _, id := range []Identity{Attestor, Recorder} {
		add(id, PutHost, Own, false, "role is "+id.Role)
		add(id, PutHost, Other, false, "role is "+id.Role)
		add(id, CreateRegulation, None, false, "role is "+id.Role)
		add(id, ChangeRegulation, Other, false, notOwner...)
		add(id, DeleteRegulation, Other, false, notOwnerDel...)
	}

	// Governance.
	for _, id := range []Identity{HostAgent, HostAdmin, VMManager, PolicyAdmin, Attestor, Recorder} {
		policy := id.Role == access.RolePolicyAdmin
		role := "role is " + id.Role
		if policy {
			add(id, Propose, None, true)
			add(id, BindProject, None, true)
			out = append(out, Case{As: id, Action: Approve, Whose: Other, Invalid: true, Words: []string{"already approved"}})
		} else {
			add(id, Propose, None, false, "proposing a change needs the role policyadmin", role)
			add(id, BindProject, None, false, "binding a project needs the role policyadmin", role)
			add(id, Approve, Other, false, "approving a proposal needs the role policyadmin", role)
		}
		if id.Role == access.RoleAttestor {
			out = append(out, Case{As: id, Action: AttestHost, Whose: Other, Allowed: true,
				WithMSP: []string{"an attestor of the same organisation may not attest them"}})
		} else {
			add(id, AttestHost, Other, false, "attesting a host needs the role attestor", role)
		}
		if policy || id.Role == access.RoleVMManager {
			add(id, CreateProjectRegulation, Own, true)
			out = append(out, Case{As: id, Action: CreateProjectRegulation, Whose: None, Allowed: true,
				WithMSP: []string{"is bound to no organisation", "binds it first"}})
		} else {
			add(id, CreateProjectRegulation, Own, false, "creating a regulation", role)
			add(id, CreateProjectRegulation, None, false, "creating a regulation", role)
		}
	}

	// Placements: a recorder records Nova's word and nothing else, a host
	// agent its own word on its own host.
	for _, id := range []Identity{HostAgent, HostAdmin, VMManager, PolicyAdmin, Attestor, Recorder} {
		role := "role is " + id.Role
		switch id.Role {
		case access.RoleRecorder:
			add(id, RecordNova, None, true)
			add(id, RecordSeen, Own, false, "records Nova's word", "not hostagent's")
			add(id, RecordSeen, Other, false, "records Nova's word")
		case access.RoleHostAgent:
			add(id, RecordNova, None, false, "records its own word", "not nova's")
			add(id, RecordSeen, Own, true)
			add(id, RecordSeen, Other, false, "records placements on its own host only", OwnHost)
		default:
			need := "recording a placement needs the role recorder or hostagent"
			add(id, RecordNova, None, false, need, role)
			add(id, RecordSeen, Own, false, need, role)
			add(id, RecordSeen, Other, false, need, role)
		}
	}
	return out
}

// Backend is a ledger the table runs against.
type Backend interface {
	// As is the ledger as identity id writes to it, with its credential.
	As(t testing.TB, id Identity) ledger.Ledger
	// IsWriter reports whether w, the writer of a record, names id (its
	// role is checked by Run).
	IsWriter(id Identity, w ledger.Writer) bool
}

// Run plays every case against b, each as a subtest. Hosts and VMs are
// new to each run, so that a long-lived network can run it again. Every
// identity's ledger is opened first, with t, and serves every case.
func Run(t *testing.T, ctx context.Context, b Backend) {
	run := randomHex(5)
	ledgers := map[string]ledger.Ledger{}
	for _, id := range Identities() {
		ledgers[id.Name] = b.As(t, id)
	}
	as := func(id Identity) ledger.Ledger { return ledgers[id.Name] }
	env := probe(t, ctx, as, run)
	for i, c := range Cases() {
		t.Run(c.Name(), func(t *testing.T) {
			if governs(c.Action) && env.noGovernance != "" {
				t.Skip(env.noGovernance)
			}
			if places(c.Action) && env.noPlacements != "" {
				t.Skip(env.noPlacements)
			}
			runCase(t, ctx, b, as(c.As), as, c, fmt.Sprintf("%s-%d", run, i), env)
		})
	}
}

// environment is what Run learns of the backend before the cases.
type environment struct {
	// msp is the organisation of the table's identities ("" on the
	// embedded ledger).
	msp string
	// noGovernance says why governance's cases are skipped ("" to run
	// them).
	noGovernance string
	// noPlacements says why placements' cases are skipped ("" to run them).
	noPlacements string
}

// probe registers a host as Registrar, whose record tells the identities'
// MSP, and asks whether the backend serves governance.
func probe(t *testing.T, ctx context.Context, as func(Identity) ledger.Ledger, run string) environment {
	t.Helper()
	rec, _, err := as(Registrar).PutHost(ctx, filter.Host{Name: "acc-" + run + "-probe", Country: "JP", Organizations: []string{"CompanyA"}})
	if err != nil {
		t.Fatalf("%s registers a host: %v", Registrar.Name, err)
	}
	env := environment{msp: rec.Writer.MSP}
	if _, err := as(Recorder).Placements(ctx, ledger.PlacementQuery{VM: newVM().ID()}); err != nil {
		if !errors.Is(err, ledger.ErrNotFound) && !strings.Contains(err.Error(), "no such endpoint") {
			t.Fatalf("%s reads placements: %v", Recorder.Name, err)
		}
		env.noPlacements = fmt.Sprintf("the backend does not serve placements: %v", err)
	}
	g, ok := as(PolicyAdmin).(ledger.Governance)
	if !ok {
		env.noGovernance = "the backend's ledger offers no governance (ledger.Governance)"
		return env
	}
	if _, err := g.Registry(ctx); err != nil && !errors.Is(err, ledger.ErrNotFound) || err != nil && strings.Contains(err.Error(), "no such endpoint") {
		env.noGovernance = fmt.Sprintf("the backend does not serve governance: %v", err)
	}
	return env
}

func governance(t *testing.T, l ledger.Ledger) ledger.Governance {
	t.Helper()
	g, ok := l.(ledger.Governance)
	if !ok {
		t.Fatalf("%T is not a ledger.Governance", l)
	}
	return g
}

func runCase(t *testing.T, ctx context.Context, b Backend, l ledger.Ledger, as func(Identity) ledger.Ledger, c Case, uniq string, env environment) {
	if places(c.Action) {
		runPlacementCase(t, ctx, b, l, c, uniq)
		return
	}
	region := "r-" + uniq
	var err error
	var kind ledger.Kind
	var key string
	project := "acc-" + uniq
	bind := func() {
		t.Helper()
		if _, _, err := governance(t, as(PolicyAdmin)).BindProject(ctx, project); err != nil {
			t.Fatalf("%s binds %s: %v", PolicyAdmin.Name, project, err)
		}
	}
	move := func() ledger.ProposalRecord {
		t.Helper()
		bind()
		p, err := governance(t, as(PolicyAdmin)).Propose(ctx, ledger.Proposal{Kind: ledger.ProposeBinding, Binding: &ledger.Binding{Project: project, MSP: OtherMSP}})
		if err != nil {
			t.Fatalf("%s proposes to move %s: %v", PolicyAdmin.Name, project, err)
		}
		return p
	}
	switch c.Action {
	case Propose:
		bind()
		kind = ledger.KindProposal
		var p ledger.ProposalRecord
		p, err = governance(t, l).Propose(ctx, ledger.Proposal{Kind: ledger.ProposeBinding, Binding: &ledger.Binding{Project: project, MSP: OtherMSP}})
		key = p.ID
	case Approve:
		kind, key = ledger.KindProposal, move().ID
		_, err = governance(t, l).Approve(ctx, key)
	case BindProject:
		kind, key = ledger.KindBinding, project
		_, _, err = governance(t, l).BindProject(ctx, project)
	case AttestHost:
		kind, key = ledger.KindHost, "acc-"+uniq
		if _, _, err := as(Registrar).PutHost(ctx, filter.Host{Name: key, Country: "JP", Organizations: []string{"CompanyA"}}); err != nil {
			t.Fatalf("%s registers %s: %v", Registrar.Name, key, err)
		}
		_, _, err = governance(t, l).AttestHost(ctx, key, "JP", []string{"CompanyA"})
	case CreateProjectRegulation:
		if c.Whose == Own {
			bind()
		}
		kind, key = ledger.KindRegulation, string(filter.ProjectSubject(project))
		_, _, err = l.PutRegulation(ctx, filter.Subject(key), filter.Terms{Allow: []filter.Rule{{Country: "JP", Organization: "*"}}})
	case PutHost:
		kind, key = ledger.KindHost, "acc-"+uniq
		switch {
		case c.Whose == Own && c.As.Host != "":
			key = c.As.Host
		case c.Whose == Other:
			if _, _, err := as(Registrar).PutHost(ctx, filter.Host{Name: key, Country: "JP", Organizations: []string{"CompanyA"}}); err != nil {
				t.Fatalf("%s registers %s: %v", Registrar.Name, key, err)
			}
		}
		_, _, err = l.PutHost(ctx, filter.Host{Name: key, Country: "GB", Organizations: []string{"CompanyA"}, Region: region})
	default:
		kind, key = ledger.KindRegulation, string(newVM())
		subject := filter.Subject(key)
		switch c.Whose {
		case Own:
			if _, _, err := l.PutRegulation(ctx, subject, filter.Terms{Allow: []filter.Rule{{Country: "JP", Organization: "*"}}}); err != nil {
				t.Fatalf("%s creates %s: %v", c.As.Name, key, err)
			}
		case Other:
			if _, _, err := as(Owner).PutRegulation(ctx, subject, filter.Terms{Allow: []filter.Rule{{Country: "JP", Organization: "*"}}}); err != nil {
				t.Fatalf("%s creates %s: %v", Owner.Name, key, err)
			}
		}
		if c.Action == DeleteRegulation {
			err = l.DeleteRegulation(ctx, subject)
		} else {
			_, _, err = l.PutRegulation(ctx, subject, filter.Terms{Allow: []filter.Rule{{Country: "GB", Organization: "*"}}})
		}
	}

	var last *ledger.Change
	if key != "" {
		hist, herr := l.History(ctx, kind, key)
		if herr != nil && !errors.Is(herr, ledger.ErrNotFound) {
			t.Fatalf("history of %s %s: %v", kind, key, herr)
		}
		if len(hist) > 0 {
			last = &hist[len(hist)-1]
		}
		if c.Action == Approve && err != nil {
			// PolicyAdmin's proposal is its one change.
			if len(hist) != 1 {
				t.Fatalf("a refused approval is in the history of proposal %s: %+v", key, hist)
			}
			last = nil
		}
	}
	if c.Action == Propose && err != nil {
		list, lerr := governance(t, l).ListProposals(ctx)
		if lerr != nil {
			t.Fatalf("open proposals: %v", lerr)
		}
		for _, p := range list {
			if p.Binding != nil && p.Binding.Project == project {
				t.Fatalf("a refused proposal is open: %+v", p)
			}
		}
	}
	if c.Allowed && len(c.WithMSP) > 0 && env.msp != "" {
		c.Allowed, c.Words = false, c.WithMSP
	}
	if c.Invalid {
		if !errors.Is(err, ledger.ErrInvalid) {
			t.Fatalf("%s: want a refusal matching ledger.ErrInvalid, got %v", c.Name(), err)
		}
		for _, w := range c.Words {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("refusal %q does not say %q", err, w)
			}
		}
		if last != nil && b.IsWriter(c.As, last.Writer) {
			t.Fatalf("a refused write is in the history of %s %s: %+v", kind, key, last)
		}
		return
	}
	if c.Allowed {
		if err != nil {
			t.Fatalf("%s: want allowed, got %v", c.Name(), err)
		}
		if last == nil || !b.IsWriter(c.As, last.Writer) || last.Writer.Role != c.As.Role {
			t.Fatalf("the last change of %s %s is not by %s (%s): %+v", kind, key, c.As.Name, c.As.Role, last)
		}
		return
	}
	if !errors.Is(err, ledger.ErrForbidden) {
		t.Fatalf("%s: want a refusal matching ledger.ErrForbidden, got %v", c.Name(), err)
	}
	for _, w := range c.Words {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("refusal %q does not say %q", err, w)
		}
	}
	if last != nil && b.IsWriter(c.As, last.Writer) {
		t.Fatalf("a refused write is in the history of %s %s: %+v", kind, key, last)
	}
}

// runPlacementCase records the placement of c, a placements' case, as
// c.As, and checks the outcome: allowed, the VM's one placement is the
// identity's, with its role; refused, as c says, the VM has none.
func runPlacementCase(t *testing.T, ctx context.Context, b Backend, l ledger.Ledger, c Case, uniq string) {
	rs := l
	vm := newVM().ID()
	p := ledger.Placement{VM: vm, Host: OwnHost, Op: ledger.OpBoot, At: time.Now().UTC(), Witness: ledger.WitnessNova, Ref: "acc-" + uniq}
	if c.Action == RecordSeen {
		p.Op, p.Witness = ledger.OpObserved, ledger.WitnessHostAgent
		if c.Whose == Other {
			p.Host = "acc-" + uniq
		}
	}
	_, _, err := rs.RecordPlacement(ctx, p)
	got, rerr := rs.Placements(ctx, ledger.PlacementQuery{VM: vm})
	if rerr != nil {
		t.Fatalf("placements of %s: %v", vm, rerr)
	}
	if c.Allowed {
		if err != nil {
			t.Fatalf("%s: want allowed, got %v", c.Name(), err)
		}
		if len(got) != 1 || got[0].Ref != p.Ref || !b.IsWriter(c.As, got[0].Writer) || got[0].Writer.Role != c.As.Role {
			t.Fatalf("the placements of %s are not the one %s (%s) recorded: %+v", vm, c.As.Name, c.As.Role, got)
		}
		return
	}
	if !errors.Is(err, ledger.ErrForbidden) {
		t.Fatalf("%s: want a refusal matching ledger.ErrForbidden, got %v", c.Name(), err)
	}
	for _, w := range c.Words {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("refusal %q does not say %q", err, w)
		}
	}
	if len(got) != 0 {
		t.Fatalf("a refused placement is recorded: %+v", got)
	}
}

// newVM is a VM subject of a random UUID.
func newVM() filter.Subject {
	b := make([]byte, 16)
	rand.Read(b) //nolint:errcheck // crypto/rand.Read does not fail
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return filter.VMSubject(fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:]))
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b) //nolint:errcheck // crypto/rand.Read does not fail
	return fmt.Sprintf("%x", b)
}
