package head

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/ledgerfence/ledgerfence/pkg/filter"
)

// Source serves a ledger's signed head and the hash of its entry at any
// height; package ledger/remote's client is one.
type Source interface {
	// SignedHead returns the ledger's latest signed head, or an error
	// matching ErrNoHeads when the ledger signs none.
	SignedHead(ctx context.Context) (Signed, error)
	// HashAt returns the hash of the ledger's entry at height (ZeroHash at
	// height 0).
	HashAt(ctx context.Context, height uint64) (string, error)
}

// Witness remembers the last signed head it accepted, in a small state file
// when it has one, and accepts a new head only if it is signed by the same
// key (or the key it was given) and the ledger's chain still holds the
// remembered head at its height: the ledger grew, it did not fork or go
// back. It is safe for concurrent use.
type Witness struct {
	path string
	key  ed25519.PublicKey

	mu      sync.Mutex
	last    *Signed
	lastKey ed25519.PublicKey
}

// stateVersion is the version of the state file.
const stateVersion = 1

// state is the witness's file.
type state struct {
	V    int    `json:"v"`
	Head Signed `json:"head"`
}

// NewWitness returns a witness that keeps its state in path ("": in memory
// only, for the life of the process) and, when key is not nil, accepts only
// heads signed by key. Without a key it trusts the key of the first head it
// sees and then only that one. A state file that cannot be read, or whose
// head does not verify, is an error: it is never silently replaced.
func NewWitness(path string, key ed25519.PublicKey) (*Witness, error) {
	w := &Witness{path: path, key: key}
	if path == "" {
		return w, nil
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return w, nil
	}
	if err != nil {
		return nil, fmt.Errorf("head state %s: %w", path, err)
	}
	var st state
	if err := json.Unmarshal(data, &st); err != nil || st.V != stateVersion {
		return nil, fmt.Errorf("%w: head state %s is not a version %d state file (remove it to start trusting anew)", ErrMalformed, path, stateVersion)
	}
	k, err := st.Head.Key()
	if err != nil {
		return nil, fmt.Errorf("head state %s: %w", path, err)
	}
	if err := st.Head.Verify(k); err != nil {
		return nil, fmt.Errorf("head state %s: %w", path, err)
	}
	if key != nil && !key.Equal(k) {
		return nil, refused(ErrKeyChanged, "head state %s remembers heads signed by key %s, and the key given is %s", path, KeyID(k), KeyID(key))
	}
	w.last, w.lastKey = &st.Head, k
	return w, nil
}

// Path returns the state file ("" when the witness keeps none).
func (w *Witness) Path() string { return w.path }

// Last returns the last head accepted, if any.
func (w *Witness) Last() (Signed, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.last == nil {
		return Signed{}, false
	}
	return *w.last, true
}

// Check asks src for its signed head and accepts it if it verifies and
// extends the last head accepted; the new head is then remembered (written
// to the state file before Check returns). Errors: ErrRefused with the reason
// (ErrBadSignature, ErrKeyChanged, ErrRollback, ErrFork; ErrNoHeads when a
// ledger that signed its heads signs none any more); ErrNoHeads alone when a
// ledger never seen before signs none; src's own errors (an unreachable
// ledger) as they are.
func (w *Witness) Check(ctx context.Context, src Source) (Signed, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	cur, err := src.SignedHead(ctx)
	if err != nil {
		if errors.Is(err, ErrNoHeads) && w.last != nil {
			return Signed{}, refused(ErrNoHeads, "the ledger signed its heads (the last seen at height %d) and now signs none: %v", w.last.Height, err)
		}
		return Signed{}, err
	}
	if err := cur.Head.Validate(); err != nil {
		return Signed{}, fmt.Errorf("%w: %w", ErrRefused, err)
	}
	key := w.key
	if key == nil {
		key = w.lastKey
	}
	if key == nil {
		if key, err = cur.Key(); err != nil {
			return Signed{}, fmt.Errorf("%w: %w", ErrRefused, err)
		}
	}
	if err := cur.Verify(key); err != nil {
		return Signed{}, err
	}
	if l := w.last; l != nil {
		switch {
		case cur.Height < l.Height:
			return Signed{}, refused(ErrRollback, "the ledger's head is at height %d, and a head at height %d was seen before (%s)", cur.Height, l.Height, l.Head)
		case cur.Height == l.Height:
			if cur.Hash != l.Hash {
				return Signed{}, refused(ErrFork, "the ledger's head %s differs from the head seen before at that height (%s)", cur.Head, l.Head)
			}
		default:
			h, err := src.HashAt(ctx, l.Height)
			if err != nil {
				return Signed{}, fmt.Errorf("checking that the ledger still holds the head seen before (%s): %w", l.Head, err)
			}
			if h != l.Hash {
				return Signed{}, refused(ErrFork, "the ledger holds %s at height %d, and the head seen before is %s: its history was rewritten", filter.Clip(h), l.Height, l.Head)
			}
		}
	}
	if w.path != "" {
		if err := w.save(cur); err != nil {
			return Signed{}, err
		}
	}
	w.last, w.lastKey = &cur, key
	return cur, nil
}

func (w *Witness) save(s Signed) error {
	data, err := json.Marshal(state{V: stateVersion, Head: s})
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(w.path), 0o700); err != nil {
		return fmt.Errorf("head state: %w", err)
	}
	if err := WriteFile(w.path, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("head state %s: %w", w.path, err)
	}
	return nil
}
