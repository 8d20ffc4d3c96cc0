// Package ledger defines what ledgerfence keeps in its ledger (hosts,
// regulations, their history, a stream of changes) and the Ledger interface
// that its backends implement: embedded (bbolt, one machine), fabric
// (Hyperledger Fabric through fabric-gateway) and remote (a filterd serving
// the embedded ledger).
//
// Error contract: every backend returns errors that match, with errors.Is,
// one of ErrNotFound (no such record), ErrInvalid (the input breaks
// pkg/filter's rules; nothing was written), ErrForbidden (the writer may not
// write this record) or ErrUnavailable (the ledger could not answer; the
// caller may retry). Their text is safe to show to a client.
package ledger

import (
	"context"
	"errors"
	"time"

	"github.com/ledgerfence/ledgerfence/pkg/filter"
)

// Sentinel errors; match with errors.Is.
var (
	ErrNotFound    = errors.New("ledger: not found")
	ErrInvalid     = errors.New("ledger: invalid input")
	ErrForbidden   = errors.New("ledger: forbidden")
	ErrUnavailable = errors.New("ledger: unavailable")
)

// Error carries a sentinel (Kind) and a message safe for clients.
type Error struct {
	Kind error
	Msg  string
	Err  error // the underlying cause, for logs; may be nil
}

func (e *Error) Error() string {
	if e.Msg == "" {
		return e.Kind.Error()
	}
	return e.Kind.Error() + ": " + e.Msg
}

// Is matches the sentinel kind.
func (e *Error) Is(target error) bool { return target == e.Kind }

// Unwrap returns the underlying cause.
func (e *Error) Unwrap() error { return e.Err }

// Errorf builds an *Error of the given kind.
func Errorf(kind error, cause error, msg string) error {
	return &Error{Kind: kind, Msg: msg, Err: cause}
}

// Writer identifies who wrote a record: an MSP (Fabric organisation; empty on
// the embedded ledger) and an identity within it, with the role its
// credential carried (package access; empty in records written before roles
// were recorded). String, the form a regulation's owner takes, leaves the
// role out.
type Writer struct {
	MSP  string `json:"msp,omitempty"`
	ID   string `json:"id"`
	Role string `json:"role,omitempty"`
}

func (w Writer) String() string {
	if w.MSP == "" {
		return w.ID
	}
	return w.MSP + "/" + w.ID
}

// HostRecord is a host as stored, with who last changed it.
type HostRecord struct {
	filter.Host
	// Writer is who claimed the facts (the last to change them); an
	// attestation does not change it.
	Writer Writer `json:"writer"`
	// Attestation is the last attestation of the host's facts; see Attested.
	Attestation *Attestation `json:"attestation,omitempty"`
	TxID        string       `json:"tx_id"`
	UpdatedAt   time.Time    `json:"updated_at"`
}

// RegulationRecord is a regulation as stored, with who last changed it.
type RegulationRecord struct {
	filter.Regulation
	Writer    Writer    `json:"writer"`
	TxID      string    `json:"tx_id"`
	UpdatedAt time.Time `json:"updated_at"`
}

// HostPage is one page of a host listing. Next is the name to pass as after
// for the next page, empty on the last page.
type HostPage struct {
	Hosts []HostRecord `json:"hosts"`
	Next  string       `json:"next,omitempty"`
}

// Kind is what a record or an event is about.
type Kind string

const (
	KindHost       Kind = "host"
	KindRegulation Kind = "regulation"
)

// Op is what a write did.
type Op string

const (
	OpPut    Op = "put"
	OpDelete Op = "delete"
)

// Change is one version in a key's history.
type Change struct {
	TxID   string    `json:"tx_id"`
	Block  uint64    `json:"block"`
	Time   time.Time `json:"time"`
	Writer Writer    `json:"writer"`
	Op     Op        `json:"op"`
	// The value written, one of them by Kind (none for a delete).
	Host       *HostRecord       `json:"host,omitempty"`
	Regulation *RegulationRecord `json:"regulation,omitempty"`
	Registry   *RegistryRecord   `json:"registry,omitempty"`
	Proposal   *ProposalRecord   `json:"proposal,omitempty"`
	Binding    *BindingRecord    `json:"binding,omitempty"`
	Placement  *PlacementRecord  `json:"placement,omitempty"`
}

// Event tells that a record changed. Events are delivered at least once and
// in commit order; a consumer resumes with the Block of the last event it
// handled. Host or Regulation carries the new value (nil for a delete).
type Event struct {
	Kind       Kind              `json:"kind"`
	Key        string            `json:"key"`
	Op         Op                `json:"op"`
	TxID       string            `json:"tx_id"`
	Block      uint64            `json:"block"`
	Writer     Writer            `json:"writer"`
	Time       time.Time         `json:"time"`
	Host       *HostRecord       `json:"host,omitempty"`
	Regulation *RegulationRecord `json:"regulation,omitempty"`
	Registry   *RegistryRecord   `json:"registry,omitempty"`
	Proposal   *ProposalRecord   `json:"proposal,omitempty"`
	Binding    *BindingRecord    `json:"binding,omitempty"`
	Placement  *PlacementRecord  `json:"placement,omitempty"`
}

// Lookup is a batched read: the regulations of some subjects and the records
// of some hosts, as of one ledger height. Missing records are absent from the
// maps, not errors.
type Lookup struct {
	Height uint64
	// RequireAttested is the registry's cloud-wide setting at that height.
	RequireAttested bool
	Regulations     map[filter.Subject]RegulationRecord
	Hosts           map[string]HostRecord
}

// Ledger is the store of hosts and regulations. Every method honours ctx.
type Ledger interface {
	// GetHost returns one host, or ErrNotFound.
	GetHost(ctx context.Context, name string) (HostRecord, error)
	// ListHosts returns up to limit hosts whose names sort after after.
	ListHosts(ctx context.Context, after string, limit int) (HostPage, error)
	// PutHost validates, normalises and stores h. An unchanged record is not
	// written again: changed is false and the stored record is returned.
	PutHost(ctx context.Context, h filter.Host) (rec HostRecord, changed bool, err error)

	// GetRegulation returns one regulation, or ErrNotFound.
	GetRegulation(ctx context.Context, subject filter.Subject) (RegulationRecord, error)
	// PutRegulation validates, normalises (filter.NormalizeTerms) and
	// stores the terms of subject's regulation. The first writer becomes the
	// owner.
	PutRegulation(ctx context.Context, subject filter.Subject, terms filter.Terms) (rec RegulationRecord, changed bool, err error)
	// DeleteRegulation removes a regulation, or returns ErrNotFound.
	DeleteRegulation(ctx context.Context, subject filter.Subject) error

	// Lookup reads regulations and hosts in one batch.
	Lookup(ctx context.Context, subjects []filter.Subject, hosts []string) (Lookup, error)
	// History returns every version of a record, oldest first.
	History(ctx context.Context, kind Kind, key string) ([]Change, error)
	// Height is the number of the last committed block (embedded: the last
	// entry of the hash chain).
	Height(ctx context.Context) (uint64, error)
	// Watch streams the events of blocks after the given height until ctx
	// ends or the stream breaks; the channel is closed then. Resume with the
	// Block of the last event handled.
	Watch(ctx context.Context, after uint64) (<-chan Event, error)
	// Close releases the backend.
	Close() error

	Governance
	Residency
}

type writerKey struct{}

// WithWriter returns a context that names the writer of the writes made with
// it: the operator's own writes on the embedded ledger, which no access rule
// checks (a writer that the rules check is an access.Identity, set with
// access.WithIdentity). Backends whose writer is their credential's ignore
// it: fabric (the signing certificate) and remote (filterd records the
// token's identity).
func WithWriter(ctx context.Context, w Writer) context.Context {
	return context.WithValue(ctx, writerKey{}, w)
}

// WriterFrom returns the writer named by WithWriter, if any.
func WriterFrom(ctx context.Context) (Writer, bool) {
	w, ok := ctx.Value(writerKey{}).(Writer)
	return w, ok
}
