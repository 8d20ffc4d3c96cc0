package fabric_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
	"github.com/ledgerfence/ledgerfence/pkg/recorder"
	"github.com/ledgerfence/ledgerfence/pkg/recorder/rabbittest"
	"github.com/ledgerfence/ledgerfence/pkg/residency"
)

// TestRecorderOnFabric: the recorder command on the Fabric backend. A
// private RabbitMQ node; two recorder processes on its one queue, one as
// the identity "recorder" of Org1 through Org1's peer, the other as
// "recorder-org2" through Org2's, each configured by the environment only
// (LEDGERFENCE_LEDGER=fabric, LEDGERFENCE_FABRIC_*). The seed's hosts
// (Table 4), registered by their host agents, and VM1's regulation by vmm1.
// A VM's life is published as Nova sends it, every message twice: boot on
// hm1, live migration to hm2 (the destination's notification, then the
// source's), resize to hm5 (finish, then confirm from the source), a live
// migration forced to hm3 (Germany: forbidden), shelve offload, unshelve on
// hm1, delete. The report read from the ledger holds exactly the VM's
// intervals, the forced move a violation with its reason and the
// regulation's version, each message once in the evidence; it verifies
// against the other organisation's peer, and fails to with one host
// changed. The latencies from a notification's publication to its
// placement's commit (its block delivered to a watcher), to its
// recorded_at (the transaction's timestamp, taken at the proposal) and to
// both copies' acknowledgement are logged (p50, p99), not asserted.
func TestRecorderOnFabric(t *testing.T) {
	needNetwork(t)
	rabbittest.Require(t)
	c := ctx(t)
	vm := vmSubject(930)
	seedTable4(t, vm)
	regulation, err := connect(t, "vmm1").GetRegulation(c, vm)
	if err != nil {
		t.Fatal(err)
	}
	version := regulation.Version

	node := rabbittest.Start(t)
	recs := []*recorderProc{startRecorderAs(t, "recorder", node.URL), startRecorderAs(t, "recorder-org2", node.URL)}
	pub := newNovaPublisher(t, node.URL)

	// A watcher of Org1's peer's blocks tells when each placement is
	// committed (its block delivered), by the placement's reference.
	watcher := connect(t, "org1-user")
	height, err := watcher.Height(c)
	if err != nil {
		t.Fatal(err)
	}
	events, err := watcher.Watch(c, height)
	if err != nil {
		t.Fatal(err)
	}
	var committedMu sync.Mutex
	committed := map[string]time.Time{}
	go func() {
		for ev := range events {
			if ev.Placement == nil {
				continue
			}
			committedMu.Lock()
			if _, ok := committed[ev.Placement.Ref]; !ok {
				committed[ev.Placement.Ref] = time.Now()
			}
			committedMu.Unlock()
		}
	}()
	acked := func() float64 {
		n := 0.0
		for _, r := range recs {
			for _, result := range []string{recorder.ResultRecorded, recorder.ResultSkipped, recorder.ResultMalformed, recorder.ResultRejected} {
				v, err := r.metric(`ledgerfence_recorder_messages_total{result="` + result + `"}`)
				if err != nil {
					t.Fatalf("%s: %v", r.name, err)
				}
				n += v
			}
		}
		return n
	}

	// The VM's life, a minute apart, an hour ago.
	project := uniq("recproj")
	t0 := time.Now().UTC().Add(-time.Hour).Truncate(time.Minute)
	at := func(min float64) time.Time { return t0.Add(time.Duration(min * float64(time.Minute))) }
	msg := func(fixture, host, publisher string, min float64) *novaMsg {
		return &novaMsg{Fixture: fixture, VM: vm.ID(), Project: project, Host: host, Publisher: publisher, At: at(min)}
	}
	life := []*novaMsg{
		msg("boot", "hm1", "hm1", 0),
		msg("live_migration_post_dest", "hm2", "hm2", 1),
		msg("live_migration_post", "hm1", "hm1", 1.5), // the source's: records nothing
		msg("resize_finish", "hm5", "hm5", 2),
		msg("resize_confirm", "hm5", "hm2", 2.5),
		msg("live_migration_post_dest", "hm3", "hm3", 3), // forced past the scheduler, to Germany
		msg("live_migration_post", "hm5", "hm5", 3.5),
		msg("shelve_offload", "", "hm3", 4),
		msg("unshelve", "hm1", "hm1", 5),
		msg("delete", "hm1", "hm1", 6),
	}
	sources := map[*novaMsg]bool{life[2]: true, life[6]: true}

	// One message (twice) at a time, each handled by the recorders before
	// the next: a latency is the recorder's and the ledger's, not a queue's.
	var ackLat []time.Duration
	published := 0
	for _, m := range life {
		b := m.body(t)
		m.Published = time.Now()
		pub.send(t, b, b)
		published += 2
		deadline := time.Now().Add(30 * time.Second)
		for acked() < float64(published) {
			if time.Now().After(deadline) {
				t.Fatalf("the %s message (%s) and its copy not acknowledged within 30 s: %v acked of %d", m.Fixture, m.MessageID, acked(), published)
			}
			time.Sleep(5 * time.Millisecond)
		}
		if !sources[m] {
			ackLat = append(ackLat, time.Since(m.Published))
		}
	}

	want := []struct {
		host, op  string
		from, to  time.Time
		violation bool
		evidence  []*novaMsg
	}{
		{"hm1", ledger.OpBoot, at(0), at(1), false, life[0:1]},
		{"hm2", ledger.OpLiveMigration, at(1), at(2), false, life[1:2]},
		// the resize's finish and its confirmation: one interval
		{"hm5", ledger.OpResize, at(2), at(3), false, life[3:5]},
		{"hm3", ledger.OpLiveMigration, at(3), at(4), true, life[5:6]},
		{"hm1", ledger.OpUnshelve, at(5), at(6), false, life[8:9]},
	}
	const placements = 8 // every message but the sources' live migration post

	// The report, read through Org1's peer as of now, until every placement
	// is in it (each was committed before its message was acknowledged).
	org1, org2 := connect(t, "org1-user"), connect(t, "org2-user")
	q := residency.Query{Subject: vm, From: t0.Add(-10 * time.Minute), To: t0.Add(30 * time.Minute)}
	var rep residency.Report
	deadline := time.Now().Add(30 * time.Second)
	for {
		rep, err = residency.Read(c, org1, q, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if rep.Placements >= placements && len(rep.Intervals) >= len(want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 30 s the report has %d intervals from %d placements, want %d from %d: %+v",
				len(rep.Intervals), rep.Placements, len(want), placements, rep)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(rep.Intervals) != len(want) || rep.Placements != placements || rep.Violations != 1 {
		t.Fatalf("%d intervals, %d violations, from %d placements; want %d, 1, from %d: %+v",
			len(rep.Intervals), rep.Violations, rep.Placements, len(want), placements, rep)
	}
	wantRegs := []ledger.RegulationVersion{{Subject: vm, Version: version}}
	refs := map[string]int{}
	writers := map[string]int{}
	for i, w := range want {
		iv := rep.Intervals[i]
		if iv.VM != vm.ID() || iv.Project != project || iv.Host != w.host || iv.Op != w.op || !iv.From.Equal(w.from) || !iv.To.Equal(w.to) || iv.Open {
			t.Errorf("interval %d: %s/%s on %s, %s, %s to %s (open %v); want on %s, %s, %s to %s", i+1, iv.VM, iv.Project, iv.Host, iv.Op,
				iv.From.Format(time.RFC3339), iv.To.Format(time.RFC3339), iv.Open, w.host, w.op, w.from.Format(time.RFC3339), w.to.Format(time.RFC3339))
		}
		v := iv.Verdict
		if v == nil {
			t.Errorf("interval %d: no verdict", i+1)
			continue
		}
		if iv.Violation != w.violation || v.Allowed == w.violation {
			t.Errorf("interval %d on %s: violation %v, allowed %v; want violation %v", i+1, iv.Host, iv.Violation, v.Allowed, w.violation)
		}
		if !slices.Equal(v.Regulations, wantRegs) {
			t.Errorf("interval %d: regulations in force %v, want %v", i+1, v.Regulations, wantRegs)
		}
		if w.violation {
			if v.Reason != filter.CountryNotAllowed || v.Regulation != vm || v.Country != "DE" {
				t.Errorf("the violation on %s: reason %q, by %q, country %q; want %s by %s, DE", iv.Host, v.Reason, v.Regulation, v.Country, filter.CountryNotAllowed, vm)
			}
		} else if v.Reason != "" {
			t.Errorf("interval %d on %s: reason %q", i+1, iv.Host, v.Reason)
		}
		if !slices.Equal(iv.Witnesses, []string{ledger.WitnessNova}) || iv.Discrepancy != "" {
			t.Errorf("interval %d: witnesses %v, discrepancy %q; want nova's, none", i+1, iv.Witnesses, iv.Discrepancy)
		}
		var got, wantRefs []string
		for _, e := range iv.Evidence {
			got = append(got, e.Ref)
			refs[e.Ref]++
			writers[e.Writer]++
			if e.TxID == "" || e.Witness != ledger.WitnessNova ||
				!(strings.HasPrefix(e.Writer, "Org1MSP/") || strings.HasPrefix(e.Writer, "Org2MSP/")) {
				t.Errorf("interval %d: evidence %+v", i+1, e)
			}
		}
		for _, m := range w.evidence {
			wantRefs = append(wantRefs, m.MessageID)
		}
		if !slices.Equal(got, wantRefs) {
			t.Errorf("interval %d: evidence %v, want the messages %v", i+1, got, wantRefs)
		}
	}
	for ref, n := range refs {
		if n != 1 {
			t.Errorf("message %s is evidence %d times, want once", ref, n)
		}
	}
	t.Logf("evidence by writer: %v", writers)

	// The ledger holds each placement once; the sources' posts none.
	ps, err := org1.Placements(c, ledger.PlacementQuery{VM: vm.ID()})
	if err != nil {
		t.Fatal(err)
	}
	byRef := map[string]ledger.PlacementRecord{}
	for _, p := range ps {
		if _, dup := byRef[p.Ref]; dup {
			t.Errorf("placement %s recorded twice", p.Ref)
		}
		byRef[p.Ref] = p
	}
	if len(ps) != placements {
		t.Errorf("the ledger holds %d placements of the VM, want %d", len(ps), placements)
	}
	var recLat, commitLat []time.Duration
	for _, m := range life {
		p, ok := byRef[m.MessageID]
		if sources[m] {
			if ok {
				t.Errorf("the source's %s recorded a placement", m.Fixture)
			}
			continue
		}
		if !ok {
			t.Errorf("the %s message %s recorded no placement", m.Fixture, m.MessageID)
			continue
		}
		if p.Writer.Role != "recorder" || p.Witness != ledger.WitnessNova {
			t.Errorf("the %s placement written by %+v, witness %s", m.Fixture, p.Writer, p.Witness)
		}
		recLat = append(recLat, p.RecordedAt.Sub(m.Published))
		committedMu.Lock()
		if ct, ok := committed[m.MessageID]; ok {
			commitLat = append(commitLat, ct.Sub(m.Published))
		}
		committedMu.Unlock()
	}

	// Verified against Org2's peer; with one host changed, refused.
	waitSameHeight(t, c, org1, org2)
	if err := residency.Verify(c, org2, rep); err != nil {
		t.Fatalf("verify through Org2's peer: %v", err)
	}
	edited := rep
	edited.Intervals = slices.Clone(rep.Intervals)
	edited.Intervals[1].Host = "hm5"
	var mismatch *residency.Mismatch
	if err := residency.Verify(c, org2, edited); !errors.As(err, &mismatch) {
		t.Fatalf("verify of the report with interval 2's host changed: %v, want a *residency.Mismatch", err)
	} else {
		t.Logf("the report with interval 2's host changed: %v", err)
	}

	t.Logf("notification published -> placement committed (its block delivered by Org1's peer), %d placements: %s (target <= 100 ms on Fabric)",
		len(commitLat), latencySummary(commitLat))
	t.Logf("notification published -> placement's recorded_at (the transaction's timestamp, taken by the recorder at its proposal, before endorsement and ordering), %d placements: %s",
		len(recLat), latencySummary(recLat))
	t.Logf("notification published -> both copies acknowledged (committed, then the duplicate found), %d messages: %s",
		len(ackLat), latencySummary(ackLat))
}

// latencySummary is "p50 X, p99 Y, max Z" of ds (nearest rank).
func latencySummary(ds []time.Duration) string {
	if len(ds) == 0 {
		return "none"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	pct := func(p float64) time.Duration {
		i := int(p*float64(len(s))+0.5) - 1
		return s[max(0, min(i, len(s)-1))]
	}
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }
	return fmt.Sprintf("p50 %s, p99 %s, min %s, max %s", ms(pct(0.50)), ms(pct(0.99)), ms(s[0]), ms(s[len(s)-1]))
}
