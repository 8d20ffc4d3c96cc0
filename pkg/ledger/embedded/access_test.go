package embedded

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/access"
)

// TestIdentitiesFollowTheRules: a write made by an identity is checked by
// package access and records the identity's ID and role; a refused write
// writes nothing; a write without an identity is the operator's.
func TestIdentitiesFollowTheRules(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	l, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	as := func(id, role, host string) context.Context {
		return access.WithIdentity(context.Background(), access.Identity{ID: id, Role: role, Host: host})
	}
	agent := as("agent-hm1", access.RoleHostAgent, "hm1")
	alice := as("alice", access.RoleVMManager, "")
	bob := as("bob", access.RoleVMManager, "")
	policy := as("policy", access.RolePolicyAdmin, "")
	hm1 := filter.Host{Name: "hm1", Country: "JP", Organizations: []string{"A"}}
	vm := filter.VMSubject("3f0c9a52-6b1e-4d8a-9c1e-2a7b5d4e6f10")
	jp := []filter.Rule{{Country: "JP", Organization: "A"}}
	gb := []filter.Rule{{Country: "GB", Organization: "A"}}

	forbidden := func(err error, words ...string) {
		t.Helper()
		if !errors.Is(err, ledger.ErrForbidden) {
			t.Fatalf("want ErrForbidden, got %v", err)
		}
		for _, w := range words {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%q does not say %q", err, w)
			}
		}
	}
	heightIs := func(want uint64) {
		t.Helper()
		if h, err := l.Height(context.Background()); err != nil || h != want {
			t.Fatalf("height %d (%v), want %d", h, err, want)
		}
	}

	rec, _, err := l.PutHost(agent, hm1)
	if err != nil || rec.Writer != (ledger.Writer{ID: "agent-hm1", Role: access.RoleHostAgent}) {
		t.Fatalf("agent's own host: %+v, %v", rec.Writer, err)
	}
	_, _, err = l.PutHost(agent, filter.Host{Name: "hm2", Country: "JP", Organizations: []string{"A"}})
	forbidden(err, "own host", "hm1", "hm2")
	_, _, err = l.PutHost(alice, hm1) // unchanged, yet refused
	forbidden(err, "role is vmmanager")
	_, _, err = l.PutRegulation(agent, vm, filter.Terms{Allow: jp})
	forbidden(err, "creating a regulation", "role is hostagent")
	heightIs(1)

	reg, _, err := l.PutRegulation(alice, vm, filter.Terms{Allow: jp})
	if err != nil || reg.Owner != "alice" || reg.Writer.Role != access.RoleVMManager {
		t.Fatalf("alice creates: %+v, %v", reg, err)
	}
	_, _, err = l.PutRegulation(bob, vm, filter.Terms{Allow: gb})
	forbidden(err, "only the owner", "(alice)")
	forbidden(l.DeleteRegulation(bob, vm), "only the owner", "may delete it")
	heightIs(2)
	reg, _, err = l.PutRegulation(policy, vm, filter.Terms{Allow: gb})
	if err != nil || reg.Owner != "alice" || reg.Writer.ID != "policy" || reg.Version != 2 {
		t.Fatalf("policy admin changes: %+v, %v", reg, err)
	}
	if err := l.DeleteRegulation(alice, vm); err != nil {
		t.Fatalf("owner deletes: %v", err)
	}
	// the operator (no identity on the context) is checked by no rule
	op := ledger.WithWriter(context.Background(), ledger.Writer{ID: "filterd-admin", Role: access.RoleOperator})
	if _, _, err := l.PutHost(op, filter.Host{Name: "hm2", Country: "GB", Organizations: []string{"A"}}); err != nil {
		t.Fatalf("operator: %v", err)
	}
	heightIs(5)

	hist, err := l.History(context.Background(), ledger.KindRegulation, string(vm))
	if err != nil {
		t.Fatal(err)
	}
	var who []string
	for _, c := range hist {
		who = append(who, string(c.Op)+":"+c.Writer.ID+"/"+c.Writer.Role)
	}
	if got := strings.Join(who, " "); got != "put:alice/vmmanager put:policy/policyadmin delete:alice/vmmanager" {
		t.Errorf("history %s", got)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	// The role is part of an entry's hash: editing it is found.
	ro, err := OpenReadOnly(path)
	if err != nil {
		t.Fatal(err)
	}
	if rep, err := ro.Verify(context.Background()); err != nil || !rep.OK {
		t.Fatalf("verify: %+v, %v", rep, err)
	}
	ro.Close()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(editEntry(2, false, func(e *entry) { e.Writer.Role = access.RolePolicyAdmin })); err != nil {
		t.Fatal(err)
	}
	db.Close()
	ro, err = OpenReadOnly(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if rep, err := ro.Verify(context.Background()); !errors.Is(err, ErrTampered) || rep.BrokenSeq != 2 {
		t.Fatalf("a role edited: %+v, %v", rep, err)
	}
}
