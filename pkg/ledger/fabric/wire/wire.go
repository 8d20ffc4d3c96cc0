// Package wire is the ledgerfence chaincode's interface as its clients see
// it: transaction names, the attributes and roles it checks, the shapes of
// its results, the name of its events and the form of its errors.
//
// Records and events are pkg/ledger's JSON types; this package adds only what
// the chaincode and the fabric backend must agree on besides them.
package wire

import (
	"strings"
	"time"

	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/access"
)

// Transaction names.
const (
	TxPutHost          = "PutHost"
	TxGetHost          = "GetHost"
	TxGetHosts         = "GetHosts"
	TxListHosts        = "ListHosts"
	TxPutRegulation    = "PutRegulation"
	TxGetRegulation    = "GetRegulation"
	TxDeleteRegulation = "DeleteRegulation"
	TxLookup           = "Lookup"
	TxCheck            = "Check"
	TxHistory          = "History"

	// Governance (ledger.Governance).
	TxGetRegistry   = "GetRegistry"
	TxPropose       = "Propose"
	TxApprove       = "Approve"
	TxGetProposal   = "GetProposal"
	TxListProposals = "ListProposals"
	TxBindProject   = "BindProject"
	TxGetBinding    = "GetBinding"
	TxAttestHost    = "AttestHost"

	// Residency (ledger.Residency).
	TxRecordPlacement = "RecordPlacement"
	TxPlacements      = "Placements"
)

// Certificate attributes (Fabric CA, put in the enrolment certificate with
// the :ecert suffix) that the chaincode reads.
const (
	AttrRole = "ledgerfence.role"
	AttrHost = "ledgerfence.host"
)

// Roles, the values of AttrRole: package access's, which holds the rules.
const (
	RoleHostAgent   = access.RoleHostAgent
	RoleHostAdmin   = access.RoleHostAdmin
	RoleVMManager   = access.RoleVMManager
	RolePolicyAdmin = access.RolePolicyAdmin
	RoleAttestor    = access.RoleAttestor
	RoleRecorder    = access.RoleRecorder
)

// Limits on the size of one request.
const (
	MaxBatch    = 10000 // hosts or subjects in one GetHosts, Lookup or Check
	MaxPage     = 1000  // hosts in one ListHosts page
	DefaultPage = 100

	// MaxPlacementPage is the most placements one Placements page holds
	// (and keys it reads), about 2 MB of JSON.
	MaxPlacementPage = 2000
)

// PutHostResult is the result of PutHost. Changed is false when the record was
// already as asked: nothing was written and no event was emitted.
type PutHostResult struct {
	Record  ledger.HostRecord `json:"record"`
	Changed bool              `json:"changed"`
}

// PutRegulationResult is the result of PutRegulation, like PutHostResult.
type PutRegulationResult struct {
	Record  ledger.RegulationRecord `json:"record"`
	Changed bool                    `json:"changed"`
}

// LookupResult is the result of Lookup. Missing records are absent.
// RequireAttested is the cloud-wide setting of the registry in force (false
// with none).
type LookupResult struct {
	Regulations     map[filter.Subject]ledger.RegulationRecord `json:"regulations"`
	Hosts           map[string]ledger.HostRecord               `json:"hosts"`
	RequireAttested bool                                       `json:"require_attested,omitempty"`
}

// BindProjectResult is the result of BindProject. Changed is false when the
// project was already bound to the writer's organisation.
type BindProjectResult struct {
	Record  ledger.BindingRecord `json:"record"`
	Changed bool                 `json:"changed"`
}

// AttestHostResult is the result of AttestHost. Changed is false when the
// host's facts, as they are now, were already attested: nothing was written.
type AttestHostResult struct {
	Record  ledger.HostRecord `json:"record"`
	Changed bool              `json:"changed"`
}

// RecordPlacementResult is the result of RecordPlacement. Changed is false
// when the placement (same VM, witness and ref) was recorded before: Record
// is the stored one, nothing was written and no event was emitted.
type RecordPlacementResult struct {
	Record  ledger.PlacementRecord `json:"record"`
	Changed bool                   `json:"changed"`
}

// PlacementQuery is the argument of Placements: the placements of VM, or of
// the VMs of Project (one of them), whose At is in [From, To) (a zero From:
// from the first; a zero To: to the last), one page at a time. After is the
// Next of the previous page ("" for the first); Limit is the page's size, the
// keys it reads, 1 to MaxPlacementPage (0: MaxPlacementPage).
type PlacementQuery struct {
	VM      string    `json:"vm,omitempty"`
	Project string    `json:"project,omitempty"`
	From    time.Time `json:"from,omitzero"`
	To      time.Time `json:"to,omitzero"`
	After   string    `json:"after,omitempty"`
	Limit   int       `json:"limit,omitempty"`
}

// PlacementPage is the result of Placements: the page's placements, ordered
// by VM, At, witness and ref, and Next, the After of the next page ("" when
// there is none). A page of a project's placements may hold fewer than its
// limit, none even, and a Next: it read Limit keys, some out of the period.
type PlacementPage struct {
	Placements []ledger.PlacementRecord `json:"placements"`
	Next       string                   `json:"next,omitempty"`
}

// EventName is the name of the chaincode event of a write: "host.put",
// "host.attest", "regulation.put", "regulation.delete", "registry.put",
// "proposal.put", "binding.put" or "placement.put" (key: the VM's UUID). Its payload is a ledger.Event in JSON,
// without Block (the client knows it from the block). A proposal's approval
// that applies it is one event of the kind it changed (registry or binding)
// that carries the proposal as well.
func EventName(kind ledger.Kind, op ledger.Op) string { return string(kind) + "." + string(op) }

// Error codes. A refused transaction's message is Marker + code + ": " +
// text, so that clients can tell a refusal from a failure and map it to
// pkg/ledger's sentinels.
const (
	Marker       = "ledgerfence/"
	CodeInvalid  = "invalid"
	CodeForbid   = "forbidden"
	CodeNotFound = "not_found"
)

// Error is a refusal by the chaincode.
type Error struct {
	Code string
	Msg  string
}

func (e *Error) Error() string { return Marker + e.Code + ": " + e.Msg }

// ParseError finds a chaincode refusal in msg (which the peer may have
// prefixed, e.g. "chaincode response 500, ..."). ok is false when msg holds
// none.
func ParseError(msg string) (e *Error, ok bool) {
	i := strings.Index(msg, Marker)
	if i < 0 {
		return nil, false
	}
	rest := msg[i+len(Marker):]
	code, text, found := strings.Cut(rest, ": ")
	if !found {
		return nil, false
	}
	switch code {
	case CodeInvalid, CodeForbid, CodeNotFound:
		return &Error{Code: code, Msg: text}, true
	}
	return nil, false
}

// Kind returns the pkg/ledger sentinel of the error's code.
func (e *Error) Kind() error {
	switch e.Code {
	case CodeInvalid:
		return ledger.ErrInvalid
	case CodeForbid:
		return ledger.ErrForbidden
	case CodeNotFound:
		return ledger.ErrNotFound
	}
	return ledger.ErrUnavailable
}
