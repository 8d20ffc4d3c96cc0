package embedded

import (
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"strings"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
	"go.uber.org/zap"

	"github.com/ledgerfence/ledgerfence/pkg/ledger"
)

// ErrCorrupt is matched by the errors of a ledger file that is not a whole,
// consistent bbolt file: empty, truncated, failing bbolt's consistency
// check, or one whose reading made bbolt panic or fault.
var ErrCorrupt = errors.New("embedded: the ledger file is damaged")

// corruptf makes an error matching ErrCorrupt.
func corruptf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, args...))
}

// guard runs fn, which reads or writes the bbolt file, with memory faults
// turned into panics (a page pointing outside the mapped file faults) and
// every panic into an error matching ErrCorrupt. bbolt's View and Update
// roll their transaction back on a panic, so the file is left as it was.
func guard(fn func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = &panicError{value: r, stack: debug.Stack()}
		}
	}()
	return fn()
}

// panicError is a panic of bbolt (or of the code reading its file), turned
// into an error.
type panicError struct {
	value any
	stack []byte
}

func (e *panicError) Error() string {
	return fmt.Sprintf("%v: reading the file panicked: %v", ErrCorrupt, e.value)
}

func (e *panicError) Unwrap() error { return ErrCorrupt }

// guarded runs fn under guard; a panic marks the ledger damaged, so that
// every later call fails rather than read from a file known to be broken.
func (l *Ledger) guarded(fn func() error) error {
	err := guard(fn)
	var pe *panicError
	if errors.As(err, &pe) {
		l.damage(err, pe.stack)
	}
	return err
}

// damage records why the ledger may no longer be used (the first reason
// wins) and logs it.
func (l *Ledger) damage(err error, stack []byte) {
	if l.damaged.CompareAndSwap(nil, &err) {
		l.log.Error("the embedded ledger's file is damaged: every call fails from now on; stop filterd and run ledgerctl verify",
			zap.Error(err), zap.ByteString("stack", stack))
	}
}

// Damaged returns why the ledger may no longer be used, nil while it may: a
// read or a write found its file damaged (bbolt panicked or faulted). Every
// call fails with ledger.ErrUnavailable from then on.
func (l *Ledger) Damaged() error {
	if p := l.damaged.Load(); p != nil {
		return ledger.Errorf(ledger.ErrUnavailable, *p, "the embedded ledger's file is damaged")
	}
	return nil
}

// openBolt opens the bbolt file at path (read-only: a shared lock, nothing
// ever written) and checks its structure: every reachable page within the
// file (checkPages), then bbolt's own consistency check (tx.Check). Panics
// and faults in bbolt become errors matching ErrCorrupt.
func openBolt(path string, o options, readOnly bool) (*bolt.DB, error) {
	fi, err := os.Stat(path)
	switch {
	case err != nil && !readOnly && errors.Is(err, os.ErrNotExist):
		// A new ledger: bbolt creates the file.
	case err != nil:
		return nil, err
	case fi.Size() == 0:
		return nil, corruptf("%s is empty (0 bytes)", path)
	default:
		if err := checkLength(path); err != nil {
			if errors.Is(err, os.ErrNotExist) || errors.Is(err, os.ErrPermission) {
				return nil, err
			}
			return nil, corruptf("%s: %v", path, err)
		}
	}
	var file *os.File
	bo := &bolt.Options{
		Timeout:         o.openTimeout,
		ReadOnly:        readOnly,
		PreLoadFreelist: true, // read here, in a guarded goroutine, not first in tx.Check's
		OpenFile: func(name string, flag int, perm os.FileMode) (*os.File, error) {
			f, err := os.OpenFile(name, flag, perm)
			file = f
			return f, err
		},
	}
	var db *bolt.DB
	err = guard(func() error {
		var err error
		db, err = bolt.Open(path, 0o600, bo)
		return err
	})
	if err != nil {
		var pe *panicError
		if errors.As(err, &pe) && file != nil {
			// bbolt did not get to close the file, nor to unmap it; the
			// mapping keeps the file, and its lock, open: unlock it.
			unlock(file)
			file.Close()
		}
		if errors.Is(err, bolterrors.ErrTimeout) || errors.Is(err, ErrCorrupt) ||
			errors.Is(err, os.ErrNotExist) || errors.Is(err, os.ErrPermission) {
			return nil, err
		}
		// Anything else bbolt says of a file it could open: not a bbolt
		// file (invalid, checksum, version), too short to read its meta
		// pages, a mapping it cannot make of it.
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	if err := checkStructure(db, path); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// maxCheckErrors bounds the consistency-check problems reported.
const maxCheckErrors = 5

// checkStructure checks the open file's pages and runs bbolt's consistency
// check, in one read transaction.
func checkStructure(db *bolt.DB, path string) error {
	return guard(func() error {
		return db.View(func(tx *bolt.Tx) error {
			hwm := uint64(tx.Size()) / uint64(db.Info().PageSize)
			if err := checkPages(path, db.Info().PageSize, hwm, uint64(tx.ID())); err != nil {
				var pe *os.PathError
				if errors.As(err, &pe) {
					return err
				}
				return corruptf("%v", err)
			}
			var problems []string
			for err := range tx.Check() {
				if len(problems) < maxCheckErrors {
					problems = append(problems, err.Error())
				}
			}
			if len(problems) > 0 {
				return corruptf("bbolt's consistency check failed: %s", strings.Join(problems, "; "))
			}
			return nil
		})
	})
}
