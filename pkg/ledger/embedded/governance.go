package embedded

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/access"
)

// Governance on the embedded ledger: the registry, proposals, project
// bindings and attestations of package ledger, under package access's
// rules, each write an entry of the hash chain that Verify replays.
//
// A write whose context carries an identity is checked by the rules as it
// is. The operator's writes (no identity) are checked as those of the
// ledger's own organisation holding the role the write needs (a policyadmin
// proposes, approves and binds, an attestor attests), with the operator as
// the writer recorded; and the operator's proposals take effect at once,
// whatever approvals they would need. The ledger's one organisation is MSP
// "": a proposal of one of its policyadmins needs no other approval unless
// the registry names other members.
//
// Entries: a proposal (kind proposal, op put, an empty key: the proposal's
// id is the entry's tx id), an approval (op approve, key the id), the change
// a proposal applies (kind registry, key ledger.RegistryKey, or kind
// binding, key the project), written in the same transaction right after
// the entry that applied it; a first binding (kind binding, no proposal);
// an attestation (kind host, op ledger.OpAttest).

var _ ledger.Governance = (*Ledger)(nil)

// MaxOpenProposals bounds the proposals open at once (neither applied nor
// stale), so that no writer fills the ledger with proposals no one
// approves. A proposal that takes effect at once is never open.
const MaxOpenProposals = 1000

// maxOpenProposals is MaxOpenProposals; tests lower it.
var maxOpenProposals = MaxOpenProposals

// maxProposalIDLen bounds a proposal id given to a read (ids are 64 hex
// digits).
const maxProposalIDLen = 128

// getState reads the record key of a state bucket into v; false when the
// bucket or the record does not exist.
func getState(tx *bolt.Tx, bucket []byte, key string, v any) (bool, error) {
	b := tx.Bucket(bucket)
	if b == nil {
		return false, nil
	}
	data := b.Get([]byte(key))
	if data == nil {
		return false, nil
	}
	if err := json.Unmarshal(data, v); err != nil {
		return false, fmt.Errorf("%s record %q: %w", bucket, filter.Clip(key), err)
	}
	return true, nil
}

// getRegistry returns the registry in force, nil for none.
func getRegistry(tx *bolt.Tx) (*ledger.RegistryRecord, error) {
	var rec ledger.RegistryRecord
	ok, err := getState(tx, bucketRegistry, ledger.RegistryKey, &rec)
	if !ok || err != nil {
		return nil, err
	}
	return &rec, nil
}

// registryCache is the registry in force as last decoded, with the bytes
// it was decoded from: a registry may be a few MiB, and every host write
// and every lookup reads it.
type registryCache struct {
	raw []byte
	rec *ledger.RegistryRecord
}

// registryInForce is getRegistry through the ledger's cache. The record
// returned is shared: callers only read it.
func (l *Ledger) registryInForce(tx *bolt.Tx) (*ledger.RegistryRecord, error) {
	b := tx.Bucket(bucketRegistry)
	if b == nil {
		return nil, nil
	}
	v := b.Get([]byte(ledger.RegistryKey))
	if v == nil {
		return nil, nil
	}
	if c := l.regCache.Load(); c != nil && bytes.Equal(c.raw, v) {
		return c.rec, nil
	}
	var rec ledger.RegistryRecord
	if err := json.Unmarshal(v, &rec); err != nil {
		return nil, fmt.Errorf("registry record: %w", err)
	}
	l.regCache.Store(&registryCache{raw: bytes.Clone(v), rec: &rec})
	return &rec, nil
}

// getBinding returns the binding of project (normalised), nil for none.
func getBinding(tx *bolt.Tx, project string) (*ledger.BindingRecord, error) {
	var rec ledger.BindingRecord
	ok, err := getState(tx, bucketBindings, project, &rec)
	if !ok || err != nil {
		return nil, err
	}
	return &rec, nil
}

func getProposal(tx *bolt.Tx, id string) (ledger.ProposalRecord, bool, error) {
	var rec ledger.ProposalRecord
	ok, err := getState(tx, bucketProposals, id, &rec)
	return rec, ok, err
}

// targetVersion is the version now of what p changes: the registry's, or
// the project's binding's (0 for none).
func targetVersion(tx *bolt.Tx, p ledger.Proposal) (uint64, error) {
	switch {
	case p.Kind == ledger.ProposeRegistry:
		reg, err := getRegistry(tx)
		if reg == nil || err != nil {
			return 0, err
		}
		return reg.Version, nil
	case p.Kind == ledger.ProposeBinding && p.Binding != nil:
		b, err := getBinding(tx, p.Binding.Project)
		if b == nil || err != nil {
			return 0, err
		}
		return b.Version, nil
	}
	return 0, nil
}

// effective sets the state of an open proposal whose base is no longer
// the version of what it changes to stale: another change came first.
func effective(tx *bolt.Tx, p *ledger.ProposalRecord) error {
	if p.State != ledger.ProposalOpen {
		return nil
	}
	v, err := targetVersion(tx, p.Proposal)
	if err != nil {
		return err
	}
	if v != p.Base {
		p.State = ledger.ProposalStale
	}
	return nil
}

// openProposals returns the proposals open now, in id order (the
// bucket's), as the chaincode lists them.
func openProposals(tx *bolt.Tx) ([]ledger.ProposalRecord, error) {
	b := tx.Bucket(bucketProposals)
	if b == nil {
		return nil, nil
	}
	var out []ledger.ProposalRecord
	err := b.ForEach(func(k, v []byte) error {
		var p ledger.ProposalRecord
		if err := json.Unmarshal(v, &p); err != nil {
			return fmt.Errorf("proposal record %q: %w", filter.Clip(string(k)), err)
		}
		if p.State != ledger.ProposalOpen {
			return nil
		}
		if err := effective(tx, &p); err != nil {
			return err
		}
		if p.State == ledger.ProposalOpen {
			out = append(out, p)
		}
		return nil
	})
	return out, err
}

// rulesOf is who the rules see making a write of ctx that needs role: the
// identity on ctx, or for the operator's writes (checked false) the
// ledger's organisation holding role, named as the operator's writer.
func rulesOf(w ledger.Writer, who access.Identity, checked bool, role string) access.Identity {
	if checked {
		return who
	}
	return access.Identity{MSP: w.MSP, ID: w.ID, Role: role}
}

func validProposalID(id string) error {
	if id == "" || len(id) > maxProposalIDLen || strings.ContainsAny(id, "\x00/") {
		return ledger.Errorf(ledger.ErrInvalid, nil, fmt.Sprintf("%q is not a proposal id", filter.Clip(id)))
	}
	return nil
}

func normalizeProject(project string) (string, error) {
	p, err := filter.NormalizeProjectID(project)
	if err != nil {
		return "", invalid(err)
	}
	return p, nil
}

// Registry returns the registry in force. Errors: ErrNotFound (none is),
// ErrUnavailable.
func (l *Ledger) Registry(ctx context.Context) (ledger.RegistryRecord, error) {
	var rec *ledger.RegistryRecord
	err := l.view(ctx, func(tx *bolt.Tx) error {
		var err error
		rec, err = getRegistry(tx)
		return err
	})
	if err != nil {
		return ledger.RegistryRecord{}, err
	}
	if rec == nil {
		return ledger.RegistryRecord{}, ledger.Errorf(ledger.ErrNotFound, nil, "no registry is in force: every organisation may claim any organisation code on its hosts")
	}
	return *rec, nil
}

// Propose records a proposal (access.Propose), approved by its proposer; it
// takes effect at once when it needs no other approval, or when it is the
// operator's. At most MaxOpenProposals are open at once. Errors:
// ErrInvalid, ErrForbidden, ErrUnavailable.
func (l *Ledger) Propose(ctx context.Context, p ledger.Proposal) (ledger.ProposalRecord, error) {
	if err := l.ready(ctx); err != nil {
		return ledger.ProposalRecord{}, err
	}
	w, who, checked := author(ctx)
	var rec ledger.ProposalRecord
	err := l.update(ctx, func(tx *bolt.Tx) (*entry, error) {
		reg, err := getRegistry(tx)
		if err != nil {
			return nil, err
		}
		var binding *ledger.BindingRecord
		if p.Kind == ledger.ProposeBinding && p.Binding != nil {
			if project, err := filter.NormalizeProjectID(p.Binding.Project); err == nil {
				if binding, err = getBinding(tx, project); err != nil {
					return nil, err
				}
			}
		}
		np, needed, base, err := access.Propose(rulesOf(w, who, checked, access.RolePolicyAdmin), p, reg, binding)
		if err != nil {
			return nil, err
		}
		v := proposalValue{Proposal: np, Base: base, Needed: needed, State: ledger.ProposalOpen}
		if operator(w) || (len(needed) == 1 && needed[0] == w.MSP) {
			v.State = ledger.ProposalApplied
		} else {
			open, err := openProposals(tx)
			if err != nil {
				return nil, err
			}
			if len(open) >= maxOpenProposals {
				return nil, ledger.Errorf(ledger.ErrInvalid, nil, fmt.Sprintf(
					"%d proposals are open, the most the ledger keeps: approve them, or make them stale, before proposing more", len(open)))
			}
		}
		value, err := json.Marshal(v)
		if err != nil {
			return nil, err
		}
		e, err := appendEntry(tx, ledger.KindProposal, "", ledger.OpPut, value, w, l.clock())
		if err != nil {
			return nil, err
		}
		r, err := e.records()
		if err != nil {
			return nil, err
		}
		rec = *r.proposal
		if rec.State != ledger.ProposalApplied {
			return e, nil
		}
		return l.apply(tx, &rec, w)
	})
	if err != nil {
		return ledger.ProposalRecord{}, err
	}
	return rec, nil
}

// apply writes the change of p, just applied: the entry after p's.
func (l *Ledger) apply(tx *bolt.Tx, p *ledger.ProposalRecord, w ledger.Writer) (*entry, error) {
	switch p.Kind {
	case ledger.ProposeRegistry:
		cur, err := getRegistry(tx)
		if err != nil {
			return nil, err
		}
		v := registryValue{Registry: *p.Registry, Version: 1, Proposal: p.ID}
		if cur != nil {
			v.Version = cur.Version + 1
		}
		value, err := json.Marshal(v)
		if err != nil {
			return nil, err
		}
		return appendEntry(tx, ledger.KindRegistry, ledger.RegistryKey, ledger.OpPut, value, w, l.clock())
	case ledger.ProposeBinding:
		cur, err := getBinding(tx, p.Binding.Project)
		if err != nil {
			return nil, err
		}
		v := bindingValue{Binding: *p.Binding, Version: 1, Proposal: p.ID}
		if cur != nil {
			v.Version = cur.Version + 1
		}
		value, err := json.Marshal(v)
		if err != nil {
			return nil, err
		}
		return appendEntry(tx, ledger.KindBinding, p.Binding.Project, ledger.OpPut, value, w, l.clock())
	}
	return nil, fmt.Errorf("proposal %s of unknown kind %q", p.ID, filter.Clip(p.Kind))
}

// Approve records the writer's organisation's approval of proposal id
// (access.MayApprove); the last approval needed applies it. Errors:
// ErrInvalid, ErrNotFound, ErrForbidden, ErrUnavailable.
func (l *Ledger) Approve(ctx context.Context, id string) (ledger.ProposalRecord, error) {
	if err := l.ready(ctx); err != nil {
		return ledger.ProposalRecord{}, err
	}
	if err := validProposalID(id); err != nil {
		return ledger.ProposalRecord{}, err
	}
	w, who, checked := author(ctx)
	var rec ledger.ProposalRecord
	err := l.update(ctx, func(tx *bolt.Tx) (*entry, error) {
		p, ok, err := getProposal(tx, id)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, proposalNotFound(id)
		}
		current, err := targetVersion(tx, p.Proposal)
		if err != nil {
			return nil, err
		}
		if err := access.MayApprove(rulesOf(w, who, checked, access.RolePolicyAdmin), &p, current); err != nil {
			return nil, err
		}
		value := bytes.Clone(tx.Bucket(bucketProposals).Get([]byte(id)))
		e, err := appendEntry(tx, ledger.KindProposal, id, opApprove, value, w, l.clock())
		if err != nil {
			return nil, err
		}
		r, err := e.records()
		if err != nil {
			return nil, err
		}
		rec = *r.proposal
		if rec.State != ledger.ProposalApplied {
			return e, nil
		}
		return l.apply(tx, &rec, w)
	})
	if err != nil {
		return ledger.ProposalRecord{}, err
	}
	return rec, nil
}

func proposalNotFound(id string) error {
	return ledger.Errorf(ledger.ErrNotFound, nil, "no proposal "+id)
}

// GetProposal returns the proposal id, stale when what it changes changed
// since it was made. Errors: ErrInvalid, ErrNotFound, ErrUnavailable.
func (l *Ledger) GetProposal(ctx context.Context, id string) (ledger.ProposalRecord, error) {
	if err := l.ready(ctx); err != nil {
		return ledger.ProposalRecord{}, err
	}
	if err := validProposalID(id); err != nil {
		return ledger.ProposalRecord{}, err
	}
	var rec ledger.ProposalRecord
	err := l.view(ctx, func(tx *bolt.Tx) error {
		p, ok, err := getProposal(tx, id)
		if err != nil {
			return err
		}
		if !ok {
			return proposalNotFound(id)
		}
		rec = p
		return effective(tx, &rec)
	})
	return rec, err
}

// ListProposals returns the open proposals (at most MaxOpenProposals), in
// id order. Errors: ErrUnavailable.
func (l *Ledger) ListProposals(ctx context.Context) ([]ledger.ProposalRecord, error) {
	var out []ledger.ProposalRecord
	err := l.view(ctx, func(tx *bolt.Tx) error {
		var err error
		out, err = openProposals(tx)
		return err
	})
	if err != nil {
		return nil, err
	}
	if out == nil {
		out = []ledger.ProposalRecord{}
	}
	return out, nil
}

// BindProject binds project to the writer's organisation
// (access.MayBindProject); binding it again to the same organisation
// changes nothing. Errors: ErrInvalid, ErrForbidden, ErrUnavailable.
func (l *Ledger) BindProject(ctx context.Context, project string) (rec ledger.BindingRecord, changed bool, err error) {
	if err := l.ready(ctx); err != nil {
		return ledger.BindingRecord{}, false, err
	}
	project, err = normalizeProject(project)
	if err != nil {
		return ledger.BindingRecord{}, false, err
	}
	w, who, checked := author(ctx)
	err = l.update(ctx, func(tx *bolt.Tx) (*entry, error) {
		cur, err := getBinding(tx, project)
		if err != nil {
			return nil, err
		}
		if err := access.MayBindProject(rulesOf(w, who, checked, access.RolePolicyAdmin), project, cur); err != nil {
			return nil, err
		}
		if cur != nil && cur.MSP == w.MSP {
			rec, changed = *cur, false
			return nil, nil
		}
		v := bindingValue{Binding: ledger.Binding{Project: project, MSP: w.MSP}, Version: 1}
		if cur != nil {
			v.Version = cur.Version + 1
		}
		value, err := json.Marshal(v)
		if err != nil {
			return nil, err
		}
		e, err := appendEntry(tx, ledger.KindBinding, project, ledger.OpPut, value, w, l.clock())
		if err != nil {
			return nil, err
		}
		r, err := e.records()
		if err != nil {
			return nil, err
		}
		rec, changed = *r.binding, true
		return e, nil
	})
	if err != nil {
		return ledger.BindingRecord{}, false, err
	}
	return rec, changed, nil
}

// GetBinding returns the binding of project. Errors: ErrInvalid,
// ErrNotFound, ErrUnavailable.
func (l *Ledger) GetBinding(ctx context.Context, project string) (ledger.BindingRecord, error) {
	if err := l.ready(ctx); err != nil {
		return ledger.BindingRecord{}, err
	}
	project, err := normalizeProject(project)
	if err != nil {
		return ledger.BindingRecord{}, err
	}
	var rec *ledger.BindingRecord
	err = l.view(ctx, func(tx *bolt.Tx) error {
		var err error
		rec, err = getBinding(tx, project)
		return err
	})
	if err != nil {
		return ledger.BindingRecord{}, err
	}
	if rec == nil {
		return ledger.BindingRecord{}, ledger.Errorf(ledger.ErrNotFound, nil, "project "+project+" is bound to no organisation")
	}
	return *rec, nil
}

// AttestHost records that the writer attests host name's country and
// organisations, which must be those of its record now (access.MayAttest).
// Attesting facts already attested changes nothing. Errors: ErrInvalid,
// ErrNotFound, ErrForbidden, ErrUnavailable.
func (l *Ledger) AttestHost(ctx context.Context, name, country string, organizations []string) (rec ledger.HostRecord, changed bool, err error) {
	if err := l.ready(ctx); err != nil {
		return ledger.HostRecord{}, false, err
	}
	facts, err := ledger.NormalizeAttestation(name, country, organizations)
	if err != nil {
		return ledger.HostRecord{}, false, invalid(err)
	}
	w, who, checked := author(ctx)
	err = l.update(ctx, func(tx *bolt.Tx) (*entry, error) {
		cur, ok, err := getHost(tx, facts.Name)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, ledger.Errorf(ledger.ErrNotFound, nil, "host "+facts.Name+" is not registered")
		}
		rules := rulesOf(w, who, checked, access.RoleAttestor)
		reg, err := l.registryInForce(tx)
		if err != nil {
			return nil, err
		}
		if err := access.MayAttest(rules, cur, facts, reg); err != nil {
			return nil, err
		}
		if _, fresh := access.Attestation(rules, cur, "", time.Time{}); !fresh {
			rec, changed = cur, false
			return nil, nil
		}
		was := cur
		was.Attestation = nil
		value, err := json.Marshal(was)
		if err != nil {
			return nil, err
		}
		e, err := appendEntry(tx, ledger.KindHost, facts.Name, ledger.OpAttest, value, w, l.clock())
		if err != nil {
			return nil, err
		}
		r, err := e.records()
		if err != nil {
			return nil, err
		}
		rec, changed = *r.host, true
		return e, nil
	})
	if err != nil {
		return ledger.HostRecord{}, false, err
	}
	return rec, changed, nil
}
