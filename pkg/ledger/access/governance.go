package access

import (
	"errors"
	"fmt"
	"path"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
)

// Governance rules: the registry (which organisation may claim which
// organisation codes on host records), proposals that every organisation
// concerned approves, project bindings and attestations.
//
// The registry in force restricts every host write: its writer's MSP must be
// a member, and each organisation code on the record one the member may
// claim (and the host's name one of its patterns, when it has some). With no
// registry in force nothing is restricted; a network of several
// organisations sets one up before its hosts register (README, "Who may
// claim what").
//
// A change to the registry, or a project's binding moved to another
// organisation, is a proposal: a policyadmin proposes it (its
// organisation's approval), and it takes effect when a policyadmin of every
// organisation it needs has approved it: every member of the registry in
// force and of the one proposed (for a move, also the project's present and
// new organisations). Once a registry is in force, only its members propose.
// A first registry proposed on Fabric must name at least two members, so
// that no organisation sets one up alone. On the embedded ledger, whose one
// organisation is "", a proposal needs no other approval.

// Limits on a registry, so that one stays small enough to read with every
// host write.
const (
	MaxMembers              = 64
	MaxMemberOrganizations  = 1000
	MaxMemberHostPatterns   = 100
	maxMSPLen               = 128
	maxHostPatternLen       = filter.MaxHostNameLen
	minFirstRegistryMembers = 2
)

func invalidf(format string, args ...any) error {
	return ledger.Errorf(ledger.ErrInvalid, nil, fmt.Sprintf(format, args...))
}

// NormalizeRegistry validates r and returns it in canonical form:
// organisation codes and host patterns sorted, without duplicates.
func NormalizeRegistry(r ledger.Registry) (ledger.Registry, error) {
	if len(r.Members) == 0 {
		return ledger.Registry{}, invalidf("registry: at least one member is needed")
	}
	if len(r.Members) > MaxMembers {
		return ledger.Registry{}, invalidf("registry: at most %d members, got %d", MaxMembers, len(r.Members))
	}
	out := ledger.Registry{Members: make(map[string]ledger.Member, len(r.Members)), RequireAttested: r.RequireAttested}
	for msp, m := range r.Members {
		if err := validMSP(msp); err != nil {
			return ledger.Registry{}, err
		}
		if len(m.Organizations) == 0 {
			return ledger.Registry{}, invalidf("registry: member %s: at least one organisation code (or *) is needed", filter.Clip(msp))
		}
		if len(m.Organizations) > MaxMemberOrganizations || len(m.HostPatterns) > MaxMemberHostPatterns {
			return ledger.Registry{}, invalidf("registry: member %s: at most %d organisations and %d host patterns",
				filter.Clip(msp), MaxMemberOrganizations, MaxMemberHostPatterns)
		}
		var nm ledger.Member
		for _, o := range m.Organizations {
			if o != filter.Any {
				h, err := filter.NormalizeHost(filter.Host{Name: "registry", Country: "JP", Organizations: []string{o}})
				if err != nil {
					return ledger.Registry{}, invalidf("registry: member %s: %q is not an organisation code", filter.Clip(msp), filter.Clip(o))
				}
				o = h.Organizations[0]
			}
			nm.Organizations = append(nm.Organizations, o)
		}
		for _, p := range m.HostPatterns {
			if p == "" || len(p) > maxHostPatternLen {
				return ledger.Registry{}, invalidf("registry: member %s: a host pattern is 1 to %d bytes", filter.Clip(msp), maxHostPatternLen)
			}
			if _, err := path.Match(p, ""); err != nil {
				return ledger.Registry{}, invalidf("registry: member %s: host pattern %q: %v", filter.Clip(msp), filter.Clip(p), err)
			}
			nm.HostPatterns = append(nm.HostPatterns, p)
		}
		slices.Sort(nm.Organizations)
		nm.Organizations = slices.Compact(nm.Organizations)
		slices.Sort(nm.HostPatterns)
		nm.HostPatterns = slices.Compact(nm.HostPatterns)
		out.Members[msp] = nm
	}
	return out, nil
}

func validMSP(msp string) error {
	if len(msp) > maxMSPLen {
		return invalidf("registry: an MSP id is at most %d bytes", maxMSPLen)
	}
	for _, c := range msp {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return invalidf("registry: %q is not an MSP id (letters, digits, - _ .)", filter.Clip(msp))
		}
	}
	return nil
}

// MayClaim says whether who may write host h's facts under the registry in
// force (nil: none, and nothing is restricted).
func MayClaim(who Identity, h filter.Host, reg *ledger.RegistryRecord) error {
	if reg == nil {
		return nil
	}
	m, ok := reg.Members[who.MSP]
	if !ok {
		return forbid("organisation %s is not a member of the registry (version %d) and may register no host", mspName(who.MSP), reg.Version)
	}
	if !slices.Contains(m.Organizations, filter.Any) {
		for _, o := range h.Organizations {
			if !slices.Contains(m.Organizations, o) {
				return forbid("%s may not claim organisation %s on a host: the registry (version %d) lets it claim %s",
					mspName(who.MSP), o, reg.Version, strings.Join(m.Organizations, ", "))
			}
		}
	}
	if len(m.HostPatterns) > 0 && !slices.ContainsFunc(m.HostPatterns, func(p string) bool {
		ok, _ := path.Match(p, h.Name)
		return ok
	}) {
		return forbid("%s may not register host %s: the registry (version %d) lets it register %s",
			mspName(who.MSP), h.Name, reg.Version, strings.Join(m.HostPatterns, ", "))
	}
	return nil
}

// MayAttest says whether who may attest the facts of the host whose record
// is rec: an attestor of another organisation than the one that claimed
// them (on the embedded ledger, another identity). facts, the country and
// organisations attested (normalised), must be the record's as they are now.
// Under a registry (reg; nil for none) the attestor's organisation must be
// a member, and the claim one its claimant's organisation may make now: a
// claim made before the registry, or under an older one, that breaks it is
// never attested.
func MayAttest(who Identity, rec ledger.HostRecord, facts filter.Host, reg *ledger.RegistryRecord) error {
	if who.ID == "" {
		return errNoName
	}
	if who.Role != RoleAttestor {
		return forbid("attesting a host needs the role %s; this identity's role is %s", RoleAttestor, roleName(who.Role))
	}
	if who.MSP != "" || rec.Writer.MSP != "" {
		if who.MSP == rec.Writer.MSP {
			return forbid("host %s's facts were claimed through %s; an attestor of the same organisation may not attest them", rec.Name, who.MSP)
		}
	} else if who.ID == rec.Writer.ID {
		return forbid("host %s's facts were claimed by %s; an identity may not attest its own claim", rec.Name, who.ID)
	}
	if facts.Country != rec.Country || !slices.Equal(facts.Organizations, rec.Organizations) {
		return invalidf("host %s's record says %s %s, not %s %s: attest the facts as they are now",
			rec.Name, rec.Country, strings.Join(rec.Organizations, ","), facts.Country, strings.Join(facts.Organizations, ","))
	}
	if reg != nil {
		if _, ok := reg.Members[who.MSP]; !ok {
			return forbid("organisation %s is not a member of the registry (version %d) and may attest no host", mspName(who.MSP), reg.Version)
		}
		claimant := Identity{MSP: rec.Writer.MSP, ID: rec.Writer.ID, Role: rec.Writer.Role}
		if err := MayClaim(claimant, rec.Host, reg); err != nil {
			var le *ledger.Error
			msg := err.Error()
			if errors.As(err, &le) {
				msg = le.Msg
			}
			return forbid("host %s's facts break the registry in force, so they cannot be attested: %s", rec.Name, msg)
		}
	}
	return nil
}

// Attestation returns the attestation of rec by who in transaction txID,
// and whether it changes rec (false when rec's facts are already attested;
// an attestation by another attestor changes nothing the decision sees).
func Attestation(who Identity, rec ledger.HostRecord, txID string, at time.Time) (*ledger.Attestation, bool) {
	if rec.Attested() {
		return rec.Attestation, false
	}
	return &ledger.Attestation{Country: rec.Country, Organizations: slices.Clone(rec.Organizations), Writer: who.Writer(), TxID: txID, At: at}, true
}

// KeepAttestation returns what a host write keeps of the attestation of old:
// all of it when the new facts h have the same country and organisations,
// nothing otherwise (the record is merely claimed again).
func KeepAttestation(old ledger.HostRecord, exists bool, h filter.Host) *ledger.Attestation {
	if !exists || old.Attestation == nil || old.Country != h.Country || !slices.Equal(old.Organizations, h.Organizations) {
		return nil
	}
	return old.Attestation
}

// Propose checks a proposal by who, given the registry in force (nil: none)
// and, for a binding's move, the project's binding now (nil: none). It
// returns the proposal normalised, the MSPs whose approval it needs (sorted)
// and the version of the record it changes (its base).
func Propose(who Identity, p ledger.Proposal, reg *ledger.RegistryRecord, binding *ledger.BindingRecord) (ledger.Proposal, []string, uint64, error) {
	if who.ID == "" {
		return p, nil, 0, errNoName
	}
	if who.Role != RolePolicyAdmin {
		return p, nil, 0, forbid("proposing a change needs the role %s; this identity's role is %s", RolePolicyAdmin, roleName(who.Role))
	}
	needed := map[string]bool{who.MSP: true}
	if reg != nil {
		if _, ok := reg.Members[who.MSP]; !ok {
			return p, nil, 0, forbid("organisation %s is not a member of the registry (version %d); a member proposes the registry that admits it", mspName(who.MSP), reg.Version)
		}
		for msp := range reg.Members {
			needed[msp] = true
		}
	}
	var base uint64
	switch p.Kind {
	case ledger.ProposeRegistry:
		if p.Registry == nil || p.Binding != nil {
			return p, nil, 0, invalidf("a registry proposal carries a registry and nothing else")
		}
		r, err := NormalizeRegistry(*p.Registry)
		if err != nil {
			return p, nil, 0, err
		}
		if reg == nil && who.MSP != "" && len(r.Members) < minFirstRegistryMembers {
			return p, nil, 0, forbid("a first registry must name at least %d organisations, so that none sets it up alone", minFirstRegistryMembers)
		}
		for msp := range r.Members {
			if who.MSP != "" && msp == "" {
				return p, nil, 0, invalidf("registry: an MSP id is needed for every member")
			}
			needed[msp] = true
		}
		p = ledger.Proposal{Kind: p.Kind, Registry: &r}
		if reg != nil {
			base = reg.Version
		}
	case ledger.ProposeBinding:
		if p.Binding == nil || p.Registry != nil {
			return p, nil, 0, invalidf("a binding proposal carries a binding and nothing else")
		}
		project, err := filter.NormalizeProjectID(p.Binding.Project)
		if err != nil {
			return p, nil, 0, invalidf("binding: %v", err)
		}
		if err := validMSP(p.Binding.MSP); err != nil {
			return p, nil, 0, err
		}
		if binding == nil {
			return p, nil, 0, invalidf("project %s is bound to no organisation: a policyadmin of the organisation binds it", project)
		}
		if binding.MSP == p.Binding.MSP {
			return p, nil, 0, invalidf("project %s is already bound to %s", project, mspName(p.Binding.MSP))
		}
		needed[binding.MSP], needed[p.Binding.MSP] = true, true
		p = ledger.Proposal{Kind: p.Kind, Binding: &ledger.Binding{Project: project, MSP: p.Binding.MSP}}
		base = binding.Version
	default:
		return p, nil, 0, invalidf("proposal kind: want %s or %s, got %q", ledger.ProposeRegistry, ledger.ProposeBinding, filter.Clip(p.Kind))
	}
	out := make([]string, 0, len(needed))
	for msp := range needed {
		out = append(out, msp)
	}
	sort.Strings(out)
	return p, out, base, nil
}

// MayApprove says whether who may approve p, given the version now of the
// record p changes (the registry's, or the project's binding's).
func MayApprove(who Identity, p *ledger.ProposalRecord, current uint64) error {
	if who.ID == "" {
		return errNoName
	}
	if who.Role != RolePolicyAdmin {
		return forbid("approving a proposal needs the role %s; this identity's role is %s", RolePolicyAdmin, roleName(who.Role))
	}
	if p.State != ledger.ProposalOpen {
		return invalidf("proposal %s is %s and can no longer be approved", p.ID, p.State)
	}
	if current != p.Base {
		return invalidf("proposal %s is stale: it was made on version %d of what it changes, which is now at version %d; propose again", p.ID, p.Base, current)
	}
	if !slices.Contains(p.Needed, who.MSP) {
		return forbid("proposal %s needs the approval of %s, not of %s", p.ID, strings.Join(p.Needed, ", "), mspName(who.MSP))
	}
	if p.Approved(who.MSP) {
		return invalidf("proposal %s is already approved by %s", p.ID, mspName(who.MSP))
	}
	return nil
}

// MayBindProject says whether who may bind project, whose binding now is
// binding (nil: none), to its own organisation.
func MayBindProject(who Identity, project string, binding *ledger.BindingRecord) error {
	if who.ID == "" {
		return errNoName
	}
	if who.Role != RolePolicyAdmin {
		return forbid("binding a project needs the role %s; this identity's role is %s", RolePolicyAdmin, roleName(who.Role))
	}
	if binding != nil && binding.MSP != who.MSP {
		return forbid("project %s is bound to %s; moving it needs a proposal every organisation approves", project, mspName(binding.MSP))
	}
	return nil
}

// BindingSubject returns the project whose binding rules a regulation of
// subject with terms: the subject's own for project:, the one its terms
// name for vm: ("" for none).
func BindingSubject(subject filter.Subject, terms filter.Terms) string {
	if subject.Kind() == filter.KindProject {
		return subject.ID()
	}
	return terms.Project
}

// mayRegulateProject says whether who may create a regulation concerning
// project (BindingSubject), bound as binding says (nil: none).
func mayRegulateProject(who Identity, subject filter.Subject, project string, binding *ledger.BindingRecord) error {
	if project == "" {
		return nil
	}
	if binding == nil {
		if subject.Kind() == filter.KindProject && who.MSP != "" {
			return forbid("project %s is bound to no organisation: a %s of %s binds it first (ledgerctl project bind)", project, RolePolicyAdmin, who.MSP)
		}
		return nil
	}
	if binding.MSP != who.MSP {
		return forbid("project %s is bound to %s; %s may not regulate it", project, mspName(binding.MSP), mspName(who.MSP))
	}
	return nil
}

func mspName(msp string) string {
	if msp == "" {
		return "the ledger's organisation"
	}
	return msp
}
