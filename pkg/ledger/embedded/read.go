package embedded

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
)

// view runs fn in a read transaction, guarded: a panic or a fault in it
// marks the ledger damaged.
func (l *Ledger) view(ctx context.Context, fn func(tx *bolt.Tx) error) error {
	if err := l.ready(ctx); err != nil {
		return err
	}
	return l.fail(l.guarded(func() error { return l.db.View(fn) }))
}

func getHost(tx *bolt.Tx, name string) (ledger.HostRecord, bool, error) {
	var rec ledger.HostRecord
	v := tx.Bucket(bucketHosts).Get([]byte(name))
	if v == nil {
		return rec, false, nil
	}
	if err := json.Unmarshal(v, &rec); err != nil {
		return rec, false, fmt.Errorf("host record %q: %w", filter.Clip(name), err)
	}
	return rec, true, nil
}

func getRegulation(tx *bolt.Tx, subject filter.Subject) (ledger.RegulationRecord, bool, error) {
	var rec ledger.RegulationRecord
	v := tx.Bucket(bucketRegulations).Get([]byte(subject))
	if v == nil {
		return rec, false, nil
	}
	if err := json.Unmarshal(v, &rec); err != nil {
		return rec, false, fmt.Errorf("regulation record %q: %w", filter.Clip(string(subject)), err)
	}
	return rec, true, nil
}

func regulationNotFound(subject filter.Subject) error {
	return ledger.Errorf(ledger.ErrNotFound, nil, "no regulation for "+string(subject))
}

// GetHost returns the host named name. Errors: ErrInvalid (not a valid host
// name), ErrNotFound, ErrUnavailable.
func (l *Ledger) GetHost(ctx context.Context, name string) (ledger.HostRecord, error) {
	if err := l.ready(ctx); err != nil {
		return ledger.HostRecord{}, err
	}
	if err := filter.ValidateHostName(name); err != nil {
		return ledger.HostRecord{}, invalid(err)
	}
	var rec ledger.HostRecord
	err := l.view(ctx, func(tx *bolt.Tx) error {
		r, ok, err := getHost(tx, name)
		if err != nil {
			return err
		}
		if !ok {
			return ledger.Errorf(ledger.ErrNotFound, nil, "host "+name+" is not registered")
		}
		rec = r
		return nil
	})
	return rec, err
}

// ListHosts returns up to limit hosts whose names sort after after, in name
// order (DefaultListLimit when limit <= 0, at most MaxListLimit). Next is set
// when more hosts follow. Errors: ErrUnavailable.
func (l *Ledger) ListHosts(ctx context.Context, after string, limit int) (ledger.HostPage, error) {
	switch {
	case limit <= 0:
		limit = DefaultListLimit
	case limit > MaxListLimit:
		limit = MaxListLimit
	}
	page := ledger.HostPage{Hosts: []ledger.HostRecord{}}
	err := l.view(ctx, func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketHosts).Cursor()
		var k, v []byte
		if after == "" {
			k, v = c.First()
		} else {
			k, v = c.Seek([]byte(after))
			if k != nil && string(k) == after {
				k, v = c.Next()
			}
		}
		for ; k != nil; k, v = c.Next() {
			if len(page.Hosts) == limit {
				page.Next = page.Hosts[limit-1].Name
				return nil
			}
			var rec ledger.HostRecord
			if err := json.Unmarshal(v, &rec); err != nil {
				return fmt.Errorf("host record %q: %w", filter.Clip(string(k)), err)
			}
			page.Hosts = append(page.Hosts, rec)
		}
		return nil
	})
	if err != nil {
		return ledger.HostPage{}, err
	}
	return page, nil
}

// GetRegulation returns the regulation of subject. Errors: ErrInvalid (not a
// valid subject), ErrNotFound, ErrUnavailable.
func (l *Ledger) GetRegulation(ctx context.Context, subject filter.Subject) (ledger.RegulationRecord, error) {
	if err := l.ready(ctx); err != nil {
		return ledger.RegulationRecord{}, err
	}
	subj, err := filter.ParseSubject(string(subject))
	if err != nil {
		return ledger.RegulationRecord{}, invalid(err)
	}
	var rec ledger.RegulationRecord
	err = l.view(ctx, func(tx *bolt.Tx) error {
		r, ok, err := getRegulation(tx, subj)
		if err != nil {
			return err
		}
		if !ok {
			return regulationNotFound(subj)
		}
		rec = r
		return nil
	})
	return rec, err
}

// Lookup reads the regulations of subjects and the records of hosts in one
// read transaction; Height is the height of that same snapshot, and
// RequireAttested the setting of the registry in force at it. The maps are
// keyed by the subjects and host names as given. Subjects are matched in
// canonical form (a VM's UUID in any case finds its regulation); an invalid
// subject fails the whole lookup with ErrInvalid rather than reading as "no
// regulation", which would let the VM go anywhere. A host name that is not
// valid cannot be registered and is simply absent. Errors: ErrInvalid,
// ErrUnavailable.
func (l *Ledger) Lookup(ctx context.Context, subjects []filter.Subject, hosts []string) (ledger.Lookup, error) {
	if err := l.ready(ctx); err != nil {
		return ledger.Lookup{}, err
	}
	canon := make([]filter.Subject, len(subjects))
	for i, s := range subjects {
		c, err := filter.ParseSubject(string(s))
		if err != nil {
			return ledger.Lookup{}, invalid(err)
		}
		canon[i] = c
	}
	res := ledger.Lookup{
		Regulations: make(map[filter.Subject]ledger.RegulationRecord, len(subjects)),
		// Sized for what is found, not for what is asked: a request may
		// name many hosts the ledger never saw.
		Hosts: make(map[string]ledger.HostRecord, min(len(hosts), 1024)),
	}
	err := l.view(ctx, func(tx *bolt.Tx) error {
		h, err := readHead(tx)
		if err != nil {
			return err
		}
		res.Height = h.Seq
		reg, err := l.registryInForce(tx)
		if err != nil {
			return err
		}
		res.RequireAttested = reg != nil && reg.RequireAttested
		for i, s := range canon {
			rec, ok, err := getRegulation(tx, s)
			if err != nil {
				return err
			}
			if ok {
				res.Regulations[subjects[i]] = rec
			}
		}
		for i, name := range hosts {
			// A long lookup gives up its read transaction once its caller
			// has (a writer growing the file waits for every reader).
			if i%1024 == 1023 && ctx.Err() != nil {
				return ledger.Errorf(ledger.ErrUnavailable, ctx.Err(), "request ended: "+ctx.Err().Error())
			}
			if _, seen := res.Hosts[name]; seen {
				continue
			}
			rec, ok, err := getHost(tx, name)
			if err != nil {
				return err
			}
			if ok {
				res.Hosts[name] = rec
			}
		}
		return nil
	})
	if err != nil {
		return ledger.Lookup{}, err
	}
	return res, nil
}

// History returns every write of one record, oldest first, from the hash
// chain: a host (kind ledger.KindHost, key its name; its puts and
// attestations), a regulation (ledger.KindRegulation, key its subject), the
// registry (ledger.KindRegistry, key ledger.RegistryKey), a proposal
// (ledger.KindProposal, key its id: made, approved) or a project's binding
// (ledger.KindBinding, key the project id). A regulation's history goes on
// across deletes. Errors: ErrInvalid (unknown kind or invalid key),
// ErrNotFound (the record was never written), ErrUnavailable.
func (l *Ledger) History(ctx context.Context, kind ledger.Kind, key string) ([]ledger.Change, error) {
	if err := l.ready(ctx); err != nil {
		return nil, err
	}
	switch kind {
	case ledger.KindHost:
		if err := filter.ValidateHostName(key); err != nil {
			return nil, invalid(err)
		}
	case ledger.KindRegulation:
		s, err := filter.ParseSubject(key)
		if err != nil {
			return nil, invalid(err)
		}
		key = string(s)
	case ledger.KindRegistry:
		if key != ledger.RegistryKey {
			return nil, ledger.Errorf(ledger.ErrInvalid, nil, fmt.Sprintf("the registry's key is %s, not %q", ledger.RegistryKey, filter.Clip(key)))
		}
	case ledger.KindProposal:
		if err := validProposalID(key); err != nil {
			return nil, err
		}
	case ledger.KindBinding:
		p, err := normalizeProject(key)
		if err != nil {
			return nil, err
		}
		key = p
	default:
		return nil, ledger.Errorf(ledger.ErrInvalid, nil, fmt.Sprintf("kind %q is none of %s, %s, %s, %s, %s", filter.Clip(string(kind)),
			ledger.KindHost, ledger.KindRegulation, ledger.KindRegistry, ledger.KindProposal, ledger.KindBinding))
	}
	var changes []ledger.Change
	err := l.view(ctx, func(tx *bolt.Tx) error {
		prefix := indexPrefix(kind, key)
		c := tx.Bucket(bucketIndex).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			if len(k) != len(prefix)+8 {
				return fmt.Errorf("index key %q is malformed", filter.Clip(string(k)))
			}
			e, err := readEntry(tx, binary.BigEndian.Uint64(k[len(prefix):]))
			if err != nil {
				return err
			}
			ch, err := e.change()
			if err != nil {
				return err
			}
			changes = append(changes, ch)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(changes) == 0 {
		return nil, ledger.Errorf(ledger.ErrNotFound, nil, fmt.Sprintf("no history for %s %s", kind, key))
	}
	return changes, nil
}

// Height returns the number of the last entry of the hash chain (0 for an
// empty ledger). Errors: ErrUnavailable.
func (l *Ledger) Height(ctx context.Context) (uint64, error) {
	var h chainHead
	err := l.view(ctx, func(tx *bolt.Tx) error {
		var err error
		h, err = readHead(tx)
		return err
	})
	return h.Seq, err
}
