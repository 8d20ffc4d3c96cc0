package residency

import (
	"testing"
	"time"

	"github.com/ledgerfence/ledgerfence/pkg/ledger"
)

func event(p ledger.PlacementRecord) ledger.Event {
	return ledger.Event{Kind: ledger.KindPlacement, Key: p.VM, Placement: &p}
}

func TestTrackerTellsOfUnconfirmedPlacements(t *testing.T) {
	var got []Discrepancy
	tr := &Tracker{Bound: 15 * time.Minute, Emit: func(d Discrepancy) { got = append(got, d) }}
	// Confirmed: Nova's word, then the host agent's within the bound.
	tr.Observe(event(place(ledger.WitnessNova, ledger.OpBoot, "hm1", 0, true)))
	tr.Observe(event(place(ledger.WitnessHostAgent, ledger.OpObserved, "hm1", 3, true)))
	// Unconfirmed: Nova's word alone; the host agent alone on another host.
	tr.Observe(event(place(ledger.WitnessNova, ledger.OpLiveMigration, "hm2", 60, true)))
	tr.Observe(event(place(ledger.WitnessHostAgent, ledger.OpObserved, "hm9", 61, true)))
	// Not a host: nothing to confirm.
	tr.Observe(event(place(ledger.WitnessNova, ledger.OpDeleteVM, "", 62, false)))
	tr.Observe(ledger.Event{Kind: ledger.KindHost})
	if tr.Pending() != 2 {
		t.Fatalf("pending %d, want 2", tr.Pending())
	}
	tr.Expire(at(70))
	if len(got) != 0 {
		t.Fatalf("told before the bound passed: %+v", got)
	}
	tr.Expire(at(90))
	if len(got) != 2 || tr.Pending() != 0 {
		t.Fatalf("after the bound: %+v, %d pending", got, tr.Pending())
	}
	kinds := map[string]string{}
	for _, d := range got {
		kinds[d.Placement.Host] = d.Label()
	}
	if kinds["hm2"] != KindNotConfirmed || kinds["hm9"] != KindHostAgentOnly {
		t.Errorf("kinds %v", kinds)
	}
}

func TestTrackerIsBounded(t *testing.T) {
	n := 0
	tr := &Tracker{MaxPending: 10, Emit: func(Discrepancy) { n++ }}
	for i := 0; i < 25; i++ {
		p := place(ledger.WitnessNova, ledger.OpBoot, "hm1", i, true)
		p.VM = "00000000-0000-4000-8000-0000000000" + string(rune('a'+i/16)) + string("0123456789abcdef"[i%16])
		tr.Observe(event(p))
	}
	if tr.Pending() > 10 || n+tr.Pending() != 25 {
		t.Fatalf("pending %d, told %d: want at most 10 kept and every other told", tr.Pending(), n)
	}
}
