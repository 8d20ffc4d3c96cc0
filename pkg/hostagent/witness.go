package hostagent

import (
	"context"
	"fmt"
	"strconv"

	"go.uber.org/zap"

	"github.com/ledgerfence/ledgerfence/pkg/cloud"
	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
)

// PlacementRecorder records placements; every ledger.Ledger that keeps them
// (ledger.Residency) is one.
type PlacementRecorder interface {
	RecordPlacement(ctx context.Context, p ledger.Placement) (ledger.PlacementRecord, bool, error)
}

// Witness is the host agent's word on where VMs run, the second witness of
// residency evidence (Nova's notifications, read by the recorder, are the
// first). After each sweep it records, on change only, that it sees a VM
// on its host (ledger.OpObserved) or no longer sees one it saw
// (ledger.OpGone); a sweep that changes nothing writes nothing. What it saw
// is kept in memory: after a restart it records each VM it sees once more.
type Witness struct {
	Host     string
	Recorder PlacementRecorder
	Clock    Clock
	Log      *zap.Logger
	Metrics  *Metrics // may be nil

	// seen: VM uuid to project, the VMs whose presence is on the ledger.
	seen map[string]string
}

// Observe records the changes between what the ledger was told and the
// servers a sweep listed. A write that fails is tried again at the next
// sweep; the error of the first is returned.
func (w *Witness) Observe(ctx context.Context, servers []cloud.Server) error {
	if w.seen == nil {
		w.seen = make(map[string]string)
	}
	now := w.Clock.Now().UTC()
	ref := func(vm string) string {
		return "hostagent:" + w.Host + ":" + vm + ":" + strconv.FormatInt(now.UnixNano(), 10)
	}
	var first error
	record := func(p ledger.Placement) bool {
		rec, changed, err := w.Recorder.RecordPlacement(ctx, p)
		outcome := "written"
		switch {
		case err != nil:
			outcome = "error"
			if first == nil {
				first = fmt.Errorf("recording that %s %s: %w", p.VM, p.Op, err)
			}
			w.log().Warn("recording a placement failed; tried again at the next sweep",
				zap.String("instance_uuid", p.VM), zap.String("op", p.Op), zap.Error(err))
		case !changed:
			outcome = "unchanged"
		case rec.Verdict != nil && !rec.Verdict.Allowed:
			w.log().Warn("placement recorded as a violation", zap.String("instance_uuid", p.VM),
				zap.String("host", p.Host), zap.String("reason", string(rec.Verdict.Reason)))
		}
		if w.Metrics != nil {
			w.Metrics.placements.WithLabelValues(p.Op, outcome).Inc()
		}
		return err == nil
	}
	present := make(map[string]bool, len(servers))
	for _, srv := range servers {
		vm, err := filter.NormalizeUUID(srv.ID)
		if err != nil {
			continue
		}
		present[vm] = true
		if _, ok := w.seen[vm]; ok {
			continue
		}
		project, _ := filter.NormalizeProjectID(srv.ProjectID)
		if record(ledger.Placement{VM: vm, Project: project, Host: w.Host, Op: ledger.OpObserved, At: now,
			Witness: ledger.WitnessHostAgent, Ref: ref(vm)}) {
			w.seen[vm] = project
		}
	}
	for vm, project := range w.seen {
		if present[vm] {
			continue
		}
		if record(ledger.Placement{VM: vm, Project: project, From: w.Host, Op: ledger.OpGone, At: now,
			Witness: ledger.WitnessHostAgent, Ref: ref(vm)}) {
			delete(w.seen, vm)
		}
	}
	return first
}

func (w *Witness) log() *zap.Logger {
	if w.Log == nil {
		return zap.NewNop()
	}
	return w.Log
}
