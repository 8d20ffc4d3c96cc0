// Package access holds the one set of rules that says who may write what in
// ledgerfence's ledger. The chaincode applies them to the submitter of a
// Fabric transaction (its certificate's MSP, identity and ledgerfence.role
// and ledgerfence.host attributes); the embedded ledger applies them to the
// holder of a writer token (package tokens), so that both backends refuse
// the same writes with the same words.
//
// The rules:
//   - a host agent (RoleHostAgent) writes only the host its credential names;
//   - a host admin (RoleHostAdmin) writes any host of its organisation;
//   - no host registered through one organisation (MSP) may be taken over
//     through another;
//   - a vmmanager or a policyadmin creates a regulation, and its creator owns
//     it;
//   - only the owner, or a policyadmin of the owner's organisation, changes or
//     deletes it;
//   - the registry, proposals, project bindings and attestations follow the
//     rules of governance.go;
//   - a recorder records placements from Nova's notifications, a host agent
//     those it sees on its own host (MayRecordPlacement);
//   - every other write is refused: an identity without a role, of a role
//     that may not make it, or of a role this package does not know.
//
// The embedded ledger has one organisation, whose MSP is "": an identity of
// MSP "" is of the organisation of every record, so there only the host a
// host agent is bound to and a regulation's ownership tell writers apart.
// Fabric never has an identity of MSP "" (the chaincode refuses one).
//
// Every refusal matches ledger.ErrForbidden (errors.Is) and is a
// *ledger.Error whose Msg says which rule refused and why, safe to show to the
// writer.
package access

import (
	"context"
	"fmt"
	"strings"

	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
)

// Roles. A Fabric identity carries one in its certificate's ledgerfence.role
// attribute, a writer token of the embedded ledger in its record.
const (
	// RoleHostAgent writes only the host its credential names (Identity.Host).
	RoleHostAgent = "hostagent"
	// RoleHostAdmin writes any host of its organisation.
	RoleHostAdmin = "hostadmin"
	// RoleVMManager creates regulations and changes or deletes those it owns.
	RoleVMManager = "vmmanager"
	// RolePolicyAdmin creates regulations and changes or deletes any
	// regulation owned by an identity of its organisation.
	RolePolicyAdmin = "policyadmin"
	// RoleAttestor attests the facts of host records claimed by another
	// organisation (MayAttest), and writes nothing else.
	RoleAttestor = "attestor"
	// RoleRecorder writes placements as Nova's notifications tell them
	// (witness nova), and nothing else.
	RoleRecorder = "recorder"
)

// RoleOperator is the role recorded for the operator's own writes on the
// embedded ledger (filterd's admin token, ledgerctl on the ledger's file),
// which the embedded ledger makes without asking the rules. No credential of
// a writer carries it, and the rules refuse it like any role they do not
// know.
const RoleOperator = "operator"

// Roles lists every role the rules know, in the order above.
func Roles() []string {
	return []string{RoleHostAgent, RoleHostAdmin, RoleVMManager, RolePolicyAdmin, RoleAttestor, RoleRecorder}
}

// KnownRole reports whether role is one of Roles.
func KnownRole(role string) bool {
	for _, r := range Roles() {
		if r == role {
			return true
		}
	}
	return false
}

// Identity is a writer as the rules see it: its organisation (MSP, "" on the
// embedded ledger), its identity within it, the role its credential carries
// ("" for none) and, for a host agent, the host its credential names.
type Identity struct {
	MSP  string
	ID   string
	Role string
	Host string
}

// Writer is the identity as a record keeps it: MSP, ID and role.
func (i Identity) Writer() ledger.Writer { return ledger.Writer{MSP: i.MSP, ID: i.ID, Role: i.Role} }

// String is the identity's MSP/ID, the form of a regulation's owner.
func (i Identity) String() string { return i.Writer().String() }

func forbid(format string, args ...any) error {
	return ledger.Errorf(ledger.ErrForbidden, nil, fmt.Sprintf(format, args...))
}

var errNoName = ledger.Errorf(ledger.ErrForbidden, nil, "this credential names no identity")

func roleName(r string) string {
	if r == "" {
		return "none"
	}
	return r
}

// MayWriteHost says whether who may write host h, whose stored record is old
// when exists, under the registry in force (reg; nil for none, MayClaim). A
// write that would change nothing is asked about too: an identity that may
// not write a record learns nothing from its no-op.
func MayWriteHost(who Identity, h filter.Host, old ledger.HostRecord, exists bool, reg *ledger.RegistryRecord) error {
	name := h.Name
	if who.ID == "" {
		return errNoName
	}
	switch who.Role {
	case RoleHostAgent:
		if who.Host == "" {
			return forbid("a host agent's credential must name its host; this one names none")
		}
		if who.Host != name {
			return forbid("a host agent may write only its own host: this credential names %s, not %s", who.Host, name)
		}
	case RoleHostAdmin:
	default:
		return forbid("writing a host needs the role %s or %s; this identity's role is %s",
			RoleHostAgent, RoleHostAdmin, roleName(who.Role))
	}
	if exists && old.Writer.MSP != who.MSP {
		return forbid("host %s was registered through %s; %s may not take it over", name, old.Writer.MSP, who.MSP)
	}
	return MayClaim(who, h, reg)
}

// MayWriteRegulation says whether who may put terms as the regulation of
// subject: create it when none is in force (exists false; a deleted one is
// none), or change old. binding is the binding of the project concerned
// (BindingSubject; nil for none): a project's regulation is created only by
// its organisation, and a VM's names only a project of its writer's
// organisation or an unbound one.
func MayWriteRegulation(who Identity, subject filter.Subject, terms filter.Terms, old ledger.RegulationRecord, exists bool, binding *ledger.BindingRecord) error {
	if who.ID == "" {
		return errNoName
	}
	if !exists {
		if who.Role != RoleVMManager && who.Role != RolePolicyAdmin {
			return forbid("creating a regulation needs the role %s or %s; this identity's role is %s",
				RoleVMManager, RolePolicyAdmin, roleName(who.Role))
		}
		return mayRegulateProject(who, subject, BindingSubject(subject, terms), binding)
	}
	// A project moved to another organisation: its regulation is that
	// organisation's to change (its policyadmin, or the owner if of it),
	// no longer the old one's.
	if subject.Kind() == filter.KindProject && binding != nil && !sameOrganisation(who, old.Owner) {
		if binding.MSP == who.MSP && who.MSP != "" && who.Role == RolePolicyAdmin {
			return nil
		}
	}
	if subject.Kind() == filter.KindProject && binding != nil && binding.MSP != who.MSP {
		return forbid("project %s is bound to %s; %s may not change its regulation", subject.ID(), mspName(binding.MSP), mspName(who.MSP))
	}
	if err := mayChange(who, subject, old, "change"); err != nil {
		return err
	}
	if subject.Kind() == filter.KindVM && terms.Project != old.Project {
		return mayRegulateProject(who, subject, terms.Project, binding)
	}
	return nil
}

// MayDeleteRegulation says whether who may delete old, the regulation in
// force for subject.
func MayDeleteRegulation(who Identity, subject filter.Subject, old ledger.RegulationRecord) error {
	return mayChange(who, subject, old, "delete")
}

func mayChange(who Identity, subject filter.Subject, old ledger.RegulationRecord, verb string) error {
	if who.ID == "" {
		return errNoName
	}
	if who.String() == old.Owner {
		return nil
	}
	if who.Role == RolePolicyAdmin && sameOrganisation(who, old.Owner) {
		return nil
	}
	org := "its organisation"
	if msp := ownerMSP(old.Owner); msp != "" && who.MSP != "" {
		org = msp
	}
	return forbid("only the owner of the regulation for %s (%s) or a %s of %s may %s it",
		subject, old.Owner, RolePolicyAdmin, org, verb)
}

// ownerMSP is the MSP part of a Fabric owner ("MSP/ID").
func ownerMSP(owner string) string {
	msp, _, _ := strings.Cut(owner, "/")
	return msp
}

// sameOrganisation reports whether who is of the organisation of owner. On
// the embedded ledger (MSP "") there is one organisation, whatever the
// owner's name holds.
func sameOrganisation(who Identity, owner string) bool {
	if who.MSP == "" {
		return true
	}
	return strings.HasPrefix(owner, who.MSP+"/")
}

type identityKey struct{}

// WithIdentity returns a context whose writes are made by who: the embedded
// ledger applies the rules to who and records who.Writer() as the writer.
func WithIdentity(ctx context.Context, who Identity) context.Context {
	return context.WithValue(ctx, identityKey{}, who)
}

// IdentityFrom returns the identity set by WithIdentity, if any.
func IdentityFrom(ctx context.Context) (Identity, bool) {
	who, ok := ctx.Value(identityKey{}).(Identity)
	return who, ok
}

// MayRecordPlacement says whether who may record p (normalised): a recorder
// records what Nova's notifications say (witness nova), a host agent what it
// sees on its own host (witness hostagent). No other role records
// placements, and neither writes anything else of them.
func MayRecordPlacement(who Identity, p ledger.Placement) error {
	if who.ID == "" {
		return errNoName
	}
	switch who.Role {
	case RoleRecorder:
		if p.Witness != ledger.WitnessNova {
			return forbid("a %s records Nova's word (witness %s), not %s's", RoleRecorder, ledger.WitnessNova, p.Witness)
		}
	case RoleHostAgent:
		if p.Witness != ledger.WitnessHostAgent {
			return forbid("a host agent records its own word (witness %s), not %s's", ledger.WitnessHostAgent, p.Witness)
		}
		if who.Host == "" {
			return forbid("a host agent's credential must name its host; this one names none")
		}
		if on := p.Host + p.From; p.Host != who.Host && !(p.Op == ledger.OpGone && p.From == who.Host) {
			return forbid("a host agent records placements on its own host only: this credential names %s, not %s", who.Host, on)
		}
	default:
		return forbid("recording a placement needs the role %s or %s; this identity's role is %s",
			RoleRecorder, RoleHostAgent, roleName(who.Role))
	}
	return nil
}
