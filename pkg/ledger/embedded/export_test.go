package embedded

import (
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
)

// WithoutHeadFile leaves the head file as Open found it: a write without
// the work that follows it for its head (with no signer either, the writes
// of before heads existed).
func WithoutHeadFile() Option { return func(o *options) { o.noHeadFile = true } }

// PutBatch makes puts of hosts (filter.Host) and regulations
// (filter.Regulation: its subject and rules), in order, as PutHost and
// PutRegulation make them, batch of them per bbolt transaction: benchmarks
// need ledgers of 100,000 entries, which one synced commit per entry makes
// slowly. The head file follows as after any commit.
func PutBatch(l *Ledger, w ledger.Writer, puts []any, batch int) error {
	for len(puts) > 0 {
		n := min(batch, len(puts))
		var last *entry
		err := l.db.Update(func(tx *bolt.Tx) error {
			for _, p := range puts[:n] {
				var e *entry
				switch p := p.(type) {
				case filter.Host:
					h, err := filter.NormalizeHost(p)
					if err != nil {
						return err
					}
					v, _ := json.Marshal(h)
					e, err = appendEntry(tx, ledger.KindHost, h.Name, ledger.OpPut, v, w, l.clock())
					if err != nil {
						return err
					}
				case filter.Regulation:
					allow, err := filter.NormalizeRules(p.Allow)
					if err != nil {
						return err
					}
					reg := filter.Regulation{Subject: p.Subject, Allow: allow, Owner: w.String(), Version: 1}
					cur, ok, err := getRegulation(tx, p.Subject)
					if err != nil {
						return err
					}
					if ok {
						reg.Owner, reg.Version = cur.Owner, cur.Version+1
					}
					v, _ := json.Marshal(reg)
					e, err = appendEntry(tx, ledger.KindRegulation, string(p.Subject), ledger.OpPut, v, w, l.clock())
					if err != nil {
						return err
					}
				default:
					return fmt.Errorf("PutBatch: %T is neither a host nor a regulation", p)
				}
				last = e
			}
			return nil
		})
		if err != nil {
			return err
		}
		tip := remembered{Genesis: l.tip.Load().Genesis, Head: l.tip.Load().Head}
		if tip.Genesis == "" {
			first, err := l.HashAt(l.ctx, 1)
			if err != nil {
				return err
			}
			tip.Genesis = first
		}
		tip.Head.Height, tip.Head.Hash = last.Seq, last.TxID
		l.tip.Store(&tip)
		l.kickHead()
		puts = puts[n:]
	}
	return l.flushHead()
}

// RecordPlacements records placements as RecordPlacement records them, by
// w, batch of them per bbolt transaction, for benchmarks that need a VM of
// 10,000 placements. The head file follows as after any commit.
func RecordPlacements(l *Ledger, w ledger.Writer, ps []ledger.Placement, batch int) error {
	for len(ps) > 0 {
		n := min(batch, len(ps))
		var last *entry
		err := l.db.Update(func(tx *bolt.Tx) error {
			for _, p := range ps[:n] {
				p, err := ledger.NormalizePlacement(p)
				if err != nil {
					return err
				}
				_, e, _, err := l.recordPlacement(tx, p, w)
				if err != nil {
					return err
				}
				if e != nil {
					last = e
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		if last != nil {
			tip := remembered{Genesis: l.tip.Load().Genesis, Head: l.tip.Load().Head}
			if tip.Genesis == "" {
				first, err := l.HashAt(l.ctx, 1)
				if err != nil {
					return err
				}
				tip.Genesis = first
			}
			tip.Head.Height, tip.Head.Hash = last.Seq, last.TxID
			l.tip.Store(&tip)
			l.kickHead()
		}
		ps = ps[n:]
	}
	return l.flushHead()
}
