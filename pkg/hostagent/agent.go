package hostagent

import (
	"context"
	"errors"
	"time"

	"go.uber.org/zap"

	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/head"
)

// ComputeServices tells whether Nova knows a nova-compute service by name.
type ComputeServices interface {
	ComputeServiceExists(ctx context.Context, host string) (bool, error)
}

// Agent registers its host and, as a daemon, keeps the record asserted and
// sweeps.
type Agent struct {
	Host      filter.Host
	Registrar *Registrar
	// Services confirms the name with Nova; nil skips the check.
	Services ComputeServices
	// Sweeper is nil when there is nothing to sweep with (no OpenStack
	// credentials, or --no-sweep).
	Sweeper  *Sweeper
	Once     bool
	Interval time.Duration
	// Deadline bounds the first registration; 0 waits for the ledger forever.
	Deadline time.Duration
	Clock    Clock
	Log      *zap.Logger
}

// Name confirmation outcomes.
const (
	NameConfirmed   = "confirmed"
	NameUnknown     = "unknown to Nova"
	NameUnconfirmed = "not confirmed"
	NameNotChecked  = "not checked"
)

// ConfirmName asks Nova whether a nova-compute service named like the host
// exists, and warns clearly if not. It never fails the agent: a host may
// register before its nova-compute first reports.
func (a *Agent) ConfirmName(ctx context.Context) string {
	if a.Services == nil {
		a.Log.Info("no OpenStack credentials: the host name is not confirmed with Nova", zap.String("host", a.Host.Name))
		return NameNotChecked
	}
	ok, err := a.Services.ComputeServiceExists(ctx, a.Host.Name)
	switch {
	case err != nil:
		a.Log.Warn("could not confirm the host name with Nova", zap.String("host", a.Host.Name), zap.Error(err))
		return NameUnconfirmed
	case !ok:
		a.Log.Warn("Nova has no nova-compute service with this host name: Nova's scheduler will not match this record; check --host or nova.conf [DEFAULT] host",
			zap.String("host", a.Host.Name))
		return NameUnknown
	}
	a.Log.Info("host name confirmed: Nova has a nova-compute service of this name", zap.String("host", a.Host.Name))
	return NameConfirmed
}

// Run registers the host (retrying while the ledger is unavailable, up to
// Deadline) and returns in once mode. Otherwise it sweeps and re-asserts
// the record every Interval until ctx ends, and returns nil then. The first
// registration's error is returned; later failures are logged and retried
// at the next interval, but a ledger whose head is refused (head.ErrRefused)
// ends the run with that error: the agent neither writes to it nor sweeps
// with it.
func (a *Agent) Run(ctx context.Context) error {
	a.ConfirmName(ctx)
	if err := a.register(ctx, a.Deadline); err != nil {
		return err
	}
	if a.Once {
		return nil
	}
	if a.Sweeper == nil {
		a.Log.Info("the compliance sweep is off", zap.String("host", a.Host.Name))
	}
	for {
		if a.Sweeper != nil {
			a.sweep(ctx)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-a.Clock.After(a.Interval):
		}
		if err := a.register(ctx, a.Interval); err != nil && ctx.Err() == nil {
			if errors.Is(err, head.ErrRefused) {
				return err
			}
			a.Log.Error("re-asserting the host record failed", zap.String("host", a.Host.Name), zap.Error(err))
		}
	}
}

func (a *Agent) register(ctx context.Context, deadline time.Duration) error {
	if deadline > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, deadline)
		defer cancel()
	}
	reg, err := a.Registrar.Register(ctx, a.Host)
	if err != nil {
		return err
	}
	what := "host record unchanged: nothing written"
	if reg.Changed {
		what = "host registered"
	}
	a.Log.Info(what, zap.String("host", reg.Record.Host.Name), zap.String("country", reg.Record.Country),
		zap.Strings("organizations", reg.Record.Organizations), zap.String("region", reg.Record.Region),
		zap.String("tx_id", reg.Record.TxID), zap.Int("attempts", reg.Attempts))
	return nil
}

func (a *Agent) sweep(ctx context.Context) {
	rep, err := a.Sweeper.Sweep(ctx)
	if err != nil {
		if ctx.Err() == nil {
			lvl := a.Log.Error
			if errors.Is(err, ledger.ErrUnavailable) {
				lvl = a.Log.Warn
			}
			lvl("compliance sweep failed", zap.String("host", a.Host.Name), zap.Error(err))
		}
		return
	}
	a.Log.Info("compliance sweep done", zap.String("host", a.Host.Name), zap.Int("servers", rep.Servers),
		zap.Int("regulated", rep.Regulated), zap.Int("violations", len(rep.Violations)),
		zap.Uint64("ledger_height", rep.Height), zap.Duration("duration", rep.Duration))
}
