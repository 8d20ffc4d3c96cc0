package embedded

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/ledgerfence/ledgerfence/pkg/ledger/head"
)

// HeadFileName is the name of the head file next to FileName: what the data
// directory remembers of its ledger outside the bbolt file.
const HeadFileName = "ledger.head"

// HeadFilePath returns the head file of the ledger file at path: the same
// name with the extension .head (ledger.db: ledger.head).
func HeadFilePath(path string) string {
	return strings.TrimSuffix(path, filepath.Ext(path)) + ".head"
}

// headFileVersion is the version of the head file's layout.
const headFileVersion = 1

// remembered is the head file: the ledger's genesis (the hash of its first
// entry; empty while it has none) and its head after the last commit. It is
// JSON, rewritten atomically (head.WriteFile) after every commit.
type remembered struct {
	V       int    `json:"v"`
	Genesis string `json:"genesis,omitempty"`
	head.Head
	Time time.Time `json:"time"`
}

// readHeadFile reads the head file at path; ok is false when there is none.
func readHeadFile(path string) (rem remembered, ok bool, err error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return remembered{}, false, nil
	}
	if err != nil {
		return remembered{}, false, err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rem); err != nil {
		return remembered{}, true, fmt.Errorf("%w: head file %s is not JSON: %v", ErrTampered, path, err)
	}
	if rem.V != headFileVersion {
		return remembered{}, true, fmt.Errorf("%w: head file %s has version %d, want %d", ErrTampered, path, rem.V, headFileVersion)
	}
	if err := rem.Head.Validate(); err != nil {
		return remembered{}, true, fmt.Errorf("%w: head file %s: %v", ErrTampered, path, err)
	}
	if (rem.Height == 0) != (rem.Genesis == "") {
		return remembered{}, true, fmt.Errorf("%w: head file %s: a genesis goes with a height above 0", ErrTampered, path)
	}
	if rem.Genesis != "" {
		if err := (head.Head{Height: 1, Hash: rem.Genesis}).Validate(); err != nil {
			return remembered{}, true, fmt.Errorf("%w: head file %s: genesis: %v", ErrTampered, path, err)
		}
	}
	return rem, true, nil
}

// writeHeadFile replaces the head file at path.
func writeHeadFile(path string, rem remembered) error {
	rem.V = headFileVersion
	data, err := json.Marshal(rem)
	if err != nil {
		return err
	}
	return head.WriteFile(path, append(data, '\n'), 0o600)
}

// compareRemembered checks a chain of height entries, whose entry hashes at
// the heights it is asked for come from hashAt, against the head file. The
// chain must hold the remembered head at its height and the remembered
// genesis as its first entry. It may be longer: a write commits before the
// head file is written, so a crash can leave the file behind by the last
// commits (behind counts them). It returns what is wrong, "" if nothing, and
// the entry found wrong.
func compareRemembered(rem remembered, height uint64, hashAt func(uint64) string) (seq uint64, problem string, behind uint64) {
	if height < rem.Height {
		return height + 1, fmt.Sprintf("the chain has %d entries, and the head file remembers %d (head %s): entries were removed or the file rolled back",
			height, rem.Height, rem.Head), 0
	}
	if rem.Height > 0 {
		if got := hashAt(1); got != rem.Genesis {
			return 1, fmt.Sprintf("the first entry's hash is %s, and the head file remembers the genesis %s: the chain was rewritten", got, rem.Genesis), 0
		}
		if got := hashAt(rem.Height); got != rem.Hash {
			return rem.Height, fmt.Sprintf("entry %d's hash is %s, and the head file remembers %s: the chain was rewritten", rem.Height, got, rem.Hash), 0
		}
	}
	return 0, "", height - rem.Height
}

// headFileInterval is the least time between two writes of the head file
// while commits go on: each write is synced (the file, then its directory,
// about as long as a commit), so writing after every commit would double a
// write's latency, and writing often holds up the commits' own syncs (20 ms
// added a fifth to their 99th percentile). The head of the last commit is
// always written, within about this long, and at Close.
const headFileInterval = 250 * time.Millisecond

// kickHead tells headLoop that the tip moved.
func (l *Ledger) kickHead() {
	select {
	case l.headKick <- struct{}{}:
	default:
	}
}

// headLoop writes the head file after commits, at most every
// headFileInterval, until the ledger closes. A failed write is retried
// after the interval; meanwhile writes are refused (headFileErr).
func (l *Ledger) headLoop() {
	defer close(l.headDone)
	for {
		select {
		case <-l.ctx.Done():
			return
		case <-l.headKick:
		}
		if err := l.flushHead(); err != nil {
			l.kickHead()
		}
		select {
		case <-l.ctx.Done():
			return
		case <-time.After(headFileInterval):
		}
	}
}

// flushHead writes the tip to the head file unless it holds it already.
func (l *Ledger) flushHead() error {
	tip := l.tip.Load()
	l.headMu.Lock()
	defer l.headMu.Unlock()
	if tip.Head == l.headWritten && l.headErr == nil {
		return nil
	}
	err := writeHeadFile(l.headPath, remembered{Genesis: tip.Genesis, Head: tip.Head, Time: l.clock().UTC()})
	if err != nil {
		if l.headErr == nil {
			l.log.Error("the head file cannot be written: writes are refused until it can", zap.String("head_file", l.headPath), zap.Error(err))
		}
		l.headErr = err
		return err
	}
	if l.headErr != nil {
		l.log.Info("the head file is written again: writes are accepted", zap.String("head_file", l.headPath))
	}
	l.headWritten, l.headErr = tip.Head, nil
	return nil
}

// headFileErr is why the head file could not be written the last time, nil
// if it could.
func (l *Ledger) headFileErr() error {
	l.headMu.Lock()
	defer l.headMu.Unlock()
	return l.headErr
}
