package recorder

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ledgerfence/ledgerfence/pkg/ledger"
	"github.com/ledgerfence/ledgerfence/pkg/nova/notify"
)

type placements struct {
	got []ledger.Placement
	err error
}

func (p *placements) RecordPlacement(_ context.Context, pl ledger.Placement) (ledger.PlacementRecord, bool, error) {
	if p.err != nil {
		return ledger.PlacementRecord{}, false, p.err
	}
	p.got = append(p.got, pl)
	return ledger.PlacementRecord{Placement: pl}, true, nil
}

func TestLedgerSink(t *testing.T) {
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	move := func(op notify.Op, state notify.State, host, before string) notify.Move {
		return notify.Move{VM: "6f1c0d3e-8b2a-4c1d-9e7f-0a1b2c3d4e5f", Project: "p1", Op: op, State: state, Host: host,
			HostBefore: before, Time: at, MessageID: "m-" + string(op) + "-" + string(state), RequestID: "req-1"}
	}
	l := &placements{}
	s := Ledger{L: l}
	ctx := context.Background()
	for _, m := range []notify.Move{
		move(notify.OpBoot, notify.StateOnHost, "hm1", ""),
		move(notify.OpLiveMigration, notify.StateLeft, "", "hm1"), // the source's word: nothing
		move(notify.OpLiveMigration, notify.StateOnHost, "hm2", "hm1"),
		move(notify.OpResize, notify.StateOnHost, "hm3", "hm2"),
		move(notify.OpShelveOffload, notify.StateNoHost, "", "hm3"),
		move(notify.OpDelete, notify.StateNoHost, "", ""),
	} {
		if err := s.Record(ctx, m); err != nil {
			t.Fatalf("%+v: %v", m, err)
		}
	}
	want := []struct{ op, host, from string }{
		{ledger.OpBoot, "hm1", ""}, {ledger.OpLiveMigration, "hm2", "hm1"}, {ledger.OpResize, "hm3", "hm2"},
		{ledger.OpShelveOffload, "", "hm3"}, {ledger.OpDeleteVM, "", ""},
	}
	if len(l.got) != len(want) {
		t.Fatalf("%d placements, want %d: %+v", len(l.got), len(want), l.got)
	}
	for i, w := range want {
		p := l.got[i]
		if p.Op != w.op || p.Host != w.host || p.From != w.from || p.Witness != ledger.WitnessNova || p.Ref == "" || !p.At.Equal(at) {
			t.Errorf("placement %d: %+v, want %+v", i, p, w)
		}
	}
	// A move without a message id, and the ledger's refusals, are
	// permanent; the ledger being down is not.
	var perm *PermanentError
	bad := move(notify.OpBoot, notify.StateOnHost, "hm1", "")
	bad.MessageID = ""
	if err := s.Record(ctx, bad); !errors.As(err, &perm) {
		t.Errorf("no message id: %v, want permanent", err)
	}
	l.err = ledger.Errorf(ledger.ErrForbidden, nil, "no")
	if err := s.Record(ctx, move(notify.OpBoot, notify.StateOnHost, "hm1", "")); !errors.As(err, &perm) {
		t.Errorf("forbidden: %v, want permanent", err)
	}
	l.err = ledger.Errorf(ledger.ErrUnavailable, nil, "down")
	if err := s.Record(ctx, move(notify.OpBoot, notify.StateOnHost, "hm1", "")); err == nil || errors.As(err, &perm) {
		t.Errorf("unavailable: %v, want a retryable error", err)
	}
}
