// Package embedded is ledgerfence's ledger on one machine: a bbolt file that
// holds the hosts and regulations, a hash chain of every write made to them,
// and an index of that chain per record. It is filterd's default backend and
// the in-process fake of ledgerfence's unit tests.
//
// Every write (a host put, a regulation put or delete) is one bbolt
// transaction, synced to disk before it returns, that appends an entry to the
// chain and updates the current state. Entry N holds its sequence number, the
// hash of entry N-1, what changed (kind, key, op, the value written), the
// writer and the time; its hash is SHA-256 over a canonical encoding of all of
// these, and its hex form is the write's transaction id. The height of the
// ledger is the number of the last entry. Verify recomputes the chain and
// replays it against the state, so that editing the file is detected.
//
// Writers are named by ledger.WithWriter on the context (a writer with ID
// DefaultWriterID when none is given). The embedded ledger trusts its caller
// to have authenticated them (filterd checks a bearer token); it never
// returns ledger.ErrForbidden.
//
// Regulations: the writer of the first put becomes the owner and Version
// counts the puts from 1. A regulation that is deleted and put again is a new
// regulation, owned by the writer of that put; its Version continues from the
// last version of the deleted one, so that the versions in a subject's
// history never repeat.
//
// Errors follow the contract of package ledger: ErrInvalid for input that
// pkg/filter rejects (nothing is written), ErrNotFound, and ErrUnavailable
// when the request's context has ended, the ledger is closed or the file
// cannot be read or written.
package embedded

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
	"go.uber.org/zap"

	"github.com/ledgerfence/ledgerfence/pkg/ledger"
)

// FileName is the name of the ledger file within a data directory.
const FileName = "ledger.db"

// Defaults.
const (
	// DefaultOpenTimeout is how long Open waits for the file lock held by
	// another process.
	DefaultOpenTimeout = 2 * time.Second
	// DefaultListLimit is the page size of ListHosts when limit <= 0.
	DefaultListLimit = 100
	// MaxListLimit caps the page size of ListHosts.
	MaxListLimit = 1000
)

// DefaultWriterID is the ID of the writer recorded when the context names
// none.
const DefaultWriterID = "embedded"

// formatVersion is the layout of the file; Open refuses any other.
const formatVersion = "1"

// Buckets and meta keys.
var (
	bucketMeta        = []byte("meta")
	bucketChain       = []byte("chain")
	bucketIndex       = []byte("index")
	bucketHosts       = []byte("hosts")
	bucketRegulations = []byte("regulations")

	metaFormat = []byte("format")
	metaHead   = []byte("head")
)

var allBuckets = [][]byte{bucketMeta, bucketChain, bucketIndex, bucketHosts, bucketRegulations}

// Ledger is the embedded ledger. It is safe for concurrent use.
type Ledger struct {
	db    *bolt.DB
	path  string
	clock func() time.Time
	log   *zap.Logger

	// ctx is cancelled by Close; watchers and waiting calls end with it.
	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	closed   bool
	changed  chan struct{} // closed and replaced after each committed write
	watchers sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
}

var _ ledger.Ledger = (*Ledger)(nil)

// Option configures Open.
type Option func(*options)

type options struct {
	clock       func() time.Time
	log         *zap.Logger
	openTimeout time.Duration
}

// WithClock sets the clock that stamps writes (time.Now by default).
func WithClock(now func() time.Time) Option {
	return func(o *options) {
		if now != nil {
			o.clock = now
		}
	}
}

// WithLogger sets the logger (none by default).
func WithLogger(log *zap.Logger) Option {
	return func(o *options) {
		if log != nil {
			o.log = log
		}
	}
}

// WithOpenTimeout sets how long Open waits for a file locked by another
// process before it fails (DefaultOpenTimeout when d <= 0).
func WithOpenTimeout(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.openTimeout = d
		}
	}
}

// Open opens the ledger file at path, creating it if needed. A file held by
// another process makes Open fail with ledger.ErrUnavailable after the open
// timeout.
func Open(path string, opts ...Option) (*Ledger, error) {
	o := options{clock: time.Now, log: zap.NewNop(), openTimeout: DefaultOpenTimeout}
	for _, opt := range opts {
		opt(&o)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: o.openTimeout})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, ledger.Errorf(ledger.ErrUnavailable, err,
			fmt.Sprintf("embedded ledger %s is locked by another process (waited %s)", path, o.openTimeout))
	}
	if err != nil {
		return nil, ledger.Errorf(ledger.ErrUnavailable, err, fmt.Sprintf("cannot open embedded ledger %s: %v", path, err))
	}
	if err := db.Update(initialize); err != nil {
		db.Close()
		return nil, ledger.Errorf(ledger.ErrUnavailable, err, fmt.Sprintf("cannot open embedded ledger %s: %v", path, err))
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Ledger{
		db:      db,
		path:    path,
		clock:   o.clock,
		log:     o.log.With(zap.String("ledger", path)),
		ctx:     ctx,
		cancel:  cancel,
		changed: make(chan struct{}),
	}, nil
}

// initialize creates the buckets of a new file and checks the format of an
// existing one.
func initialize(tx *bolt.Tx) error {
	for _, name := range allBuckets {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return err
		}
	}
	meta := tx.Bucket(bucketMeta)
	switch f := meta.Get(metaFormat); {
	case f == nil:
		if k, _ := tx.Bucket(bucketChain).Cursor().First(); k != nil {
			return errors.New("file has chain entries but no format marker")
		}
		return meta.Put(metaFormat, []byte(formatVersion))
	case string(f) != formatVersion:
		return fmt.Errorf("file format %q, want %q", f, formatVersion)
	}
	if _, err := readHead(tx); err != nil {
		return err
	}
	return nil
}

// Path returns the file the ledger is kept in.
func (l *Ledger) Path() string { return l.path }

// Close stops every watcher (their channels are closed), waits for them and
// closes the file. Calls made after Close return ledger.ErrUnavailable.
func (l *Ledger) Close() error {
	l.closeOnce.Do(func() {
		l.mu.Lock()
		l.closed = true
		l.cancel()
		l.mu.Unlock()
		l.watchers.Wait()
		if err := l.db.Close(); err != nil {
			l.closeErr = ledger.Errorf(ledger.ErrUnavailable, err, "closing the embedded ledger failed")
		}
	})
	return l.closeErr
}

var errClosed = ledger.Errorf(ledger.ErrUnavailable, nil, "the embedded ledger is closed")

// ready reports why a call may not start: its context has ended or the
// ledger is closed.
func (l *Ledger) ready(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return ledger.Errorf(ledger.ErrUnavailable, err, "request ended: "+err.Error())
	}
	if l.ctx.Err() != nil {
		return errClosed
	}
	return nil
}

// fail turns an error from a bbolt transaction into one of the contract:
// errors of package ledger pass through, the rest are ErrUnavailable.
func (l *Ledger) fail(err error) error {
	if err == nil {
		return nil
	}
	var le *ledger.Error
	if errors.As(err, &le) {
		return err
	}
	if errors.Is(err, bolterrors.ErrDatabaseNotOpen) {
		return errClosed
	}
	l.log.Error("embedded ledger storage failed", zap.Error(err))
	return ledger.Errorf(ledger.ErrUnavailable, err, "the embedded ledger could not read or write its file")
}

// invalid wraps a validation error of pkg/filter.
func invalid(err error) error {
	return ledger.Errorf(ledger.ErrInvalid, err, err.Error())
}

// notify wakes the watchers after a commit.
func (l *Ledger) notify() {
	l.mu.Lock()
	close(l.changed)
	l.changed = make(chan struct{})
	l.mu.Unlock()
}

// changes returns the channel closed by the next commit.
func (l *Ledger) changes() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.changed
}
