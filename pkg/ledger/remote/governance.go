package remote

import (
	"context"
	"net/http"
	"net/url"

	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
)

// Governance over filterd's REST API (governance_server.go): the writes
// are made by the holder of the client's token, to which filterd's ledger
// applies package access's rules; a refusal is ErrForbidden with the rule's
// words.

var _ ledger.Governance = (*Client)(nil)

// Registry implements ledger.Governance (GET /v1/registry).
func (c *Client) Registry(ctx context.Context) (ledger.RegistryRecord, error) {
	_, data, err := c.do(ctx, http.MethodGet, "/v1/registry", nil, nil)
	if err != nil {
		return ledger.RegistryRecord{}, err
	}
	return decode[ledger.RegistryRecord](data)
}

// Propose implements ledger.Governance (POST /v1/proposals).
func (c *Client) Propose(ctx context.Context, p ledger.Proposal) (ledger.ProposalRecord, error) {
	_, data, err := c.do(ctx, http.MethodPost, "/v1/proposals", nil, p)
	if err != nil {
		return ledger.ProposalRecord{}, err
	}
	return decode[ledger.ProposalRecord](data)
}

// Approve implements ledger.Governance (POST /v1/proposals/{id}/approve).
func (c *Client) Approve(ctx context.Context, id string) (ledger.ProposalRecord, error) {
	if err := pathValue("proposal id", id); err != nil {
		return ledger.ProposalRecord{}, err
	}
	_, data, err := c.do(ctx, http.MethodPost, "/v1/proposals/"+url.PathEscape(id)+"/approve", nil, nil)
	if err != nil {
		return ledger.ProposalRecord{}, err
	}
	return decode[ledger.ProposalRecord](data)
}

// GetProposal implements ledger.Governance (GET /v1/proposals/{id}).
func (c *Client) GetProposal(ctx context.Context, id string) (ledger.ProposalRecord, error) {
	if err := pathValue("proposal id", id); err != nil {
		return ledger.ProposalRecord{}, err
	}
	_, data, err := c.do(ctx, http.MethodGet, "/v1/proposals/"+url.PathEscape(id), nil, nil)
	if err != nil {
		return ledger.ProposalRecord{}, err
	}
	return decode[ledger.ProposalRecord](data)
}

// ListProposals implements ledger.Governance (GET /v1/proposals).
func (c *Client) ListProposals(ctx context.Context) ([]ledger.ProposalRecord, error) {
	_, data, err := c.do(ctx, http.MethodGet, "/v1/proposals", nil, nil)
	if err != nil {
		return nil, err
	}
	body, err := decode[proposalsBody](data)
	if err != nil {
		return nil, err
	}
	if body.Proposals == nil {
		body.Proposals = []ledger.ProposalRecord{}
	}
	return body.Proposals, nil
}

// BindProject implements ledger.Governance (PUT /v1/bindings/{project}).
func (c *Client) BindProject(ctx context.Context, project string) (ledger.BindingRecord, bool, error) {
	if err := pathValue("project", project); err != nil {
		return ledger.BindingRecord{}, false, err
	}
	resp, data, err := c.do(ctx, http.MethodPut, "/v1/bindings/"+url.PathEscape(project), nil, nil)
	if err != nil {
		return ledger.BindingRecord{}, false, err
	}
	rec, err := decode[ledger.BindingRecord](data)
	return rec, resp.Header.Get(headerChanged) == "true", err
}

// GetBinding implements ledger.Governance (GET /v1/bindings/{project}).
func (c *Client) GetBinding(ctx context.Context, project string) (ledger.BindingRecord, error) {
	if err := pathValue("project", project); err != nil {
		return ledger.BindingRecord{}, err
	}
	_, data, err := c.do(ctx, http.MethodGet, "/v1/bindings/"+url.PathEscape(project), nil, nil)
	if err != nil {
		return ledger.BindingRecord{}, err
	}
	return decode[ledger.BindingRecord](data)
}

// AttestHost implements ledger.Governance (POST /v1/hosts/{host}/attest).
func (c *Client) AttestHost(ctx context.Context, name, country string, organizations []string) (ledger.HostRecord, bool, error) {
	if err := filter.ValidateHostName(name); err != nil {
		return ledger.HostRecord{}, false, ledger.Errorf(ledger.ErrInvalid, err, err.Error())
	}
	if organizations == nil {
		organizations = []string{}
	}
	resp, data, err := c.do(ctx, http.MethodPost, "/v1/hosts/"+url.PathEscape(name)+"/attest", nil,
		attestInput{Country: country, Organizations: organizations})
	if err != nil {
		return ledger.HostRecord{}, false, err
	}
	rec, err := decode[ledger.HostRecord](data)
	return rec, resp.Header.Get(headerChanged) == "true", err
}

// pathValue refuses an empty value of a path (it would name another
// endpoint).
func pathValue(what, v string) error {
	if v == "" {
		return ledger.Errorf(ledger.ErrInvalid, nil, "remote: an empty "+what)
	}
	return nil
}
