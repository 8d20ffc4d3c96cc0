package ledger

import (
	"context"
	"slices"
	"time"

	"github.com/ledgerfence/ledgerfence/pkg/filter"
)

// Governance: who may claim which organisation codes (the registry), which
// organisation a project belongs to (bindings), changes to either that every
// organisation approves (proposals), and a second organisation's attestation
// of a host's facts. Package access holds the rules; the chaincode and the
// embedded ledger apply them.

// More kinds of records and events.
const (
	// KindRegistry: the one registry record (key RegistryKey).
	KindRegistry Kind = "registry"
	// KindProposal: a proposal, by its id.
	KindProposal Kind = "proposal"
	// KindBinding: a project's binding, by the project id.
	KindBinding Kind = "binding"
)

// RegistryKey is the key of the registry's record and events.
const RegistryKey = "registry"

// OpAttest is the op of a host's event when an attestation was recorded.
const OpAttest Op = "attest"

// Member is what one organisation (MSP) may claim on host records.
type Member struct {
	// Organizations are the organisation codes its writers may name on a
	// host record; "*" for any.
	Organizations []string `json:"organizations"`
	// HostPatterns, when not empty, are the host names (path.Match
	// patterns) its writers may register.
	HostPatterns []string `json:"host_patterns,omitempty"`
}

// Registry says which MSP may claim which organisation codes, and whether
// every regulation requires attested host facts. The embedded ledger's one
// organisation is the member "".
type Registry struct {
	Members         map[string]Member `json:"members"`
	RequireAttested bool              `json:"require_attested,omitempty"`
}

// RegistryRecord is the registry in force, with the proposal that made it.
type RegistryRecord struct {
	Registry
	// Version counts the registries in force, from 1.
	Version   uint64    `json:"version"`
	Proposal  string    `json:"proposal"`
	TxID      string    `json:"tx_id"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Binding says which organisation (MSP) a project belongs to: only that
// organisation's writers create the project's regulation.
type Binding struct {
	Project string `json:"project"`
	MSP     string `json:"msp"`
}

// BindingRecord is a binding in force. Proposal is empty for a first
// binding, the approved proposal for a move.
type BindingRecord struct {
	Binding
	Version   uint64    `json:"version"`
	Writer    Writer    `json:"writer"`
	Proposal  string    `json:"proposal,omitempty"`
	TxID      string    `json:"tx_id"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Proposal kinds.
const (
	ProposeRegistry = "registry"
	ProposeBinding  = "binding"
)

// Proposal is a change that takes effect when every organisation it needs
// has approved it: a new registry, or a project's binding moved to another
// organisation.
type Proposal struct {
	Kind     string    `json:"kind"`
	Registry *Registry `json:"registry,omitempty"`
	Binding  *Binding  `json:"binding,omitempty"`
}

// Approval is one organisation's approval of a proposal (the proposer's is
// the first).
type Approval struct {
	Writer Writer    `json:"writer"`
	TxID   string    `json:"tx_id"`
	At     time.Time `json:"at"`
}

// Proposal states.
const (
	ProposalOpen    = "open"
	ProposalApplied = "applied"
	// ProposalStale: what it would change changed since it was made
	// (another proposal applied first); it can no longer be approved.
	ProposalStale = "stale"
)

// ProposalRecord is a proposal as stored.
type ProposalRecord struct {
	Proposal
	// ID is the transaction id of the proposal.
	ID string `json:"id"`
	// Base is the version of the record it changes when it was made (0: none).
	Base uint64 `json:"base"`
	// Needed are the MSPs whose approval it needs, sorted.
	Needed    []string   `json:"needed"`
	Approvals []Approval `json:"approvals"`
	State     string     `json:"state"`
	UpdatedAt time.Time  `json:"updated_at"`
}

// Approved reports whether msp has approved p.
func (p *ProposalRecord) Approved(msp string) bool {
	for _, a := range p.Approvals {
		if a.Writer.MSP == msp {
			return true
		}
	}
	return false
}

// Missing returns the MSPs whose approval p still needs.
func (p *ProposalRecord) Missing() []string {
	var out []string
	for _, m := range p.Needed {
		if !p.Approved(m) {
			out = append(out, m)
		}
	}
	return out
}

// Attestation is a second organisation's word that a host's country and
// organisations are as recorded.
type Attestation struct {
	Country       string    `json:"country"`
	Organizations []string  `json:"organizations"`
	Writer        Writer    `json:"writer"`
	TxID          string    `json:"tx_id"`
	At            time.Time `json:"at"`
}

// Attested reports whether r's facts, as they are now, are attested: a
// change of country or organisations after the attestation makes the record
// merely claimed again.
func (r *HostRecord) Attested() bool {
	a := r.Attestation
	return a != nil && a.Country == r.Country && slices.Equal(a.Organizations, r.Organizations)
}

// Governance is what a ledger offers besides hosts and regulations: the
// registry, proposals and their approvals, project bindings and
// attestations. Every backend implements it.
type Governance interface {
	// Registry returns the registry in force, or ErrNotFound.
	Registry(ctx context.Context) (RegistryRecord, error)
	// Propose records a proposal, approved by its proposer; it takes effect
	// at once when it needs no other approval.
	Propose(ctx context.Context, p Proposal) (ProposalRecord, error)
	// Approve records the writer's organisation's approval of the proposal
	// id; the last approval needed applies it.
	Approve(ctx context.Context, id string) (ProposalRecord, error)
	// GetProposal returns one proposal, or ErrNotFound.
	GetProposal(ctx context.Context, id string) (ProposalRecord, error)
	// ListProposals returns the open proposals.
	ListProposals(ctx context.Context) ([]ProposalRecord, error)
	// BindProject binds a project to the writer's organisation; binding it
	// again to the same organisation changes nothing.
	BindProject(ctx context.Context, project string) (rec BindingRecord, changed bool, err error)
	// GetBinding returns a project's binding, or ErrNotFound.
	GetBinding(ctx context.Context, project string) (BindingRecord, error)
	// AttestHost records that the writer attests host name's country and
	// organisations, which must be those of its record now.
	AttestHost(ctx context.Context, name, country string, organizations []string) (rec HostRecord, changed bool, err error)
}

// NormalizeAttestation puts an attestation's facts in the form of a host
// record's (filter.NormalizeHost).
func NormalizeAttestation(name, country string, organizations []string) (filter.Host, error) {
	return filter.NormalizeHost(filter.Host{Name: name, Country: country, Organizations: organizations})
}
