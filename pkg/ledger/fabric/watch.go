package fabric

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/hyperledger/fabric-gateway/pkg/client"
	"go.uber.org/zap"

	"github.com/ledgerfence/ledgerfence/pkg/ledger"
)

// position is where an event stream stands: the block of the last event
// handed over and its transaction (a client.Checkpoint).
type position struct {
	block uint64
	tx    string
}

func (p position) BlockNumber() uint64   { return p.block }
func (p position) TransactionID() string { return p.tx }

// Watch implements ledger.Ledger over the chaincode's event stream: one
// ledger.Event per write, of a host (op put, or attest with the attested
// record), a regulation, the registry, a proposal or a binding, with its
// record (an approval that applied a proposal is the registry's or the
// binding's event, with the proposal as well), or a placement (key the VM's
// UUID, with the placement's record and its verdict).
//
// The stream starts at block after itself, not after it: a block may hold
// several transactions, and a consumer that resumes with the Block of the
// last event it handled must not lose the others. Delivery is therefore at
// least once. With WithCheckpointFile, the position of every event handed
// over is written to the file and synced, and a later Watch (in this process
// or the next) resumes right after it, unless after names a later block.
// Only one Watch at a time may use the checkpoint file.
//
// Without WithReconnect the channel is closed when the stream breaks (peer
// gone, ctx done, Close); with it, the stream is reopened after the pause,
// right after the last event handed over, until ctx ends.
func (l *Ledger) Watch(ctx context.Context, after uint64) (<-chan ledger.Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, unavailable(ctx, "Watch", err)
	}
	cp := l.takeCheckpointer()
	if l.opts.checkpointFile != "" && cp == nil {
		return nil, ledger.Errorf(ledger.ErrUnavailable, nil, "Watch: the checkpoint file is in use by another Watch")
	}
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(l.root, cancel)
	release := func() {
		stop()
		cancel()
		l.giveCheckpointer(cp)
	}

	var pos *position // nil: start at block after
	if cp != nil && (cp.BlockNumber() > after || cp.BlockNumber() == after && cp.TransactionID() != "") {
		pos = &position{block: cp.BlockNumber(), tx: cp.TransactionID()}
	}
	events, err := l.openEvents(ctx, after, pos)
	if err != nil {
		release()
		return nil, err
	}
	out := make(chan ledger.Event)
	go func() {
		defer close(out)
		defer release()
		for {
			last, ok := l.pump(ctx, events, out, cp)
			if last != nil {
				pos = last
			}
			if !ok || ctx.Err() != nil || l.opts.reconnect <= 0 {
				return
			}
			for {
				l.opts.log.Info("chaincode event stream broke; reopening", zap.Duration("pause", l.opts.reconnect))
				select {
				case <-ctx.Done():
					return
				case <-time.After(l.opts.reconnect):
				}
				if events, err = l.openEvents(ctx, after, pos); err == nil {
					break
				}
				l.opts.log.Warn("reopening the chaincode event stream failed", zap.Error(err))
			}
		}
	}()
	return out, nil
}

func (l *Ledger) openEvents(ctx context.Context, after uint64, pos *position) (<-chan *client.ChaincodeEvent, error) {
	var opt client.ChaincodeEventsOption = client.WithStartBlock(after)
	if pos != nil {
		opt = client.WithCheckpoint(*pos)
	}
	events, err := l.network.ChaincodeEvents(ctx, l.cfg.Chaincode, opt)
	if err != nil {
		return nil, mapError(ctx, "Watch", err)
	}
	return events, nil
}

// pump hands the stream's events over until the stream ends (ok true) or ctx
// does (ok false). It returns the position of the last event handed over.
func (l *Ledger) pump(ctx context.Context, events <-chan *client.ChaincodeEvent, out chan<- ledger.Event, cp *client.FileCheckpointer) (last *position, ok bool) {
	defer func() {
		// let the gateway's reader finish if it is still sending
		go func() {
			for range events {
			}
		}()
	}()
	for {
		var ce *client.ChaincodeEvent
		select {
		case <-ctx.Done():
			return last, false
		case ce, ok = <-events:
			if !ok {
				return last, true
			}
		}
		var ev ledger.Event
		if err := json.Unmarshal(ce.Payload, &ev); err != nil {
			l.opts.log.Warn("unreadable chaincode event", zap.String("event", ce.EventName), zap.String("tx_id", ce.TransactionID), zap.Error(err))
		} else {
			ev.Block = ce.BlockNumber
			ev.TxID = ce.TransactionID
			select {
			case <-ctx.Done():
				return last, false
			case out <- ev:
			}
		}
		last = &position{block: ce.BlockNumber, tx: ce.TransactionID}
		if cp != nil {
			if err := errors.Join(cp.CheckpointChaincodeEvent(ce), cp.Sync()); err != nil {
				l.opts.log.Error("writing the event checkpoint failed", zap.Error(err))
			}
		}
	}
}

// takeCheckpointer lends the checkpoint file to one Watch at a time.
func (l *Ledger) takeCheckpointer() *client.FileCheckpointer {
	l.cpMu.Lock()
	defer l.cpMu.Unlock()
	cp := l.cp
	l.cp = nil
	return cp
}

func (l *Ledger) giveCheckpointer(cp *client.FileCheckpointer) {
	if cp == nil {
		return
	}
	l.cpMu.Lock()
	defer l.cpMu.Unlock()
	if l.root.Err() != nil { // closed meanwhile
		cp.Close()
		return
	}
	l.cp = cp
}
