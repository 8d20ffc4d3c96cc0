package fabric

import (
	"context"
	"encoding/json"

	"github.com/ledgerfence/ledgerfence/pkg/ledger"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/fabric/wire"
)

// Governance (ledger.Governance): reads are evaluated on the peer, writes
// endorsed, submitted and waited for as PutHost is. The chaincode applies
// package access's rules to the client's identity.

var _ ledger.Governance = (*Ledger)(nil)

// Registry implements ledger.Governance.
func (l *Ledger) Registry(ctx context.Context) (ledger.RegistryRecord, error) {
	out, err := l.evaluate(ctx, l.contract, wire.TxGetRegistry)
	if err != nil {
		return ledger.RegistryRecord{}, err
	}
	return decode[ledger.RegistryRecord](wire.TxGetRegistry, out)
}

// Propose implements ledger.Governance: the proposal's id is the id of the
// transaction that recorded it.
func (l *Ledger) Propose(ctx context.Context, p ledger.Proposal) (ledger.ProposalRecord, error) {
	body, err := json.Marshal(p)
	if err != nil {
		return ledger.ProposalRecord{}, ledger.Errorf(ledger.ErrInvalid, err, "proposal cannot be encoded")
	}
	res, err := l.submit(ctx, wire.TxPropose, nil, string(body))
	if err != nil {
		return ledger.ProposalRecord{}, err
	}
	return decode[ledger.ProposalRecord](wire.TxPropose, res.result)
}

// Approve implements ledger.Governance.
func (l *Ledger) Approve(ctx context.Context, id string) (ledger.ProposalRecord, error) {
	res, err := l.submit(ctx, wire.TxApprove, nil, id)
	if err != nil {
		return ledger.ProposalRecord{}, err
	}
	return decode[ledger.ProposalRecord](wire.TxApprove, res.result)
}

// GetProposal implements ledger.Governance. An open proposal that can no
// longer be approved (what it changes changed since) is ledger.ProposalStale.
func (l *Ledger) GetProposal(ctx context.Context, id string) (ledger.ProposalRecord, error) {
	out, err := l.evaluate(ctx, l.contract, wire.TxGetProposal, id)
	if err != nil {
		return ledger.ProposalRecord{}, err
	}
	return decode[ledger.ProposalRecord](wire.TxGetProposal, out)
}

// ListProposals implements ledger.Governance: the proposals that can still
// be approved.
func (l *Ledger) ListProposals(ctx context.Context) ([]ledger.ProposalRecord, error) {
	out, err := l.evaluate(ctx, l.contract, wire.TxListProposals)
	if err != nil {
		return nil, err
	}
	return decode[[]ledger.ProposalRecord](wire.TxListProposals, out)
}

// BindProject implements ledger.Governance. A binding the project already
// has is not submitted.
func (l *Ledger) BindProject(ctx context.Context, project string) (ledger.BindingRecord, bool, error) {
	var r wire.BindProjectResult
	changed := func(b []byte) (bool, error) {
		err := json.Unmarshal(b, &r)
		return r.Changed, err
	}
	if _, err := l.submit(ctx, wire.TxBindProject, changed, project); err != nil {
		return ledger.BindingRecord{}, false, err
	}
	return r.Record, r.Changed, nil
}

// GetBinding implements ledger.Governance.
func (l *Ledger) GetBinding(ctx context.Context, project string) (ledger.BindingRecord, error) {
	out, err := l.evaluate(ctx, l.contract, wire.TxGetBinding, project)
	if err != nil {
		return ledger.BindingRecord{}, err
	}
	return decode[ledger.BindingRecord](wire.TxGetBinding, out)
}

// AttestHost implements ledger.Governance. Facts already attested are not
// submitted.
func (l *Ledger) AttestHost(ctx context.Context, name, country string, organizations []string) (ledger.HostRecord, bool, error) {
	if organizations == nil {
		organizations = []string{}
	}
	orgs, err := json.Marshal(organizations)
	if err != nil {
		return ledger.HostRecord{}, false, ledger.Errorf(ledger.ErrInvalid, err, "organisations cannot be encoded")
	}
	var r wire.AttestHostResult
	changed := func(b []byte) (bool, error) {
		err := json.Unmarshal(b, &r)
		return r.Changed, err
	}
	if _, err := l.submit(ctx, wire.TxAttestHost, changed, name, country, string(orgs)); err != nil {
		return ledger.HostRecord{}, false, err
	}
	return r.Record, r.Changed, nil
}
