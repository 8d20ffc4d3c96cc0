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
// two, which only Fabric has, and its own tests cover them.
package accesstest

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"testing"

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
)

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
	for i, c := range Cases() {
		t.Run(c.Name(), func(t *testing.T) {
			runCase(t, ctx, b, as(c.As), as, c, fmt.Sprintf("%s-%d", run, i))
		})
	}
}

func runCase(t *testing.T, ctx context.Context, b Backend, l ledger.Ledger, as func(Identity) ledger.Ledger, c Case, uniq string) {
	region := "r-" + uniq
	var err error
	var kind ledger.Kind
	var key string
	switch c.Action {
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

	hist, herr := l.History(ctx, kind, key)
	if herr != nil && !errors.Is(herr, ledger.ErrNotFound) {
		t.Fatalf("history of %s %s: %v", kind, key, herr)
	}
	var last *ledger.Change
	if len(hist) > 0 {
		last = &hist[len(hist)-1]
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
