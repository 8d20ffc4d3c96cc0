package hostagent

import (
	"context"
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ledgerfence/ledgerfence/pkg/cloud"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
)

type recorded struct {
	ps   []ledger.Placement
	fail bool
}

func (r *recorded) RecordPlacement(_ context.Context, p ledger.Placement) (ledger.PlacementRecord, bool, error) {
	if r.fail {
		return ledger.PlacementRecord{}, false, ledger.Errorf(ledger.ErrUnavailable, nil, "down")
	}
	if _, err := ledger.NormalizePlacement(p); err != nil {
		return ledger.PlacementRecord{}, false, err
	}
	r.ps = append(r.ps, p)
	return ledger.PlacementRecord{Placement: p}, true, nil
}

const (
	wvm1 = "11111111-1111-4111-8111-111111111111"
	wvm2 = "22222222-2222-4222-8222-222222222222"
)

// The witness writes on change only: a VM that appears, a VM that is gone;
// a sweep that sees what the last saw writes nothing, and a failed write
// is made again at the next sweep.
func TestWitnessRecordsChangesOnly(t *testing.T) {
	rec := &recorded{}
	w := &Witness{Host: "hm1", Recorder: rec, Clock: SystemClock{}, Metrics: NewMetrics(prometheus.NewRegistry())}
	ctx := context.Background()
	one := []cloud.Server{{ID: wvm1, ProjectID: "p1"}}
	two := []cloud.Server{{ID: wvm1, ProjectID: "p1"}, {ID: wvm2, ProjectID: "p2"}}
	if err := w.Observe(ctx, one); err != nil || len(rec.ps) != 1 || rec.ps[0].Op != ledger.OpObserved || rec.ps[0].Host != "hm1" {
		t.Fatalf("first sweep: %v %+v", err, rec.ps)
	}
	if err := w.Observe(ctx, one); err != nil || len(rec.ps) != 1 {
		t.Fatalf("a sweep that changes nothing wrote: %+v", rec.ps)
	}
	rec.fail = true
	if err := w.Observe(ctx, two); !errors.Is(err, ledger.ErrUnavailable) {
		t.Fatalf("a failed write: %v", err)
	}
	rec.fail = false
	if err := w.Observe(ctx, two); err != nil || len(rec.ps) != 2 || rec.ps[1].VM != wvm2 || rec.ps[1].Project != "p2" {
		t.Fatalf("the write that failed, again: %v %+v", err, rec.ps)
	}
	if err := w.Observe(ctx, []cloud.Server{{ID: wvm2, ProjectID: "p2"}}); err != nil || len(rec.ps) != 3 {
		t.Fatalf("a VM gone: %v %+v", err, rec.ps)
	}
	if g := rec.ps[2]; g.Op != ledger.OpGone || g.VM != wvm1 || g.From != "hm1" || g.Host != "" {
		t.Fatalf("gone: %+v", g)
	}
	if err := w.Observe(ctx, []cloud.Server{{ID: wvm2, ProjectID: "p2"}, {ID: "not-a-uuid"}}); err != nil || len(rec.ps) != 3 {
		t.Fatalf("a server whose id is no UUID: %v %+v", err, rec.ps)
	}
}
