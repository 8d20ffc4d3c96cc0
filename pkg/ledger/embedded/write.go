package embedded

import (
	"context"
	"encoding/json"

	bolt "go.etcd.io/bbolt"

	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/access"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/head"
)

// author is who makes a write with ctx: an identity set by
// access.WithIdentity, to which the access rules apply (checked true), else
// the operator's writer named by ledger.WithWriter, or the default one.
func author(ctx context.Context) (w ledger.Writer, who access.Identity, checked bool) {
	if who, ok := access.IdentityFrom(ctx); ok {
		return who.Writer(), who, true
	}
	if w, ok := ledger.WriterFrom(ctx); ok && w.ID != "" {
		return w, access.Identity{}, false
	}
	return ledger.Writer{ID: DefaultWriterID}, access.Identity{}, false
}

// update runs fn in a write transaction, synced to disk on commit, and
// then records the new head, before the next write may start; the head
// file follows (headLoop), and its signature when asked for (SignedHead). fn returns the entry it appended, nil
// when the write was a no-op, else the last it appended. A context that ends while the write waits for
// its turn cancels it: nothing is written. Watchers are woken after the
// commit. While the head file cannot be written, no write is accepted.
func (l *Ledger) update(ctx context.Context, fn func(tx *bolt.Tx) (*entry, error)) error {
	if err := l.ready(ctx); err != nil {
		return err
	}
	if l.readOnly {
		return ledger.Errorf(ledger.ErrUnavailable, nil, "the embedded ledger is open read-only")
	}
	if err := l.headFileErr(); err != nil {
		return ledger.Errorf(ledger.ErrUnavailable, err, "the embedded ledger cannot write its head file; no write is accepted until it can")
	}
	l.wmu.Lock()
	defer l.wmu.Unlock()
	var appended *entry
	genesis := l.tip.Load().Genesis
	err := l.guarded(func() error {
		return l.db.Update(func(tx *bolt.Tx) error {
			if err := l.ready(ctx); err != nil {
				return err
			}
			e, err := fn(tx)
			appended = e
			if err == nil && e != nil && genesis == "" {
				// A write may append more than one entry (a proposal and
				// the change it applies): the first is the genesis.
				first, err := readEntry(tx, 1)
				if err != nil {
					return err
				}
				genesis = first.TxID
			}
			return err
		})
	})
	if err != nil {
		return l.fail(err)
	}
	if appended == nil {
		return nil
	}
	tip := remembered{Genesis: genesis, Head: head.Head{Height: appended.Seq, Hash: appended.TxID}}
	l.tip.Store(&tip)
	l.kickHead()
	l.notify()
	return nil
}

// PutHost validates and normalises h with filter.NormalizeHost and stores
// it, under the registry in force (access.MayWriteHost). The record keeps
// its attestation while its country and organisations stay the same
// (access.KeepAttestation). A record equal to the stored one is not written
// again: changed is false and the stored record is returned. Errors: ErrInvalid, ErrForbidden (the
// identity on ctx may not write it), ErrUnavailable.
func (l *Ledger) PutHost(ctx context.Context, h filter.Host) (rec ledger.HostRecord, changed bool, err error) {
	if err := l.ready(ctx); err != nil {
		return ledger.HostRecord{}, false, err
	}
	host, err := filter.NormalizeHost(h)
	if err != nil {
		return ledger.HostRecord{}, false, invalid(err)
	}
	w, who, checked := author(ctx)
	err = l.update(ctx, func(tx *bolt.Tx) (*entry, error) {
		cur, ok, err := getHost(tx, host.Name)
		if err != nil {
			return nil, err
		}
		if checked {
			reg, err := l.registryInForce(tx)
			if err != nil {
				return nil, err
			}
			if err := access.MayWriteHost(who, host, cur, ok, reg); err != nil {
				return nil, err
			}
		}
		if ok && cur.Host.Equal(host) {
			rec, changed = cur, false
			return nil, nil
		}
		value, err := json.Marshal(hostValue{Host: host, Attestation: access.KeepAttestation(cur, ok, host)})
		if err != nil {
			return nil, err
		}
		e, err := appendEntry(tx, ledger.KindHost, host.Name, ledger.OpPut, value, w, l.clock())
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

// PutRegulation validates the subject (filter.ParseSubject) and the terms
// (filter.NormalizeTerms: rules, require_attested, a VM's project) and
// stores them, under the binding of the project concerned
// (access.BindingSubject, access.MayWriteRegulation). The writer of the first put
// becomes the owner; later puts keep the owner and increment the version.
// Terms equal to the stored ones are not written again: changed is false and
// the stored record is returned. Errors: ErrInvalid, ErrForbidden,
// ErrUnavailable.
func (l *Ledger) PutRegulation(ctx context.Context, subject filter.Subject, terms filter.Terms) (rec ledger.RegulationRecord, changed bool, err error) {
	if err := l.ready(ctx); err != nil {
		return ledger.RegulationRecord{}, false, err
	}
	subj, err := filter.ParseSubject(string(subject))
	if err != nil {
		return ledger.RegulationRecord{}, false, invalid(err)
	}
	terms, err = filter.NormalizeTerms(subj, terms)
	if err != nil {
		return ledger.RegulationRecord{}, false, invalid(err)
	}
	w, who, checked := author(ctx)
	err = l.update(ctx, func(tx *bolt.Tx) (*entry, error) {
		cur, ok, err := getRegulation(tx, subj)
		if err != nil {
			return nil, err
		}
		if checked {
			var binding *ledger.BindingRecord
			if project := access.BindingSubject(subj, terms); project != "" {
				if binding, err = getBinding(tx, project); err != nil {
					return nil, err
				}
			}
			if err := access.MayWriteRegulation(who, subj, terms, cur, ok, binding); err != nil {
				return nil, err
			}
		}
		if ok && cur.Terms().Equal(terms) {
			rec, changed = cur, false
			return nil, nil
		}
		reg := filter.Regulation{Subject: subj, Allow: terms.Allow, RequireAttested: terms.RequireAttested, Project: terms.Project}
		if ok {
			reg.Owner, reg.Version = cur.Owner, cur.Version+1
		} else {
			last, err := lastRegulationVersion(tx, subj)
			if err != nil {
				return nil, err
			}
			reg.Owner, reg.Version = w.String(), last+1
		}
		value, err := json.Marshal(reg)
		if err != nil {
			return nil, err
		}
		e, err := appendEntry(tx, ledger.KindRegulation, string(subj), ledger.OpPut, value, w, l.clock())
		if err != nil {
			return nil, err
		}
		rec = ledger.RegulationRecord{Regulation: reg, Writer: e.Writer, TxID: e.TxID, UpdatedAt: e.Time}
		changed = true
		return e, nil
	})
	if err != nil {
		return ledger.RegulationRecord{}, false, err
	}
	return rec, changed, nil
}

// DeleteRegulation removes the regulation of subject. Errors: ErrInvalid,
// ErrNotFound, ErrForbidden, ErrUnavailable.
func (l *Ledger) DeleteRegulation(ctx context.Context, subject filter.Subject) error {
	if err := l.ready(ctx); err != nil {
		return err
	}
	subj, err := filter.ParseSubject(string(subject))
	if err != nil {
		return invalid(err)
	}
	w, who, checked := author(ctx)
	return l.update(ctx, func(tx *bolt.Tx) (*entry, error) {
		cur, ok, err := getRegulation(tx, subj)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, regulationNotFound(subj)
		}
		if checked {
			if err := access.MayDeleteRegulation(who, subj, cur); err != nil {
				return nil, err
			}
		}
		return appendEntry(tx, ledger.KindRegulation, string(subj), ledger.OpDelete, nil, w, l.clock())
	})
}
