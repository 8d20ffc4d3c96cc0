package embedded

import (
	"context"
	"encoding/hex"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/ledgerfence/ledgerfence/pkg/ledger"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/head"
)

// Head returns the ledger's head: its height and the hash of its last entry
// (head.ZeroHash while it has none). Errors: ErrUnavailable.
func (l *Ledger) Head(ctx context.Context) (head.Head, error) {
	var h head.Head
	err := l.view(ctx, func(tx *bolt.Tx) error {
		ch, err := readHead(tx)
		if err != nil {
			return err
		}
		h = ch.public()
		return nil
	})
	return h, err
}

func (h chainHead) public() head.Head {
	if h.Seq == 0 {
		return head.Head{Hash: head.ZeroHash}
	}
	return head.Head{Height: h.Seq, Hash: hex.EncodeToString(h.Hash[:])}
}

// HashAt returns the hash of the entry at height (head.ZeroHash at height
// 0): what a client that remembers a head checks the ledger still holds.
// Errors: ErrNotFound (the ledger is not that high), ErrUnavailable.
func (l *Ledger) HashAt(ctx context.Context, height uint64) (string, error) {
	if height == 0 {
		if err := l.ready(ctx); err != nil {
			return "", err
		}
		return head.ZeroHash, nil
	}
	var hash string
	err := l.view(ctx, func(tx *bolt.Tx) error {
		ch, err := readHead(tx)
		if err != nil {
			return err
		}
		if height > ch.Seq {
			return ledger.Errorf(ledger.ErrNotFound, nil, fmt.Sprintf("the ledger has no entry %d: its height is %d", height, ch.Seq))
		}
		e, err := readEntry(tx, height)
		if err != nil {
			return err
		}
		hash = e.TxID
		return nil
	})
	return hash, err
}

// SignedHead returns the head after the last commit, signed by the signer
// of WithHeadSigner: the head signed last, or, when a commit came after it,
// the new head signed now (a write does not wait for its signature; filterd
// signs each new head as it sees it). Errors: ErrNotFound when the ledger
// has no signer, ErrUnavailable.
func (l *Ledger) SignedHead(ctx context.Context) (head.Signed, error) {
	return l.signTip(ctx, false)
}

// SignHead signs the current head again, now, and returns it; SignedHead
// returns it from then on. filterd publishes it periodically, so that its
// heads' times say the ledger was still at that head then. Errors: as
// SignedHead's.
func (l *Ledger) SignHead(ctx context.Context) (head.Signed, error) {
	return l.signTip(ctx, true)
}

func (l *Ledger) signTip(ctx context.Context, again bool) (head.Signed, error) {
	if err := l.ready(ctx); err != nil {
		return head.Signed{}, err
	}
	if l.signer == nil {
		return head.Signed{}, ledger.Errorf(ledger.ErrNotFound, head.ErrNoHeads, "this embedded ledger signs no heads")
	}
	if s := l.signed.Load(); !again && s != nil && s.Head == l.tip.Load().Head {
		return *s, nil
	}
	if err := l.sign(again); err != nil {
		return head.Signed{}, ledger.Errorf(ledger.ErrUnavailable, err, "the head cannot be signed")
	}
	return *l.signed.Load(), nil
}

// Changes returns a channel closed by the next commit: take it, read the
// head, wait on it.
func (l *Ledger) Changes() <-chan struct{} { return l.changes() }

// Adopt makes the head file of the ledger file at path, which has none (a
// ledger written by an older version, or one restored on purpose): it opens
// the file read-only, verifies it with opts (give ExpectHead with a head kept
// elsewhere, or the new head file only repeats what the file says), and
// writes the head file of the head it verified. It refuses a path that
// already has a head file: remove it first, deliberately. Errors: as
// Verify's, and ErrTampered for a head file that exists.
func Adopt(ctx context.Context, path string, opts ...VerifyOption) (VerifyReport, error) {
	hp := HeadFilePath(path)
	if _, ok, err := readHeadFile(hp); ok || err != nil {
		return VerifyReport{}, fmt.Errorf("%w: %s already has a head file (%s); remove it first if this ledger is to be trusted as it is", ErrTampered, path, hp)
	}
	l, err := OpenReadOnly(path)
	if err != nil {
		return VerifyReport{}, err
	}
	defer l.Close()
	rep, err := l.Verify(ctx, append(opts, withoutHeadFile())...)
	if err != nil {
		return rep, err
	}
	h := rep.ChainHead()
	if err := writeHeadFile(hp, remembered{Genesis: rep.Genesis, Head: h, Time: l.clock().UTC()}); err != nil {
		return rep, ledger.Errorf(ledger.ErrUnavailable, err, fmt.Sprintf("cannot write the head file %s: %v", hp, err))
	}
	return rep, nil
}
