// Package embedded is ledgerfence's ledger on one machine: a bbolt file that
// holds the hosts and regulations, a hash chain of every write made to them,
// and an index of that chain per record. It is filterd's default backend and
// the in-process fake of ledgerfence's unit tests.
//
// Every write (a host put or attestation, a regulation put or delete, a
// proposal, approval or binding) is one bbolt transaction, synced to disk
// before it returns, that appends an entry to the chain (two when a
// proposal takes effect: the proposal or approval, then the change it
// applies) and updates the current state. Entry N holds its sequence number, the
// hash of entry N-1, what changed (kind, key, op, the value written), the
// writer and the time; its hash is SHA-256 over a canonical encoding of all of
// these, and its hex form is the write's transaction id. The height of the
// ledger is the number of the last entry. Verify recomputes the chain and
// replays it against the state, so that editing the file is detected.
//
// Heads: after every commit the ledger's head (its height and the hash of
// its last entry, package head) is written to a head file next to the bbolt
// file (HeadFilePath: ledger.db, ledger.head), atomically, within
// headFileInterval and at Close; with WithHeadSigner it is also signed
// (SignedHead). The head file
// is what lets Open refuse a file that is not the ledger it was: Open fails
// on a missing, empty, truncated, corrupt or rolled-back file, and on a chain
// that does not hold the remembered head. A directory with neither file is a
// new ledger; a bbolt file without its head file is refused (Adopt makes the
// head file of a ledger checked by hand).
//
// Damage: Open checks that every page of the file lies where it should,
// runs bbolt's consistency check (tx.Check) and Verify. Reads and writes run
// with memory faults turned into panics and panics into errors: a file found
// damaged while open marks the ledger damaged (Damaged), and every call fails
// with ledger.ErrUnavailable from then on. OpenReadOnly opens the file
// without ever writing to it, for Verify.
//
// Writers: a write whose context carries an identity (access.WithIdentity:
// filterd sets the holder of a writer token) is checked by package access's
// rules, the chaincode's, and refused with ledger.ErrForbidden as the
// chaincode refuses it; its record keeps the identity's ID and role. A write
// without one is the operator's (filterd's admin token, ledgerctl on the file
// itself): no rule applies, and the writer recorded is the one named by
// ledger.WithWriter, or one with ID DefaultWriterID.
//
// Regulations: the writer of the first put becomes the owner and Version
// counts the puts from 1. A regulation that is deleted and put again is a new
// regulation, owned by the writer of that put; its Version continues from the
// last version of the deleted one, so that the versions in a subject's
// history never repeat.
//
// Governance (governance.go): the registry, proposals and their approvals,
// project bindings and attestations of host facts are entries of the same
// chain, replayed by Verify; host writes are checked against the registry
// in force and keep an attestation while the facts stay the same, and a
// regulation's creation against its project's binding.
//
// Placements (placement.go, ledger.Residency): each placement a witness
// records is an entry of the same chain, with the verdict of the one
// decision on the state its write saw, which Verify decides again on the
// state replayed up to it; a VM's placements, or a project's, in a period
// are read from an index ordered by VM and time.
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
	"os"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
	"go.uber.org/zap"

	"github.com/ledgerfence/ledgerfence/pkg/ledger"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/head"
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
	// Governance's, made by the first write of their kind (stateBucket).
	bucketRegistry  = []byte("registry")
	bucketProposals = []byte("proposals")
	bucketBindings  = []byte("bindings")

	metaFormat = []byte("format")
	metaHead   = []byte("head")
)

var allBuckets = [][]byte{bucketMeta, bucketChain, bucketIndex, bucketHosts, bucketRegulations}

// Ledger is the embedded ledger. It is safe for concurrent use.
type Ledger struct {
	db       *bolt.DB
	path     string
	headPath string
	readOnly bool
	clock    func() time.Time
	log      *zap.Logger
	signer   *head.Signer

	// ctx is cancelled by Close; watchers and waiting calls end with it.
	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	closed   bool
	changed  chan struct{} // closed and replaced after each committed write
	watchers sync.WaitGroup

	// wmu orders writes: a write commits, then records its head (tip),
	// before the next write starts.
	wmu sync.Mutex
	// tip is the head after the last commit, with the genesis.
	tip atomic.Pointer[remembered]
	// The head file: written by headLoop after commits (at most every
	// headFileInterval), and by Close.
	headMu      sync.Mutex
	headWritten head.Head
	headErr     error
	headKick    chan struct{}
	headDone    chan struct{}

	// regCache is the registry in force as last read (registryInForce).
	regCache atomic.Pointer[registryCache]

	signMu  sync.Mutex
	signed  atomic.Pointer[head.Signed]
	damaged atomic.Pointer[error]

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
	signer      *head.Signer
	// noHeadFile keeps the head file as Open found it (benchmarks compare
	// writes with and without it).
	noHeadFile bool
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

// WithHeadSigner signs the ledger's head with s: at open, and each new head
// when it is first asked for (SignedHead).
func WithHeadSigner(s *head.Signer) Option { return func(o *options) { o.signer = s } }

func newOptions(opts []Option) options {
	o := options{clock: time.Now, log: zap.NewNop(), openTimeout: DefaultOpenTimeout}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// Open opens the ledger file at path for reading and writing, creating it
// in a directory that holds neither it nor its head file. It refuses, with an
// error matching ledger.ErrUnavailable, a file that is not the ledger the
// head file remembers, and says why: missing (the head file remembers a
// ledger; errors match ErrTampered), without a head file (ErrTampered),
// empty, truncated or otherwise damaged (ErrCorrupt), or one whose chain
// Verify finds broken, rolled back or rewritten (ErrTampered). A file held by
// another process makes Open fail after the open timeout.
func Open(path string, opts ...Option) (*Ledger, error) {
	o := newOptions(opts)
	hp := HeadFilePath(path)
	refuse := func(err error, msg string) (*Ledger, error) {
		return nil, ledger.Errorf(ledger.ErrUnavailable, err, fmt.Sprintf("embedded ledger %s: %s", path, msg))
	}
	rem, hasHead, herr := readHeadFile(hp)
	_, serr := os.Stat(path)
	switch {
	case herr != nil:
		return refuse(herr, herr.Error())
	case errors.Is(serr, os.ErrNotExist) && hasHead && rem.Height > 0:
		err := fmt.Errorf("%w: %s is missing, and its head file %s remembers %d entries (head %s)", ErrTampered, path, hp, rem.Height, rem.Head)
		return refuse(err, err.Error())
	case errors.Is(serr, os.ErrNotExist):
		// A new ledger. Its head file first: a ledger file never exists
		// without one. (A head file of height 0 without its ledger file is
		// what a crash between the two leaves.)
		rem = remembered{Head: head.Head{Hash: head.ZeroHash}, Time: o.clock().UTC()}
		if err := writeHeadFile(hp, rem); err != nil {
			return refuse(err, fmt.Sprintf("cannot create its head file: %v", err))
		}
	case serr != nil:
		return refuse(serr, fmt.Sprintf("cannot open it: %v", serr))
	case !hasHead:
		err := fmt.Errorf("%w: %s has no head file (%s): nothing tells that it is the ledger this directory held (a ledger of an older version, or the head file was removed); "+
			"check it with ledgerctl verify --expect-head, then ledgerctl adopt writes its head file", ErrTampered, path, hp)
		return refuse(err, err.Error())
	}

	l, err := open(path, o, false)
	if err != nil {
		return nil, err
	}
	rep, err := l.Verify(context.Background())
	if err != nil {
		l.Close()
		return refuse(err, "refused: "+err.Error())
	}
	l.tip.Store(&remembered{Genesis: rep.Genesis, Head: rep.ChainHead()})
	l.headWritten = *rep.HeadFile
	if rep.HeadFileBehind > 0 {
		l.log.Warn("the head file was behind the ledger (a crash before the head file of the last commits was written); writing it",
			zap.Uint64("entries_behind", rep.HeadFileBehind), zap.Uint64("height", rep.Height), zap.String("hash", rep.Head))
		if err := l.flushHead(); err != nil {
			l.Close()
			return refuse(err, fmt.Sprintf("cannot write its head file: %v", err))
		}
	}
	if err := l.sign(false); err != nil {
		l.Close()
		return refuse(err, fmt.Sprintf("cannot sign its head: %v", err))
	}
	if !o.noHeadFile {
		l.headKick, l.headDone = make(chan struct{}, 1), make(chan struct{})
		go l.headLoop()
	}
	return l, nil
}

// OpenReadOnly opens the ledger file at path without ever writing to it
// (bbolt's read-only mode, a shared lock), for Verify: it checks the file's
// structure (empty, truncated or damaged files fail with ErrCorrupt) but not
// its chain or head file. Writes fail with ledger.ErrUnavailable.
func OpenReadOnly(path string, opts ...Option) (*Ledger, error) {
	return open(path, newOptions(opts), true)
}

// open opens and checks the bbolt file and makes its buckets if it is new.
func open(path string, o options, readOnly bool) (*Ledger, error) {
	db, err := openBolt(path, o, readOnly)
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, ledger.Errorf(ledger.ErrUnavailable, err,
			fmt.Sprintf("embedded ledger %s is locked by another process (waited %s)", path, o.openTimeout))
	}
	if err != nil {
		return nil, ledger.Errorf(ledger.ErrUnavailable, err, fmt.Sprintf("cannot open embedded ledger %s: %v", path, err))
	}
	if err := guard(func() error { return initialize(db, readOnly) }); err != nil {
		db.Close()
		if !errors.Is(err, ErrCorrupt) {
			err = fmt.Errorf("%w: %v", ErrCorrupt, err)
		}
		return nil, ledger.Errorf(ledger.ErrUnavailable, err, fmt.Sprintf("cannot open embedded ledger %s: %v", path, err))
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Ledger{
		db:       db,
		path:     path,
		headPath: HeadFilePath(path),
		readOnly: readOnly,
		clock:    o.clock,
		log:      o.log.With(zap.String("ledger", path)),
		signer:   o.signer,
		ctx:      ctx,
		cancel:   cancel,
		changed:  make(chan struct{}),
	}, nil
}

// initialize creates the buckets of a new file and checks the format of an
// existing one. An existing file is only read.
func initialize(db *bolt.DB, readOnly bool) error {
	present := 0
	err := db.View(func(tx *bolt.Tx) error {
		for _, name := range allBuckets {
			if tx.Bucket(name) != nil {
				present++
			}
		}
		if present == 0 {
			return nil
		}
		if present != len(allBuckets) {
			return fmt.Errorf("the file has %d of the ledger's %d buckets", present, len(allBuckets))
		}
		return checkFormat(tx)
	})
	if err != nil || present > 0 {
		return err
	}
	if readOnly {
		return errors.New("the file holds no ledger")
	}
	return db.Update(func(tx *bolt.Tx) error {
		for _, name := range allBuckets {
			if _, err := tx.CreateBucket(name); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketMeta).Put(metaFormat, []byte(formatVersion))
	})
}

// checkFormat checks the format marker and the chain head of a file.
func checkFormat(tx *bolt.Tx) error {
	switch f := tx.Bucket(bucketMeta).Get(metaFormat); {
	case f == nil:
		return errors.New("the file has no format marker")
	case string(f) != formatVersion:
		return fmt.Errorf("file format %q, want %q", f, formatVersion)
	}
	_, err := readHead(tx)
	return err
}

// sign signs the tip, when the ledger has a signer, unless (again false)
// the head signed last is the tip. The tip is read under signMu, so that the
// head signed last never goes back.
func (l *Ledger) sign(again bool) error {
	if l.signer == nil {
		return nil
	}
	l.signMu.Lock()
	defer l.signMu.Unlock()
	tip := l.tip.Load().Head
	if s := l.signed.Load(); !again && s != nil && s.Head == tip {
		return nil
	}
	s, err := l.signer.Sign(tip, l.clock())
	if err != nil {
		return err
	}
	l.signed.Store(&s)
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
		if l.headDone != nil {
			<-l.headDone
			if err := l.flushHead(); err != nil {
				l.closeErr = ledger.Errorf(ledger.ErrUnavailable, err, "writing the head file at close failed")
			}
		}
		if err := l.db.Close(); err != nil && l.closeErr == nil {
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
	return l.Damaged()
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
	if errors.Is(err, ErrCorrupt) {
		return ledger.Errorf(ledger.ErrUnavailable, err, "the embedded ledger's file is damaged")
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
