package recorder

import (
	"context"
	"errors"
	"fmt"

	"github.com/ledgerfence/ledgerfence/pkg/ledger"
	"github.com/ledgerfence/ledgerfence/pkg/nova/notify"
)

// Ledger is the Sink that records each move as a placement of witness nova
// (ledger.Residency), for the recorder's credential (role recorder). A
// redelivered message has the same Nova message id, which is the
// placement's Ref, so it is recorded once. A move that only says the VM
// left a host (its destination's notification places it) records nothing.
// The ledger's refusals (invalid, forbidden) are permanent; anything else is
// tried again.
type Ledger struct {
	L interface {
		RecordPlacement(ctx context.Context, p ledger.Placement) (ledger.PlacementRecord, bool, error)
	}
}

// Record implements Sink.
func (s Ledger) Record(ctx context.Context, m notify.Move) error {
	p, ok, err := Placement(m)
	if err != nil {
		return Permanent(err)
	}
	if !ok {
		return nil
	}
	_, _, err = s.L.RecordPlacement(ctx, p)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ledger.ErrInvalid), errors.Is(err, ledger.ErrForbidden):
		return Permanent(err)
	}
	return err
}

// Placement is the placement a move records, and whether it records one.
func Placement(m notify.Move) (ledger.Placement, bool, error) {
	p := ledger.Placement{VM: m.VM, Project: m.Project, From: m.HostBefore, At: m.Time, RequestID: m.RequestID,
		Witness: ledger.WitnessNova, Ref: m.MessageID}
	if p.Ref == "" {
		return p, false, fmt.Errorf("move of %s has no message id: it could not be recorded once only", m.VM)
	}
	switch m.State {
	case notify.StateLeft:
		return p, false, nil
	case notify.StateOnHost:
		p.Host = m.Host
	case notify.StateNoHost:
	default:
		return p, false, fmt.Errorf("move of %s: unknown state %q", m.VM, m.State)
	}
	switch m.Op {
	case notify.OpBoot:
		p.Op = ledger.OpBoot
	case notify.OpLiveMigration:
		p.Op = ledger.OpLiveMigration
	case notify.OpResize:
		// Nova's notifications do not tell a cold migration from a
		// resize (a resize may change hosts too): both are recorded as a
		// resize, with the host before and after.
		p.Op = ledger.OpResize
	case notify.OpResizeRevert:
		p.Op = ledger.OpResizeRevert
	case notify.OpEvacuate:
		p.Op = ledger.OpEvacuate
	case notify.OpRebuild:
		p.Op = ledger.OpRebuild
	case notify.OpUnshelve:
		p.Op = ledger.OpUnshelve
	case notify.OpShelveOffload:
		p.Op = ledger.OpShelveOffload
	case notify.OpDelete:
		p.Op = ledger.OpDeleteVM
	default:
		return p, false, fmt.Errorf("move of %s: unknown operation %q", m.VM, m.Op)
	}
	if p.From == p.Host {
		p.From = ""
	}
	p, err := ledger.NormalizePlacement(p)
	return p, err == nil, err
}
