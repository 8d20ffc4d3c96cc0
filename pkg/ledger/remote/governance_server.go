package remote

// The server side of governance (ledger.Governance): the registry,
// proposals and their approvals, project bindings and attestations. Writes
// go through the same authentication as every write (pkg/api's write:
// a writer token's identity, or the operator's admin token), and the ledger
// applies package access's rules to them.

import (
	"net/http"
	"strconv"

	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
)

// maxProposalBody bounds a proposal's body: a registry of access.MaxMembers
// members of access.MaxMemberOrganizations codes each is a few MiB.
const maxProposalBody = 8 << 20

// maxProposalIDLen bounds a proposal id in a path (ids are 64 hex digits).
const maxProposalIDLen = 128

// proposalsBody is the answer of GET /v1/proposals.
type proposalsBody struct {
	Proposals []ledger.ProposalRecord `json:"proposals"`
}

// attestInput is the body of POST /v1/hosts/{host}/attest.
type attestInput struct {
	Country       string   `json:"country"`
	Organizations []string `json:"organizations"`
}

// proposalID reads the {id} path value, answering 400 when it cannot be one.
func proposalID(w http.ResponseWriter, r *http.Request) (string, bool) {
	id := r.PathValue("id")
	if id == "" || len(id) > maxProposalIDLen {
		WriteError(w, http.StatusBadRequest, "a proposal id is 1 to "+strconv.Itoa(maxProposalIDLen)+" characters")
		return "", false
	}
	return id, true
}

// project reads the {project} path value in canonical form, answering 400
// when it is not a project id.
func project(w http.ResponseWriter, r *http.Request) (string, bool) {
	p, err := filter.NormalizeProjectID(r.PathValue("project"))
	if err != nil {
		ValidationError(w, err)
		return "", false
	}
	return p, true
}

// Registry serves GET /v1/registry: the registry in force (404: none).
func (s *Server) Registry(w http.ResponseWriter, r *http.Request) {
	rec, err := s.l.Registry(r.Context())
	if err != nil {
		LedgerError(s.log, w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, rec)
}

// Propose serves POST /v1/proposals: body a ledger.Proposal, answer the
// proposal as recorded (applied at once when it needs no other approval).
func (s *Server) Propose(w http.ResponseWriter, r *http.Request) {
	var in ledger.Proposal
	if DecodeBody(w, r, maxProposalBody, &in) != nil {
		return
	}
	rec, err := s.l.Propose(r.Context(), in)
	if err != nil {
		LedgerError(s.log, w, r, err)
		return
	}
	s.afterProposal(r, rec)
	WriteJSON(w, http.StatusOK, rec)
}

// afterProposal tells of a proposal recorded, and of the change it applied.
func (s *Server) afterProposal(r *http.Request, rec ledger.ProposalRecord) {
	tx := rec.ID
	if n := len(rec.Approvals); n > 0 {
		tx = rec.Approvals[n-1].TxID
	}
	s.onWrite(ledger.KindProposal, rec.ID)
	s.logWrite(r, ledger.KindProposal, rec.ID, ledger.OpPut, tx, true)
	if rec.State != ledger.ProposalApplied {
		return
	}
	switch {
	case rec.Registry != nil:
		s.onWrite(ledger.KindRegistry, ledger.RegistryKey)
		s.logWrite(r, ledger.KindRegistry, ledger.RegistryKey, ledger.OpPut, tx, true)
	case rec.Binding != nil:
		s.onWrite(ledger.KindBinding, rec.Binding.Project)
		s.logWrite(r, ledger.KindBinding, rec.Binding.Project, ledger.OpPut, tx, true)
	}
}

// ListProposals serves GET /v1/proposals: the open proposals.
func (s *Server) ListProposals(w http.ResponseWriter, r *http.Request) {
	list, err := s.l.ListProposals(r.Context())
	if err != nil {
		LedgerError(s.log, w, r, err)
		return
	}
	if list == nil {
		list = []ledger.ProposalRecord{}
	}
	WriteJSON(w, http.StatusOK, proposalsBody{Proposals: list})
}

// GetProposal serves GET /v1/proposals/{id}.
func (s *Server) GetProposal(w http.ResponseWriter, r *http.Request) {
	id, ok := proposalID(w, r)
	if !ok {
		return
	}
	rec, err := s.l.GetProposal(r.Context(), id)
	if err != nil {
		LedgerError(s.log, w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, rec)
}

// Approve serves POST /v1/proposals/{id}/approve (no body): the writer's
// organisation approves; the answer is the proposal, applied when that was
// the last approval it needed.
func (s *Server) Approve(w http.ResponseWriter, r *http.Request) {
	id, ok := proposalID(w, r)
	if !ok {
		return
	}
	rec, err := s.l.Approve(r.Context(), id)
	if err != nil {
		LedgerError(s.log, w, r, err)
		return
	}
	s.afterProposal(r, rec)
	WriteJSON(w, http.StatusOK, rec)
}

// BindProject serves PUT /v1/bindings/{project} (no body): binds the
// project to the writer's organisation; X-Ledgerfence-Changed says whether
// it was bound so already.
func (s *Server) BindProject(w http.ResponseWriter, r *http.Request) {
	p, ok := project(w, r)
	if !ok {
		return
	}
	rec, changed, err := s.l.BindProject(r.Context(), p)
	if err != nil {
		LedgerError(s.log, w, r, err)
		return
	}
	s.onWrite(ledger.KindBinding, p)
	s.logWrite(r, ledger.KindBinding, p, ledger.OpPut, rec.TxID, changed)
	setChanged(w, changed)
	WriteJSON(w, http.StatusOK, rec)
}

// GetBinding serves GET /v1/bindings/{project} (404: bound to none).
func (s *Server) GetBinding(w http.ResponseWriter, r *http.Request) {
	p, ok := project(w, r)
	if !ok {
		return
	}
	rec, err := s.l.GetBinding(r.Context(), p)
	if err != nil {
		LedgerError(s.log, w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, rec)
}

// AttestHost serves POST /v1/hosts/{host}/attest: body {"country",
// "organizations"}, the facts attested, which must be the record's now;
// the answer is the host's record with its attestation.
func (s *Server) AttestHost(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("host")
	if err := filter.ValidateHostName(name); err != nil {
		ValidationError(w, err)
		return
	}
	var in attestInput
	if DecodeBody(w, r, maxRESTBody, &in) != nil {
		return
	}
	facts, err := ledger.NormalizeAttestation(name, in.Country, in.Organizations)
	if err != nil {
		ValidationError(w, err)
		return
	}
	rec, changed, err := s.l.AttestHost(r.Context(), facts.Name, facts.Country, facts.Organizations)
	if err != nil {
		LedgerError(s.log, w, r, err)
		return
	}
	tx := ""
	if rec.Attestation != nil {
		tx = rec.Attestation.TxID
	}
	s.onWrite(ledger.KindHost, name)
	s.logWrite(r, ledger.KindHost, name, ledger.OpAttest, tx, changed)
	setChanged(w, changed)
	WriteJSON(w, http.StatusOK, rec)
}

// RegistryHistory serves GET /v1/history/registry: every registry in force.
func (s *Server) RegistryHistory(w http.ResponseWriter, r *http.Request) {
	s.history(w, r, ledger.KindRegistry, ledger.RegistryKey)
}

// ProposalHistory serves GET /v1/history/proposals/{id}.
func (s *Server) ProposalHistory(w http.ResponseWriter, r *http.Request) {
	id, ok := proposalID(w, r)
	if !ok {
		return
	}
	s.history(w, r, ledger.KindProposal, id)
}

// BindingHistory serves GET /v1/history/bindings/{project}.
func (s *Server) BindingHistory(w http.ResponseWriter, r *http.Request) {
	p, ok := project(w, r)
	if !ok {
		return
	}
	s.history(w, r, ledger.KindBinding, p)
}
