package chaincode

// Governance transactions (ledger.Governance): the registry of which
// organisation may claim which organisation codes, proposals that every
// organisation concerned approves, project bindings and attestations of a
// host's facts by a second organisation. Package access holds every rule;
// these transactions read what the rules need, ask them, and write.

import (
	"encoding/json"
	"errors"
	"strings"

	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/access"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/fabric/wire"
)

// Limits on governance arguments, checked before they are decoded.
const (
	// maxProposalBytes holds a registry of access.MaxMembers members with
	// access.MaxMemberOrganizations codes each, written compactly.
	maxProposalBytes = 4 << 20
	// maxProposalIDLen: a proposal's id is its transaction's (64 hex digits).
	maxProposalIDLen = 128
	// maxAttestOrgsBytes bounds the organisations of one attestation.
	maxAttestOrgsBytes = maxHostBytes
)

// validProposalID accepts the form of a transaction id: letters and digits.
func validProposalID(id string) error {
	if id == "" || len(id) > maxProposalIDLen {
		return refuse(wire.CodeInvalid, "proposal id: 1 to %d letters and digits", maxProposalIDLen)
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return refuse(wire.CodeInvalid, "proposal id %q: letters and digits only", filter.Clip(id))
		}
	}
	return nil
}

// GetRegistry returns the registry in force (a ledger.RegistryRecord).
func (c *Contract) GetRegistry(ctx Ctx) (string, error) {
	reg, err := store{ctx.GetStub()}.registry()
	if err != nil {
		return "", err
	}
	if reg == nil {
		return "", refuse(wire.CodeNotFound, "no registry is in force")
	}
	return result(reg)
}

// Propose records a proposal (a ledger.Proposal in JSON) by a policyadmin:
// a new registry, or a project's binding moved to another organisation. Its
// id is the transaction's; the proposer's organisation's approval is the
// first. It is applied at once when it needs no other approval. The result
// is the ledger.ProposalRecord.
func (c *Contract) Propose(ctx Ctx, proposalJSON string) (string, error) {
	if len(proposalJSON) > maxProposalBytes {
		return "", refuse(wire.CodeInvalid, "proposal: larger than %d bytes", maxProposalBytes)
	}
	var p ledger.Proposal
	dec := json.NewDecoder(strings.NewReader(proposalJSON))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil || dec.More() {
		return "", refuse(wire.CodeInvalid, "proposal: want one JSON object {kind, registry | binding}")
	}
	who, err := caller(ctx)
	if err != nil {
		return "", err
	}
	st := store{ctx.GetStub()}
	reg, err := st.registry()
	if err != nil {
		return "", err
	}
	var binding *ledger.BindingRecord
	if p.Kind == ledger.ProposeBinding && p.Binding != nil {
		// an invalid project is access.Propose's to refuse
		if project, err := filter.NormalizeProjectID(p.Binding.Project); err == nil {
			if binding, err = st.binding(project); err != nil {
				return "", err
			}
		}
	}
	norm, needed, base, err := access.Propose(who, p, reg, binding)
	if err != nil {
		return "", denied(err)
	}
	txID, at, err := st.tx()
	if err != nil {
		return "", err
	}
	rec := ledger.ProposalRecord{
		Proposal:  norm,
		ID:        txID,
		Base:      base,
		Needed:    needed,
		Approvals: []ledger.Approval{{Writer: who.Writer(), TxID: txID, At: at}},
		State:     ledger.ProposalOpen,
		UpdatedAt: at,
	}
	if err := c.settle(st, who, &rec, base, txID); err != nil {
		return "", err
	}
	return result(rec)
}

// Approve records the approval of proposal id by a policyadmin of an
// organisation it needs. The last approval needed applies it: the registry
// proposed is in force (its version the next), or the project is bound to
// the organisation proposed. The result is the ledger.ProposalRecord.
func (c *Contract) Approve(ctx Ctx, id string) (string, error) {
	if err := validProposalID(id); err != nil {
		return "", err
	}
	who, err := caller(ctx)
	if err != nil {
		return "", err
	}
	st := store{ctx.GetStub()}
	rec, found, err := st.proposal(id)
	if err != nil {
		return "", err
	}
	if !found {
		return "", refuse(wire.CodeNotFound, "no proposal %s", id)
	}
	current, err := currentVersion(st, &rec)
	if err != nil {
		return "", err
	}
	if err := access.MayApprove(who, &rec, current); err != nil {
		return "", denied(err)
	}
	txID, at, err := st.tx()
	if err != nil {
		return "", err
	}
	rec.Approvals = append(rec.Approvals, ledger.Approval{Writer: who.Writer(), TxID: txID, At: at})
	rec.UpdatedAt = at
	if err := c.settle(st, who, &rec, current, txID); err != nil {
		return "", err
	}
	return result(rec)
}

// currentVersion is the version now of what p changes: the registry's, or
// the project's binding's (0 for none).
func currentVersion(st store, p *ledger.ProposalRecord) (uint64, error) {
	switch {
	case p.Kind == ledger.ProposeRegistry:
		reg, err := st.registry()
		if err != nil || reg == nil {
			return 0, err
		}
		return reg.Version, nil
	case p.Kind == ledger.ProposeBinding && p.Binding != nil:
		b, err := st.binding(p.Binding.Project)
		if err != nil || b == nil {
			return 0, err
		}
		return b.Version, nil
	}
	return 0, nil
}

// settle writes proposal rec, approved by who in this transaction, and, when
// no approval is missing any more, applies it on top of version current of
// what it changes. It emits the transaction's one event: of the registry or
// the binding (with the proposal) when applied, else of the proposal.
func (c *Contract) settle(st store, who access.Identity, rec *ledger.ProposalRecord, current uint64, txID string) error {
	at := rec.UpdatedAt
	ev := ledger.Event{Kind: ledger.KindProposal, Key: rec.ID, Op: ledger.OpPut, TxID: txID, Writer: who.Writer(), Time: at, Proposal: rec}
	if len(rec.Missing()) == 0 {
		rec.State = ledger.ProposalApplied
		switch rec.Kind {
		case ledger.ProposeRegistry:
			reg := ledger.RegistryRecord{Registry: *rec.Registry, Version: current + 1, Proposal: rec.ID, TxID: txID, UpdatedAt: at}
			if err := st.putRegistry(reg); err != nil {
				return err
			}
			ev.Kind, ev.Key, ev.Registry = ledger.KindRegistry, ledger.RegistryKey, &reg
		case ledger.ProposeBinding:
			b := ledger.BindingRecord{Binding: *rec.Binding, Version: current + 1, Writer: who.Writer(), Proposal: rec.ID, TxID: txID, UpdatedAt: at}
			if err := st.putBinding(b); err != nil {
				return err
			}
			ev.Kind, ev.Key, ev.Binding = ledger.KindBinding, b.Project, &b
		}
	}
	if err := st.putProposal(*rec); err != nil {
		return err
	}
	return st.emit(ev)
}

// GetProposal returns proposal id (a ledger.ProposalRecord). An open
// proposal whose base is no longer the version of what it changes is shown
// stale: it can no longer be approved.
func (c *Contract) GetProposal(ctx Ctx, id string) (string, error) {
	if err := validProposalID(id); err != nil {
		return "", err
	}
	st := store{ctx.GetStub()}
	rec, found, err := st.proposal(id)
	if err != nil {
		return "", err
	}
	if !found {
		return "", refuse(wire.CodeNotFound, "no proposal %s", id)
	}
	if err := markStale(st, &rec); err != nil {
		return "", err
	}
	return result(rec)
}

// ListProposals returns the open proposals, those that can still be
// approved, in id order (a JSON list of ledger.ProposalRecord).
func (c *Contract) ListProposals(ctx Ctx) (string, error) {
	st := store{ctx.GetStub()}
	all, err := st.proposals()
	if err != nil {
		return "", err
	}
	out := []ledger.ProposalRecord{}
	for i := range all {
		if err := markStale(st, &all[i]); err != nil {
			return "", err
		}
		if all[i].State == ledger.ProposalOpen {
			out = append(out, all[i])
		}
	}
	return result(out)
}

// markStale sets the state of an open proposal made on another version of
// what it changes than the present one to stale.
func markStale(st store, rec *ledger.ProposalRecord) error {
	if rec.State != ledger.ProposalOpen {
		return nil
	}
	current, err := currentVersion(st, rec)
	if err != nil {
		return err
	}
	if current != rec.Base {
		rec.State = ledger.ProposalStale
	}
	return nil
}

// BindProject binds a project to the organisation of its writer, a
// policyadmin. The first binding wins: another organisation's is refused,
// and moving it is a proposal. Binding it again to the same organisation
// writes nothing. The result is a wire.BindProjectResult.
func (c *Contract) BindProject(ctx Ctx, project string) (string, error) {
	p, err := filter.NormalizeProjectID(project)
	if err != nil {
		return "", invalid(err)
	}
	who, err := caller(ctx)
	if err != nil {
		return "", err
	}
	st := store{ctx.GetStub()}
	old, err := st.binding(p)
	if err != nil {
		return "", err
	}
	if err := access.MayBindProject(who, p, old); err != nil {
		return "", denied(err)
	}
	if old != nil {
		return result(wire.BindProjectResult{Record: *old, Changed: false})
	}
	txID, at, err := st.tx()
	if err != nil {
		return "", err
	}
	rec := ledger.BindingRecord{Binding: ledger.Binding{Project: p, MSP: who.MSP}, Version: 1, Writer: who.Writer(), TxID: txID, UpdatedAt: at}
	if err := st.putBinding(rec); err != nil {
		return "", err
	}
	ev := ledger.Event{Kind: ledger.KindBinding, Key: p, Op: ledger.OpPut, TxID: txID, Writer: rec.Writer, Time: at, Binding: &rec}
	if err := st.emit(ev); err != nil {
		return "", err
	}
	return result(wire.BindProjectResult{Record: rec, Changed: true})
}

// GetBinding returns a project's binding (a ledger.BindingRecord).
func (c *Contract) GetBinding(ctx Ctx, project string) (string, error) {
	p, err := filter.NormalizeProjectID(project)
	if err != nil {
		return "", invalid(err)
	}
	rec, err := store{ctx.GetStub()}.binding(p)
	if err != nil {
		return "", err
	}
	if rec == nil {
		return "", refuse(wire.CodeNotFound, "project %s is bound to no organisation", p)
	}
	return result(rec)
}

// AttestHost records that its writer, an attestor of another organisation
// than the one that claimed them, attests host name's country and
// organisations (a JSON list), which must be its record's now. The record
// keeps its claimer as writer; the attestation names the attestor. Facts
// already attested are not written again. The result is a
// wire.AttestHostResult.
func (c *Contract) AttestHost(ctx Ctx, name, country, orgsJSON string) (string, error) {
	if err := filter.ValidateHostName(name); err != nil {
		return "", invalid(err)
	}
	if len(orgsJSON) > maxAttestOrgsBytes {
		return "", refuse(wire.CodeInvalid, "organizations: larger than %d bytes", maxAttestOrgsBytes)
	}
	var orgs []string
	if err := json.Unmarshal([]byte(orgsJSON), &orgs); err != nil {
		return "", refuse(wire.CodeInvalid, "organizations: want a JSON list of strings")
	}
	facts, err := ledger.NormalizeAttestation(name, country, orgs)
	if err != nil {
		return "", invalid(err)
	}
	who, err := caller(ctx)
	if err != nil {
		return "", err
	}
	st := store{ctx.GetStub()}
	rec, found, err := st.host(facts.Name)
	if err != nil {
		return "", err
	}
	if !found {
		return "", refuse(wire.CodeNotFound, "host %s is not registered", facts.Name)
	}
	reg, err := st.registry()
	if err != nil {
		return "", err
	}
	if err := access.MayAttest(who, rec, facts, reg); err != nil {
		return "", denied(err)
	}
	txID, at, err := st.tx()
	if err != nil {
		return "", err
	}
	att, changed := access.Attestation(who, rec, txID, at)
	if !changed {
		return result(wire.AttestHostResult{Record: rec, Changed: false})
	}
	rec.Attestation = att
	rec.TxID, rec.UpdatedAt = txID, at
	if err := st.putHost(rec); err != nil {
		return "", err
	}
	ev := ledger.Event{Kind: ledger.KindHost, Key: rec.Name, Op: ledger.OpAttest, TxID: txID, Writer: who.Writer(), Time: at, Host: &rec}
	if err := st.emit(ev); err != nil {
		return "", err
	}
	return result(wire.AttestHostResult{Record: rec, Changed: true})
}

// denied turns a refusal of package access into the chaincode's refusal
// of the same kind (forbidden, invalid or not found), with the same text.
func denied(err error) error {
	if err == nil {
		return nil
	}
	code := wire.CodeForbid
	switch {
	case errors.Is(err, ledger.ErrInvalid):
		code = wire.CodeInvalid
	case errors.Is(err, ledger.ErrNotFound):
		code = wire.CodeNotFound
	}
	msg := err.Error()
	var le *ledger.Error
	if errors.As(err, &le) && le.Msg != "" {
		msg = le.Msg
	}
	return &wire.Error{Code: code, Msg: msg}
}
