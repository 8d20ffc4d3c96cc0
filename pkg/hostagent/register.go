package hostagent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
)

// HostStore is the part of ledger.Ledger that registration uses.
type HostStore interface {
	GetHost(ctx context.Context, name string) (ledger.HostRecord, error)
	PutHost(ctx context.Context, h filter.Host) (ledger.HostRecord, bool, error)
}

// HeadChecker checks, before the agent trusts the ledger, that its signed
// head extends the last one seen (cmd/hostagent: a head.Witness over the
// filterd). An error matching head.ErrRefused is final; one matching
// ledger.ErrUnavailable is retried.
type HeadChecker interface {
	CheckHead(ctx context.Context) error
}

// Registrar writes the host's record, retrying while the ledger is
// unavailable.
type Registrar struct {
	Ledger HostStore
	// Heads, when set, is asked before every try: a ledger whose chain does
	// not extend the last head seen is never written to.
	Heads   HeadChecker
	Backoff Backoff
	Clock   Clock
	// AttemptTimeout bounds one try (a read and, if needed, a write).
	AttemptTimeout time.Duration
	Log            *zap.Logger
	Metrics        *Metrics // may be nil
}

// Registration is the outcome of a successful Register.
type Registration struct {
	Record ledger.HostRecord
	// Changed is false when the ledger already held the same facts: nothing
	// was written.
	Changed  bool
	Attempts int
}

// Register validates h with pkg/filter's rules and makes the ledger hold it.
// It reads the record first and writes only when the facts differ, so that a
// reboot with the same facts writes nothing. While the ledger is unavailable
// (ledger.ErrUnavailable, or a try that timed out) it retries with backoff
// until ctx ends; any other error (ErrInvalid, ErrForbidden, ...) is
// returned at once. When ctx ends first the error matches
// ledger.ErrUnavailable and says how long and how often it tried.
func (r *Registrar) Register(ctx context.Context, h filter.Host) (Registration, error) {
	want, err := filter.NormalizeHost(h)
	if err != nil {
		return Registration{}, ledger.Errorf(ledger.ErrInvalid, err, err.Error())
	}
	log := r.Log
	if log == nil {
		log = zap.NewNop()
	}
	log = log.With(zap.String("host", want.Name))
	start := r.Clock.Now()
	var last error
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return Registration{Attempts: attempt}, r.gaveUp(want.Name, start, attempt, last, err)
		}
		rec, changed, err := r.try(ctx, want)
		if err == nil {
			r.Metrics.registration(outcome(changed))
			return Registration{Record: rec, Changed: changed, Attempts: attempt + 1}, nil
		}
		if !retryable(ctx, err) {
			r.Metrics.registration("error")
			return Registration{Attempts: attempt + 1}, err
		}
		last = err
		r.Metrics.registration("unavailable")
		d := r.Backoff.Delay(attempt)
		log.Warn("ledger unavailable, retrying", zap.Int("attempt", attempt+1), zap.Duration("retry_in", d), zap.Error(err))
		select {
		case <-ctx.Done():
			return Registration{Attempts: attempt + 1}, r.gaveUp(want.Name, start, attempt+1, last, ctx.Err())
		case <-r.Clock.After(d):
		}
	}
}

func outcome(changed bool) string {
	if changed {
		return "written"
	}
	return "unchanged"
}

func (r *Registrar) try(ctx context.Context, want filter.Host) (ledger.HostRecord, bool, error) {
	if r.AttemptTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, r.AttemptTimeout)
		defer cancel()
	}
	if r.Heads != nil {
		if err := r.Heads.CheckHead(ctx); err != nil {
			return ledger.HostRecord{}, false, err
		}
	}
	cur, err := r.Ledger.GetHost(ctx, want.Name)
	switch {
	case err == nil:
		if cur.Host.Equal(want) {
			return cur, false, nil
		}
	case errors.Is(err, ledger.ErrNotFound):
	default:
		return ledger.HostRecord{}, false, err
	}
	return r.Ledger.PutHost(ctx, want)
}

// retryable: the ledger was unavailable, or one try timed out while the
// overall context is still alive.
func retryable(ctx context.Context, err error) bool {
	if errors.Is(err, ledger.ErrUnavailable) {
		return true
	}
	return ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded)
}

func (r *Registrar) gaveUp(host string, start time.Time, attempts int, last, cause error) error {
	waited := r.Clock.Now().Sub(start).Round(time.Millisecond)
	if last == nil {
		return ledger.Errorf(ledger.ErrUnavailable, cause, fmt.Sprintf("host %s not registered: %v", host, cause))
	}
	return ledger.Errorf(ledger.ErrUnavailable, last,
		fmt.Sprintf("host %s not registered: the ledger stayed unavailable for %s (%d attempts); last error: %v", host, waited, attempts, last))
}
