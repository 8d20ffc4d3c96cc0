// Package chaincode is ledgerfence's Fabric contract: hosts and regulations,
// batched and paged reads, a read-only check that decides with pkg/filter,
// the history of a record, one chaincode event per write, and the access
// rules of DESIGN.md "Ledger contract", which package access holds for the
// chaincode and the embedded ledger alike. A record keeps its writer's MSP,
// identity and role. Its governance transactions (governance.go) keep the
// registry of which organisation may claim which organisation codes,
// proposals every organisation concerned approves, project bindings and
// attestations of host facts by a second organisation. Its residency
// transactions (placement.go) record placements, where VMs ran as Nova's
// notifications and the host agents tell it, each with the verdict of the one
// decision on the world state of its transaction.
//
// Transactions take and return strings: their arguments are names or JSON,
// their results pkg/ledger's records (and pkg/ledger/fabric/wire's result types) in
// JSON. This keeps one wire format (pkg/ledger's) and spares every call the
// contract API's schema validation of large results.
//
// A refused transaction fails with a *wire.Error, whose text names the rule
// ("ledgerfence/forbidden: ...", "ledgerfence/invalid: ...",
// "ledgerfence/not_found: ...").
package chaincode

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/hyperledger/fabric-contract-api-go/v2/contractapi"

	"github.com/ledgerfence/ledgerfence/pkg/decide"
	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/access"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/fabric/wire"
)

// Contract is the ledgerfence contract. Its exported methods are the
// transactions named in pkg/ledger/fabric/wire.
type Contract struct {
	contractapi.Contract
}

// Ctx is what a transaction sees: the stub and the client identity.
type Ctx = contractapi.TransactionContextInterface

// New returns the chaincode, ready for shim.Start or a shim.ChaincodeServer.
func New() (*contractapi.ContractChaincode, error) {
	cc, err := contractapi.NewChaincode(&Contract{})
	if err != nil {
		return nil, err
	}
	cc.Info.Title = "ledgerfence"
	cc.Info.Version = "1"
	return cc, nil
}

func refuse(code, format string, args ...any) error {
	return &wire.Error{Code: code, Msg: fmt.Sprintf(format, args...)}
}

func invalid(err error) error { return &wire.Error{Code: wire.CodeInvalid, Msg: err.Error()} }

func result(v any) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("encode result: %w", err)
	}
	return string(b), nil
}

// Limits on the size of arguments, checked before they are decoded.
const (
	maxHostBytes       = 1 << 16
	maxRegulationBytes = 1 << 20
	maxListBytes       = wire.MaxBatch * (filter.MaxHostNameLen + 3)
)

// decodeList reads a JSON list of strings of at most wire.MaxBatch items.
func decodeList(field, s string) ([]string, error) {
	if s == "" {
		return nil, nil
	}
	if len(s) > maxListBytes {
		return nil, refuse(wire.CodeInvalid, "%s: larger than %d bytes", field, maxListBytes)
	}
	var out []string
	if err := json.Unmarshal([]byte(s), &out); err != nil {
		return nil, refuse(wire.CodeInvalid, "%s: want a JSON list of strings", field)
	}
	if len(out) > wire.MaxBatch {
		return nil, refuse(wire.CodeInvalid, "%s: at most %d items, got %d", field, wire.MaxBatch, len(out))
	}
	return out, nil
}

// PutHost registers or updates a host. hostJSON is {"host", "country",
// "organizations", "region"}. An unchanged host is not written again.
func (c *Contract) PutHost(ctx Ctx, hostJSON string) (string, error) {
	if len(hostJSON) > maxHostBytes {
		return "", refuse(wire.CodeInvalid, "host: larger than %d bytes", maxHostBytes)
	}
	var in filter.Host
	dec := json.NewDecoder(strings.NewReader(hostJSON))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil || dec.More() {
		return "", refuse(wire.CodeInvalid, "host: want one JSON object {host, country, organizations, region}")
	}
	h, err := filter.NormalizeHost(in)
	if err != nil {
		return "", invalid(err)
	}
	who, err := caller(ctx)
	if err != nil {
		return "", err
	}
	st := store{ctx.GetStub()}
	old, found, err := st.host(h.Name)
	if err != nil {
		return "", err
	}
	reg, err := st.registry()
	if err != nil {
		return "", err
	}
	if err := access.MayWriteHost(who, h, old, found, reg); err != nil {
		return "", denied(err)
	}
	if found && old.Host.Equal(h) {
		return result(wire.PutHostResult{Record: old, Changed: false})
	}
	txID, at, err := st.tx()
	if err != nil {
		return "", err
	}
	rec := ledger.HostRecord{Host: h, Writer: who.Writer(), Attestation: access.KeepAttestation(old, found, h), TxID: txID, UpdatedAt: at}
	if err := st.putHost(rec); err != nil {
		return "", err
	}
	ev := ledger.Event{Kind: ledger.KindHost, Key: h.Name, Op: ledger.OpPut, TxID: txID, Writer: rec.Writer, Time: at, Host: &rec}
	if err := st.emit(ev); err != nil {
		return "", err
	}
	return result(wire.PutHostResult{Record: rec, Changed: true})
}

// GetHost returns one host record.
func (c *Contract) GetHost(ctx Ctx, name string) (string, error) {
	if err := filter.ValidateHostName(name); err != nil {
		return "", invalid(err)
	}
	rec, found, err := store{ctx.GetStub()}.host(name)
	if err != nil {
		return "", err
	}
	if !found {
		return "", refuse(wire.CodeNotFound, "host %s is not registered", name)
	}
	return result(rec)
}

// GetHosts returns the records of the named hosts (a JSON list), as a JSON
// object by name. Unknown hosts are absent.
func (c *Contract) GetHosts(ctx Ctx, namesJSON string) (string, error) {
	names, err := decodeList("hosts", namesJSON)
	if err != nil {
		return "", err
	}
	hosts, err := store{ctx.GetStub()}.hosts(names)
	if err != nil {
		return "", err
	}
	return result(hosts)
}

// ListHosts returns up to limit hosts (wire.DefaultPage when limit is 0)
// whose names sort after after, as a ledger.HostPage.
func (c *Contract) ListHosts(ctx Ctx, after string, limit int) (string, error) {
	switch {
	case limit == 0:
		limit = wire.DefaultPage
	case limit < 0 || limit > wire.MaxPage:
		return "", refuse(wire.CodeInvalid, "limit: want 1..%d, got %d", wire.MaxPage, limit)
	}
	if after != "" {
		if err := filter.ValidateHostName(after); err != nil {
			return "", invalid(err)
		}
	}
	page, err := store{ctx.GetStub()}.listHosts(after, limit)
	if err != nil {
		return "", err
	}
	return result(page)
}

// PutRegulation puts the regulation of subject (vm:<uuid> or project:<id>).
// body is a regulation in any of DESIGN.md's three input forms. The first
// writer becomes the owner; an unchanged regulation is not written again.
func (c *Contract) PutRegulation(ctx Ctx, subject, body string) (string, error) {
	subj, err := filter.ParseSubject(subject)
	if err != nil {
		return "", invalid(err)
	}
	if len(body) > maxRegulationBytes {
		return "", refuse(wire.CodeInvalid, "regulation: larger than %d bytes", maxRegulationBytes)
	}
	terms, err := filter.ParseTerms([]byte(body))
	if err == nil {
		terms, err = filter.NormalizeTerms(subj, terms)
	}
	if err != nil {
		return "", invalid(err)
	}
	who, err := caller(ctx)
	if err != nil {
		return "", err
	}
	st := store{ctx.GetStub()}
	old, found, err := st.regulation(subj)
	if err != nil {
		return "", err
	}
	live := found && !old.Deleted
	binding, err := st.binding(access.BindingSubject(subj, terms))
	if err != nil {
		return "", err
	}
	if err := access.MayWriteRegulation(who, subj, terms, old.RegulationRecord, live, binding); err != nil {
		return "", denied(err)
	}
	if live && old.Terms().Equal(terms) {
		return result(wire.PutRegulationResult{Record: old.RegulationRecord, Changed: false})
	}
	txID, at, err := st.tx()
	if err != nil {
		return "", err
	}
	reg := filter.Regulation{Subject: subj, Allow: terms.Allow, RequireAttested: terms.RequireAttested, Project: terms.Project, Owner: who.String(), Version: 1}
	if found {
		reg.Version = old.Version + 1
	}
	if live {
		reg.Owner = old.Owner
	}
	rec := ledger.RegulationRecord{Regulation: reg, Writer: who.Writer(), TxID: txID, UpdatedAt: at}
	if err := st.putRegulation(storedRegulation{RegulationRecord: rec}); err != nil {
		return "", err
	}
	ev := ledger.Event{Kind: ledger.KindRegulation, Key: string(subj), Op: ledger.OpPut, TxID: txID, Writer: rec.Writer, Time: at, Regulation: &rec}
	if err := st.emit(ev); err != nil {
		return "", err
	}
	return result(wire.PutRegulationResult{Record: rec, Changed: true})
}

// GetRegulation returns the regulation of subject.
func (c *Contract) GetRegulation(ctx Ctx, subject string) (string, error) {
	subj, err := filter.ParseSubject(subject)
	if err != nil {
		return "", invalid(err)
	}
	old, found, err := store{ctx.GetStub()}.regulation(subj)
	if err != nil {
		return "", err
	}
	if !found || old.Deleted {
		return "", refuse(wire.CodeNotFound, "no regulation for %s", subj)
	}
	return result(old.RegulationRecord)
}

// DeleteRegulation lifts the regulation of subject. Only its owner or a
// policy admin of the owner's organisation may. The record keeps who deleted
// it (as a tombstone, so that History can tell); the delete counts as a
// version, and the next regulation of the subject continues the count.
func (c *Contract) DeleteRegulation(ctx Ctx, subject string) error {
	subj, err := filter.ParseSubject(subject)
	if err != nil {
		return invalid(err)
	}
	who, err := caller(ctx)
	if err != nil {
		return err
	}
	st := store{ctx.GetStub()}
	old, found, err := st.regulation(subj)
	if err != nil {
		return err
	}
	if !found || old.Deleted {
		return refuse(wire.CodeNotFound, "no regulation for %s", subj)
	}
	if err := access.MayDeleteRegulation(who, subj, old.RegulationRecord); err != nil {
		return denied(err)
	}
	txID, at, err := st.tx()
	if err != nil {
		return err
	}
	tomb := old
	tomb.Deleted = true
	tomb.Version++
	tomb.Writer = who.Writer()
	tomb.TxID = txID
	tomb.UpdatedAt = at
	if err := st.putRegulation(tomb); err != nil {
		return err
	}
	return st.emit(ledger.Event{Kind: ledger.KindRegulation, Key: string(subj), Op: ledger.OpDelete, TxID: txID, Writer: tomb.Writer, Time: at})
}

// Lookup reads the regulations of some subjects and the records of some
// hosts (two JSON lists) in one query, as a wire.LookupResult.
func (c *Contract) Lookup(ctx Ctx, subjectsJSON, hostsJSON string) (string, error) {
	subjects, err := decodeList("subjects", subjectsJSON)
	if err != nil {
		return "", err
	}
	names, err := decodeList("hosts", hostsJSON)
	if err != nil {
		return "", err
	}
	st := store{ctx.GetStub()}
	regs, err := st.regulations(subjects)
	if err != nil {
		return "", err
	}
	hosts, err := st.hosts(names)
	if err != nil {
		return "", err
	}
	reg, err := st.registry()
	if err != nil {
		return "", err
	}
	return result(wire.LookupResult{Regulations: regs, Hosts: hosts, RequireAttested: reg != nil && reg.RequireAttested})
}

// Check decides, with the one decision (package decide), which of the hosts
// (a JSON list; every registered host when empty) a VM may go to. The
// regulations that apply are its own (when instanceUUID is given) and its
// project's (when projectID is given). It writes nothing. The result is a
// decide.Report.
func (c *Contract) Check(ctx Ctx, instanceUUID, projectID, hostsJSON string, denyUnregulated bool) (string, error) {
	subjects, err := decide.Subjects(instanceUUID, projectID)
	if err != nil {
		return "", refuse(wire.CodeInvalid, "%v", err)
	}
	names, err := decodeList("hosts", hostsJSON)
	if err != nil {
		return "", err
	}
	st := store{ctx.GetStub()}
	keys := make([]string, len(subjects))
	for i, s := range subjects {
		keys[i] = string(s)
	}
	regs, err := st.regulations(keys)
	if err != nil {
		return "", err
	}
	var hosts map[string]ledger.HostRecord
	if len(names) == 0 {
		if names, hosts, err = st.allHosts(); err != nil {
			return "", err
		}
	} else if hosts, err = st.hosts(names); err != nil {
		return "", err
	}
	reg, err := st.registry()
	if err != nil {
		return "", err
	}
	candidates := decide.Candidates(names)
	facts := decide.Facts{Regulations: regs, Hosts: hosts, RequireAttested: reg != nil && reg.RequireAttested}
	d, err := decide.DecideSubjects(context.Background(), facts, nil, subjects, nil, candidates, filter.Options{DenyUnregulated: denyUnregulated})
	if err != nil {
		return "", err
	}
	return result(d.Report(candidates))
}

// History returns every version of a host (kind "host", key its name; an
// attestation is op "attest", by its attestor), a regulation (kind
// "regulation", key its subject), the registry (kind "registry", key
// "registry"), a proposal (kind "proposal", key its id; each version by the
// approval that made it) or a project's binding (kind "binding", key the
// project), oldest first, as a JSON list of ledger.Change. Block is not
// known to the chaincode and is 0.
func (c *Contract) History(ctx Ctx, kind, key string) (string, error) {
	var k string
	switch ledger.Kind(kind) {
	case ledger.KindHost:
		if err := filter.ValidateHostName(key); err != nil {
			return "", invalid(err)
		}
		k = hostKey(key)
	case ledger.KindRegulation:
		subj, err := filter.ParseSubject(key)
		if err != nil {
			return "", invalid(err)
		}
		k = regulationKey(subj)
	case ledger.KindRegistry:
		if key != ledger.RegistryKey {
			return "", refuse(wire.CodeInvalid, "the registry's key is %q, not %q", ledger.RegistryKey, filter.Clip(key))
		}
		k = registryKey
	case ledger.KindProposal:
		if err := validProposalID(key); err != nil {
			return "", err
		}
		k = proposalKey(key)
	case ledger.KindBinding:
		p, err := filter.NormalizeProjectID(key)
		if err != nil {
			return "", invalid(err)
		}
		k = bindingKey(p)
	default:
		return "", refuse(wire.CodeInvalid, "kind: want host, regulation, registry, proposal or binding, got %q", filter.Clip(kind))
	}
	changes, err := store{ctx.GetStub()}.history(ledger.Kind(kind), k)
	if err != nil {
		return "", err
	}
	if len(changes) == 0 {
		return "", refuse(wire.CodeNotFound, "no history for %s %s", kind, key)
	}
	return result(changes)
}
