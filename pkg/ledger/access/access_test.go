package access

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
)

var (
	agentHM1   = Identity{MSP: "Org1MSP", ID: "x509::CN=hm1agent", Role: RoleHostAgent, Host: "hm1"}
	agentBare  = Identity{MSP: "Org1MSP", ID: "x509::CN=bare", Role: RoleHostAgent}
	org2HM1    = Identity{MSP: "Org2MSP", ID: "x509::CN=hm1agent", Role: RoleHostAgent, Host: "hm1"}
	hostAdmin1 = Identity{MSP: "Org1MSP", ID: "x509::CN=hadmin", Role: RoleHostAdmin}
	hostAdmin2 = Identity{MSP: "Org2MSP", ID: "x509::CN=hadmin", Role: RoleHostAdmin}
	alice      = Identity{MSP: "Org1MSP", ID: "x509::CN=alice", Role: RoleVMManager}
	bob        = Identity{MSP: "Org1MSP", ID: "x509::CN=bob", Role: RoleVMManager}
	carol      = Identity{MSP: "Org2MSP", ID: "x509::CN=carol", Role: RoleVMManager}
	policy1    = Identity{MSP: "Org1MSP", ID: "x509::CN=policy", Role: RolePolicyAdmin}
	policy2    = Identity{MSP: "Org2MSP", ID: "x509::CN=policy", Role: RolePolicyAdmin}
	attestor   = Identity{MSP: "Org1MSP", ID: "x509::CN=att", Role: RoleAttestor}
	recorder   = Identity{MSP: "Org1MSP", ID: "x509::CN=rec", Role: RoleRecorder}
	noRole     = Identity{MSP: "Org1MSP", ID: "x509::CN=User1"}
	oddRole    = Identity{MSP: "Org1MSP", ID: "x509::CN=odd", Role: "admin"}

	// the embedded ledger's identities: one organisation, MSP ""
	eAgent  = Identity{ID: "agent-hm1", Role: RoleHostAgent, Host: "hm1"}
	eAlice  = Identity{ID: "alice", Role: RoleVMManager}
	eBob    = Identity{ID: "bob", Role: RoleVMManager}
	ePolicy = Identity{ID: "policy", Role: RolePolicyAdmin}
)

// wantForbidden checks err: nil when no words are wanted and allowed, else
// a refusal of kind ErrForbidden whose text holds every word.
func wantForbidden(t *testing.T, err error, allowed bool, words ...string) {
	t.Helper()
	if allowed {
		if err != nil {
			t.Fatalf("want allowed, got %v", err)
		}
		return
	}
	if !errors.Is(err, ledger.ErrForbidden) {
		t.Fatalf("want ErrForbidden, got %v", err)
	}
	var le *ledger.Error
	if !errors.As(err, &le) || le.Msg == "" {
		t.Fatalf("want a *ledger.Error with a message, got %#v", err)
	}
	for _, w := range words {
		if !strings.Contains(le.Msg, w) {
			t.Errorf("message %q does not say %q", le.Msg, w)
		}
	}
}

func hostBy(w Identity) ledger.HostRecord {
	return ledger.HostRecord{Host: filter.Host{Name: "hm1", Country: "JP", Organizations: []string{"CompanyA"}}, Writer: w.Writer()}
}

func TestMayWriteHost(t *testing.T) {
	tests := []struct {
		name    string
		who     Identity
		host    string
		by      *Identity // the stored record's writer; nil: no record
		allowed bool
		words   []string
	}{
		{name: "agent writes its own host", who: agentHM1, host: "hm1", allowed: true},
		{name: "agent updates its own host", who: agentHM1, host: "hm1", by: &agentHM1, allowed: true},
		{name: "agent writes another host", who: agentHM1, host: "hm2", words: []string{"own host", "hm1", "hm2"}},
		{name: "agent bound to no host", who: agentBare, host: "hm1", words: []string{"name its host"}},
		{name: "host admin writes a new host", who: hostAdmin1, host: "hm2", allowed: true},
		{name: "host admin updates a host of its MSP", who: hostAdmin1, host: "hm1", by: &agentHM1, allowed: true},
		{name: "other MSP's agent takes over", who: org2HM1, host: "hm1", by: &agentHM1, words: []string{"registered through Org1MSP", "Org2MSP", "take it over"}},
		{name: "other MSP's host admin takes over", who: hostAdmin2, host: "hm1", by: &hostAdmin1, words: []string{"Org1MSP"}},
		{name: "other MSP registers a new host", who: org2HM1, host: "hm1", allowed: true},
		{name: "vm manager", who: alice, host: "hm1", words: []string{"role is vmmanager", "hostagent", "hostadmin"}},
		{name: "policy admin", who: policy1, host: "hm1", words: []string{"role is policyadmin"}},
		{name: "attestor", who: attestor, host: "hm1", words: []string{"role is attestor"}},
		{name: "recorder", who: recorder, host: "hm1", words: []string{"role is recorder"}},
		{name: "no role", who: noRole, host: "hm1", words: []string{"role is none"}},
		{name: "unknown role", who: oddRole, host: "hm1", words: []string{"role is admin"}},
		{name: "operator role on a credential", who: Identity{MSP: "Org1MSP", ID: "x509::CN=op", Role: RoleOperator}, host: "hm1", words: []string{"role is operator"}},
		{name: "no name", who: Identity{MSP: "Org1MSP", Role: RoleHostAdmin}, host: "hm1", words: []string{"names no identity"}},
		{name: "embedded agent, its host", who: eAgent, host: "hm1", by: &eAgent, allowed: true},
		{name: "embedded agent, another host", who: eAgent, host: "hm2", words: []string{"hm1", "hm2"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var old ledger.HostRecord
			if tc.by != nil {
				old = hostBy(*tc.by)
			}
			wantForbidden(t, MayWriteHost(tc.who, filter.Host{Name: tc.host, Country: "JP", Organizations: []string{"CompanyA"}}, old, tc.by != nil, nil), tc.allowed, tc.words...)
		})
	}
}

func TestMayWriteAndDeleteRegulation(t *testing.T) {
	const vm = filter.Subject("vm:0b4e8a4c-6c1e-4a43-9d7e-0a1f2b3c4d5e")
	tests := []struct {
		name    string
		who     Identity
		owner   *Identity // nil: no regulation in force
		allowed bool
		words   []string
	}{
		{name: "vm manager creates", who: alice, allowed: true},
		{name: "policy admin creates", who: policy2, allowed: true},
		{name: "host agent creates", who: agentHM1, words: []string{"creating a regulation", "vmmanager", "policyadmin", "role is hostagent"}},
		{name: "host admin creates", who: hostAdmin1, words: []string{"role is hostadmin"}},
		{name: "attestor creates", who: attestor, words: []string{"role is attestor"}},
		{name: "recorder creates", who: recorder, words: []string{"role is recorder"}},
		{name: "no role creates", who: noRole, words: []string{"role is none"}},
		{name: "owner", who: alice, owner: &alice, allowed: true},
		{name: "second vm manager", who: bob, owner: &alice, words: []string{"only the owner", "CN=alice", string(vm), "policyadmin of Org1MSP"}},
		{name: "other MSP's vm manager", who: carol, owner: &alice, words: []string{"only the owner"}},
		{name: "policy admin of the owner's MSP", who: policy1, owner: &alice, allowed: true},
		{name: "policy admin of another MSP", who: policy2, owner: &alice, words: []string{"policyadmin of Org1MSP"}},
		{name: "host agent", who: agentHM1, owner: &alice, words: []string{"only the owner"}},
		{name: "a vm manager that owned it once, now a host agent", who: Identity{MSP: "Org1MSP", ID: alice.ID, Role: RoleHostAgent, Host: "hm1"}, owner: &alice, allowed: true},
		{name: "same name in another MSP", who: Identity{MSP: "Org2MSP", ID: alice.ID, Role: RoleVMManager}, owner: &alice, words: []string{"only the owner"}},
		{name: "embedded owner", who: eAlice, owner: &eAlice, allowed: true},
		{name: "embedded second vm manager", who: eBob, owner: &eAlice, words: []string{"only the owner", "(alice)", "policyadmin of its organisation"}},
		{name: "embedded policy admin", who: ePolicy, owner: &eAlice, allowed: true},
		{name: "embedded policy admin, owner named with a slash", who: ePolicy, owner: &Identity{ID: "hostagent/hm1"}, allowed: true},
		{name: "embedded host agent", who: eAgent, owner: &eAlice, words: []string{"only the owner"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var old ledger.RegulationRecord
			if tc.owner != nil {
				old = ledger.RegulationRecord{Regulation: filter.Regulation{Subject: vm, Owner: tc.owner.String(), Version: 1}}
			}
			wantForbidden(t, MayWriteRegulation(tc.who, vm, filter.Terms{}, old, tc.owner != nil, nil), tc.allowed, tc.words...)
			if tc.owner != nil {
				err := MayDeleteRegulation(tc.who, vm, old)
				wantForbidden(t, err, tc.allowed, tc.words...)
				if err != nil && !strings.Contains(err.Error(), "may delete it") {
					t.Errorf("delete refusal %q does not say delete", err)
				}
			}
		})
	}
}

func TestIdentity(t *testing.T) {
	if got := agentHM1.Writer(); got != (ledger.Writer{MSP: "Org1MSP", ID: "x509::CN=hm1agent", Role: RoleHostAgent}) {
		t.Errorf("writer %+v", got)
	}
	if agentHM1.String() != "Org1MSP/x509::CN=hm1agent" || eAlice.String() != "alice" {
		t.Errorf("strings %q %q", agentHM1, eAlice)
	}
	ctx := WithIdentity(context.Background(), eAgent)
	if got, ok := IdentityFrom(ctx); !ok || got != eAgent {
		t.Errorf("from context: %+v %v", got, ok)
	}
	if _, ok := IdentityFrom(context.Background()); ok {
		t.Error("an identity in a bare context")
	}
	for _, r := range Roles() {
		if !KnownRole(r) {
			t.Errorf("role %s unknown", r)
		}
	}
	if KnownRole("") || KnownRole("admin") || KnownRole(RoleOperator) || len(Roles()) != 6 {
		t.Errorf("roles %v", Roles())
	}
}
