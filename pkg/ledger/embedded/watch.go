package embedded

import (
	"context"
	"fmt"

	bolt "go.etcd.io/bbolt"
	"go.uber.org/zap"

	"github.com/ledgerfence/ledgerfence/pkg/ledger"
)

const (
	// watchBuffer is the capacity of a watcher's channel.
	watchBuffer = 64
	// watchBatch is how many entries a watcher reads per read transaction.
	watchBatch = 256
)

// Watch streams an event for every chain entry after the given height: first
// the entries already committed, then each new one as it is committed, in
// order, without gaps or duplicates. Block is the entry's sequence number;
// resume with the Block of the last event handled.
//
// Each watcher reads the chain from the file in its own goroutine, woken by
// commits, so a slow watcher never holds writers back and never loses an
// event: it falls behind and catches up. The channel is closed when ctx ends,
// when the ledger is closed, or if the chain cannot be read (logged).
// Errors: ErrUnavailable.
func (l *Ledger) Watch(ctx context.Context, after uint64) (<-chan ledger.Event, error) {
	if err := l.ready(ctx); err != nil {
		return nil, err
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, errClosed
	}
	l.watchers.Add(1)
	l.mu.Unlock()
	out := make(chan ledger.Event, watchBuffer)
	go l.watch(ctx, after, out)
	return out, nil
}

func (l *Ledger) watch(ctx context.Context, after uint64, out chan<- ledger.Event) {
	defer l.watchers.Done()
	defer close(out)
	for {
		// Take the wake-up channel before reading, so that a commit made
		// after the read cannot be missed.
		wake := l.changes()
		batch, err := l.readAfter(after, watchBatch)
		if err != nil {
			if l.ctx.Err() == nil && ctx.Err() == nil {
				l.log.Error("watch stream stopped: cannot read the chain", zap.Uint64("after", after), zap.Error(err))
			}
			return
		}
		for _, ev := range batch {
			select {
			case out <- ev:
				after = ev.Block
			case <-ctx.Done():
				return
			case <-l.ctx.Done():
				return
			}
		}
		if len(batch) == watchBatch {
			continue
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return
		case <-l.ctx.Done():
			return
		}
	}
}

// readAfter returns the events of up to max entries after seq, read in one
// short read transaction (a long one would hold back writers that grow the
// file).
func (l *Ledger) readAfter(seq uint64, max int) ([]ledger.Event, error) {
	if err := l.Damaged(); err != nil {
		return nil, err
	}
	var events []ledger.Event
	err := l.guarded(func() error {
		return l.db.View(func(tx *bolt.Tx) error {
			c := tx.Bucket(bucketChain).Cursor()
			next := seq + 1
			for k, v := c.Seek(seqKey(next)); k != nil && len(events) < max; k, v = c.Next() {
				e, err := decodeEntry(v)
				if err != nil {
					return err
				}
				if string(k) != string(seqKey(next)) || e.Seq != next {
					return fmt.Errorf("chain entry %d is missing", next)
				}
				ev, err := e.event()
				if err != nil {
					return err
				}
				events = append(events, ev)
				next++
			}
			return nil
		})
	})
	return events, err
}
