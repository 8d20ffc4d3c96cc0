package recorder_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
	"github.com/ledgerfence/ledgerfence/pkg/recorder"
	"github.com/ledgerfence/ledgerfence/pkg/recorder/rabbittest"
	"github.com/ledgerfence/ledgerfence/pkg/residency"
)

// wantInterval is an interval a report must hold.
type wantInterval struct {
	host      string
	op        string
	from, to  time.Time
	violation bool
}

// TestRecorderEndToEnd: the real commands on the embedded ledger. A private
// RabbitMQ node; a filterd (embedded ledger) with hosts and a VM's
// regulation registered through its REST API, one host forbidden; two
// recorder processes on one queue, with a recorder token of ledgerctl's.
// A VM's life is published as Nova sends it (boot on hm1, live migration
// to hm2 with the destination's notification first, resize to hm3 with
// its finish and confirm, a forced live migration to the forbidden hm4,
// shelve offload, unshelve on hm1, delete), every message twice, the
// first part's once more at the end; one recorder is killed (SIGKILL)
// while messages are in flight and started again. `ledgerctl residency`
// then gives exactly the VM's intervals, each placement once, the forced
// move a violation with its reason and the regulation's version; `residency
// verify` passes on the report and fails (exit 3) on it with one host
// changed; -o html renders. Then bad input: a malformed message and an
// unknown event type are acked, counted and write nothing; a placement of
// a VM the ledger never saw is recorded as unregulated, allowed.
func TestRecorderEndToEnd(t *testing.T) {
	node := rabbittest.Start(t)
	bin := buildCommands(t)
	fd := startFilterd(t, bin)
	token := issueToken(t, bin, fd.Data, "recorder", "recorder-1")

	fd.putHost(t, "hm1", "JP", "A")
	fd.putHost(t, "hm2", "JP", "A")
	fd.putHost(t, "hm3", "JP", "A")
	fd.putHost(t, "hm4", "US", "A") // forbidden by the VM's regulation
	vm, project := newUUID(), newProject()
	subject := "vm:" + vm
	fd.putRegulation(t, subject, map[string]string{"country": "JP", "organization": "B"})
	version := fd.putRegulation(t, subject, map[string]string{"country": "JP", "organization": "A"})
	if version < 2 {
		t.Fatalf("the regulation's second version is %d", version)
	}

	recA := startRecorder(t, bin, "recorder A", fd.URL, token, node.URL)
	recB := startRecorder(t, bin, "recorder B", fd.URL, token, node.URL)
	pub := newPublisher(t, node.URL)

	// The VM's life, a minute apart, an hour ago.
	t0 := time.Now().UTC().Add(-time.Hour).Truncate(time.Minute)
	at := func(min float64) time.Time { return t0.Add(time.Duration(min * float64(time.Minute))) }
	ev := func(fixture, host, publisher string, min float64) *novaEvent {
		return &novaEvent{Fixture: fixture, VM: vm, Project: project, Host: host, Publisher: publisher, At: at(min)}
	}
	part1 := []*novaEvent{
		ev("boot", "hm1", "hm1", 0),
		// The destination tells first, then the source.
		ev("live_migration_post_dest", "hm2", "hm2", 1),
		ev("live_migration_post", "hm1", "hm1", 1.5),
	}
	part2 := []*novaEvent{
		ev("resize_finish", "hm3", "hm3", 2),
		ev("resize_confirm", "hm3", "hm2", 2.5),
		// A forced live migration past the scheduler, to the forbidden host.
		ev("live_migration_post_dest", "hm4", "hm4", 3),
		ev("live_migration_post", "hm3", "hm3", 3.5),
	}
	part3 := []*novaEvent{
		ev("shelve_offload", "", "hm4", 4),
		ev("unshelve", "hm1", "hm1", 5),
		ev("delete", "hm1", "hm1", 6),
	}
	bodies := func(evs []*novaEvent) [][]byte {
		var out [][]byte
		for _, e := range evs {
			out = append(out, e.body(t))
		}
		return out
	}
	twice := func(b [][]byte) [][]byte { return append(slices.Clone(b), b...) }

	// Other VMs' boots, so that the recorder killed has messages in flight.
	noiseProject := newProject()
	var noise [][]byte
	const noiseVMs = 300
	for i := range noiseVMs {
		e := &novaEvent{Fixture: "boot", VM: newUUID(), Project: noiseProject, Host: []string{"hm1", "hm2", "hm3"}[i%3],
			Publisher: "hm1", At: at(float64(i) / 100)}
		noise = append(noise, e.body(t))
	}

	b1 := bodies(part1)
	pub.send(t, twice(b1)...)
	pub.send(t, twice(noise)...)
	waitFor(t, 60*time.Second, "recorder A recording", func() bool {
		return recA.messages(t, recorder.ResultRecorded) >= 40
	})
	recA.kill()
	t.Logf("recorder A killed (SIGKILL) after %v messages recorded by B", recB.messages(t, recorder.ResultRecorded))
	pub.send(t, twice(bodies(part2))...)
	time.Sleep(200 * time.Millisecond)
	recA = startRecorder(t, bin, "recorder A (again)", fd.URL, token, node.URL)
	pub.send(t, twice(bodies(part3))...)
	pub.send(t, b1...) // redelivered late, out of order

	want := []wantInterval{
		{"hm1", ledger.OpBoot, at(0), at(1), false},
		{"hm2", ledger.OpLiveMigration, at(1), at(2), false},
		// Nova's finish and confirm of a resize each place the VM on hm3:
		// one interval, with both as evidence.
		{"hm3", ledger.OpResize, at(2), at(3), false},
		{"hm4", ledger.OpLiveMigration, at(3), at(4), true},
		{"hm1", ledger.OpUnshelve, at(5), at(6), false},
	}
	const placements = 8 // the moves above, shelve offload and delete; the sources' post.end record nothing
	from, to := t0.Add(-10*time.Minute), t0.Add(30*time.Minute)
	var rep residency.Report
	var repJSON string
	asOf := ""
	deadline := time.Now().Add(90 * time.Second)
	for {
		asOf = time.Now().UTC().Add(time.Second).Format(time.RFC3339)
		out, errs, code := ledgerctl(t, bin, "residency", subject, "--ledger", fd.URL, "--from", from.Format(time.RFC3339),
			"--to", to.Format(time.RFC3339), "--as-of", asOf, "-o", "json")
		if code != 0 {
			t.Fatalf("ledgerctl residency: exit %d: %s", code, errs)
		}
		rep = residency.Report{} // a decoding into the last poll's would keep its fields
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatalf("ledgerctl residency's output: %v\n%s", err, out)
		}
		repJSON = out
		if rep.Placements >= placements && len(rep.Intervals) >= len(want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 90 s the report has %d intervals from %d placements, want %d from %d:\n%s",
				len(rep.Intervals), rep.Placements, len(want), placements, out)
		}
		time.Sleep(250 * time.Millisecond)
	}
	// Wait until every queued message is acked: the duplicates are handled too.
	waitFor(t, 60*time.Second, "the queue drained", func() bool {
		ready, _, err := node.QueueDepth(t.Context(), recorder.DefaultQueue)
		return err == nil && ready == 0
	})
	time.Sleep(500 * time.Millisecond)

	// Exactly the intervals expected.
	if len(rep.Intervals) != len(want) || rep.Placements != placements {
		t.Fatalf("%d intervals from %d placements, want %d from %d:\n%s", len(rep.Intervals), rep.Placements, len(want), placements, repJSON)
	}
	for i, w := range want {
		iv := rep.Intervals[i]
		if iv.VM != vm || iv.Project != project || iv.Host != w.host || iv.Op != w.op || !iv.From.Equal(w.from) || !iv.To.Equal(w.to) || iv.Open {
			t.Errorf("interval %d: %s/%s on %s, %s, %s to %s (open %v); want on %s, %s, %s to %s", i+1, iv.VM, iv.Project, iv.Host, iv.Op,
				iv.From.Format(time.RFC3339), iv.To.Format(time.RFC3339), iv.Open, w.host, w.op, w.from.Format(time.RFC3339), w.to.Format(time.RFC3339))
		}
		if iv.Verdict == nil {
			t.Errorf("interval %d: no verdict", i+1)
			continue
		}
		if iv.Violation != w.violation || iv.Verdict.Allowed == w.violation {
			t.Errorf("interval %d on %s: violation %v, allowed %v; want violation %v", i+1, iv.Host, iv.Violation, iv.Verdict.Allowed, w.violation)
		}
		wantRegs := []ledger.RegulationVersion{{Subject: filter.Subject(subject), Version: version}}
		if !slices.Equal(iv.Verdict.Regulations, wantRegs) {
			t.Errorf("interval %d: regulations in force %v, want %v", i+1, iv.Verdict.Regulations, wantRegs)
		}
		if w.violation {
			if iv.Verdict.Reason != "country_not_allowed" || string(iv.Verdict.Regulation) != subject || iv.Verdict.Country != "US" ||
				!strings.Contains(iv.Verdict.Detail, "US") {
				t.Errorf("the violation on %s: reason %q, by %q, country %q, detail %q; want country_not_allowed by %s, US",
					iv.Host, iv.Verdict.Reason, iv.Verdict.Regulation, iv.Verdict.Country, iv.Verdict.Detail, subject)
			}
		} else if iv.Verdict.Reason != "" || iv.Verdict.Country != "JP" {
			t.Errorf("interval %d on %s: reason %q, country %q", i+1, iv.Host, iv.Verdict.Reason, iv.Verdict.Country)
		}
		evidence := 1
		if iv.Op == ledger.OpResize {
			evidence = 2 // the resize's finish and its confirmation
		}
		if !slices.Equal(iv.Witnesses, []string{ledger.WitnessNova}) || len(iv.Evidence) != evidence {
			t.Errorf("interval %d: witnesses %v, %d pieces of evidence; want nova's, %d", i+1, iv.Witnesses, len(iv.Evidence), evidence)
		}
		// Every interval is shorter than the bound: the host agent, absent
		// here, is not yet missed.
		if iv.Discrepancy != "" {
			t.Errorf("interval %d: discrepancy %q", i+1, iv.Discrepancy)
		}
	}
	if t.Failed() {
		t.Logf("the report:\n%s", repJSON)
	}
	if rep.Violations != 1 {
		t.Errorf("%d violations, want 1", rep.Violations)
	}
	// Each placement once: the evidence's refs are the messages' ids, each
	// once, and the ledger holds each of the VM's placements once.
	refs := map[string]int{}
	for _, iv := range rep.Intervals {
		for _, e := range iv.Evidence {
			refs[e.Ref]++
			if e.TxID == "" || e.Writer != "recorder-1" {
				t.Errorf("evidence %s: tx %q, writer %q", e.Ref, e.TxID, e.Writer)
			}
		}
	}
	wantRefs := []string{part1[0].MessageID, part1[1].MessageID, part2[0].MessageID, part2[1].MessageID, part2[2].MessageID, part3[1].MessageID}
	for _, r := range wantRefs {
		if refs[r] != 1 {
			t.Errorf("message %s is the evidence of %d intervals, want 1", r, refs[r])
		}
	}
	if len(refs) != len(wantRefs) {
		t.Errorf("%d distinct refs in the report, want %d", len(refs), len(wantRefs))
	}
	ps := fd.placements(t, ledger.PlacementQuery{VM: vm})
	seen := map[string]bool{}
	for _, p := range ps {
		if seen[p.Ref] {
			t.Errorf("placement %s recorded twice", p.Ref)
		}
		seen[p.Ref] = true
	}
	if len(ps) != placements {
		t.Errorf("the ledger holds %d placements of the VM, want %d", len(ps), placements)
	}
	for _, e := range []*novaEvent{part1[2], part2[3]} {
		if seen[e.MessageID] {
			t.Errorf("the source's %s recorded a placement", e.Fixture)
		}
	}
	// The other VMs: each booted once, none lost, none doubled, across the kill.
	np := fd.placements(t, ledger.PlacementQuery{Project: noiseProject})
	vms := map[string]int{}
	for _, p := range np {
		vms[p.VM]++
	}
	if len(np) != noiseVMs || len(vms) != noiseVMs {
		t.Errorf("the other VMs: %d placements of %d VMs, want %d of %d", len(np), len(vms), noiseVMs, noiseVMs)
	}

	// verify: the report as given, then with one interval's host changed.
	dir := t.TempDir()
	report := filepath.Join(dir, "report.json")
	if err := os.WriteFile(report, []byte(repJSON), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errs, code := ledgerctl(t, bin, "residency", "verify", report, "--ledger", fd.URL)
	if code != 0 {
		t.Fatalf("residency verify of the report: exit %d: %s%s", code, out, errs)
	}
	t.Logf("verify: %s", strings.TrimSpace(out))
	var edited map[string]any
	if err := json.Unmarshal([]byte(repJSON), &edited); err != nil {
		t.Fatal(err)
	}
	edited["intervals"].([]any)[1].(map[string]any)["host"] = "hm3"
	b, _ := json.MarshalIndent(edited, "", "  ")
	forged := filepath.Join(dir, "forged.json")
	if err := os.WriteFile(forged, b, 0o600); err != nil {
		t.Fatal(err)
	}
	out, errs, code = ledgerctl(t, bin, "residency", "verify", forged, "--ledger", fd.URL)
	if code != 3 || !strings.Contains(errs+out, "interval 2") {
		t.Errorf("residency verify of the report with interval 2's host changed: exit %d, want 3 naming interval 2: %s%s", code, out, errs)
	}
	t.Logf("verify of the forged report: exit %d: %s", code, strings.TrimSpace(errs+out))
	// -o html renders.
	page, errs, code := ledgerctl(t, bin, "residency", subject, "--ledger", fd.URL, "--from", from.Format(time.RFC3339),
		"--to", to.Format(time.RFC3339), "--as-of", asOf, "-o", "html")
	if code != 0 || !strings.Contains(strings.ToLower(page), "<html") || !strings.Contains(page, vm) ||
		!strings.Contains(page, "hm4") || !strings.Contains(page, "country_not_allowed") {
		t.Errorf("residency -o html: exit %d, %d bytes: %s\n%s", code, len(page), errs, tail(page, 2000))
	}

	// Bad input: acked, counted, nothing written.
	recs := []*recorderProc{recA, recB}
	sum := func(result string) float64 {
		s := 0.0
		for _, r := range recs {
			s += r.messages(t, result)
		}
		return s
	}
	malformed0, skipped0, recorded0 := sum(recorder.ResultMalformed), sum(recorder.ResultSkipped), sum(recorder.ResultRecorded)
	h0 := fd.height(t)
	unknown := &novaEvent{Fixture: "boot", EventType: "instance.teleport.end", VM: vm, Project: project, Host: "hm4", Publisher: "hm4", At: at(7)}
	pub.send(t, []byte(`{"oslo.version": "2.0", "oslo.message": "{\"event_type\": \"instance.create.end\", \"payload\": "}`),
		unknown.body(t))
	waitFor(t, 30*time.Second, "the malformed message and the unknown event type counted", func() bool {
		return sum(recorder.ResultMalformed) == malformed0+1 && sum(recorder.ResultSkipped) == skipped0+1
	})
	waitFor(t, 10*time.Second, "the queue drained", func() bool {
		ready, _, err := node.QueueDepth(t.Context(), recorder.DefaultQueue)
		return err == nil && ready == 0
	})
	time.Sleep(300 * time.Millisecond)
	if h := fd.height(t); h != h0 {
		t.Errorf("the ledger's height went from %d to %d on a malformed message and an unknown event type", h0, h)
	}
	if got := sum(recorder.ResultRecorded); got != recorded0 {
		t.Errorf("recorded counter went from %v to %v", recorded0, got)
	}
	if n := len(fd.placements(t, ledger.PlacementQuery{VM: vm})); n != placements {
		t.Errorf("%d placements of the VM after bad input, want %d", n, placements)
	}

	// A VM the ledger never saw (no regulation, no earlier placement), on a
	// registered host and on a host the ledger does not know: each recorded,
	// unregulated, allowed.
	for _, host := range []string{"hm2", "hm-unregistered"} {
		stranger := &novaEvent{Fixture: "boot", VM: newUUID(), Project: newProject(), Host: host, Publisher: host, At: at(8)}
		h1 := fd.height(t)
		pub.send(t, stranger.body(t))
		var got []ledger.PlacementRecord
		waitFor(t, 30*time.Second, "the unknown VM's placement", func() bool {
			got = fd.placements(t, ledger.PlacementQuery{VM: stranger.VM})
			return len(got) > 0
		})
		p := got[0]
		if len(got) != 1 || p.Host != host || p.Op != ledger.OpBoot || p.Ref != stranger.MessageID || p.Verdict == nil || !p.Verdict.Allowed ||
			p.Verdict.Reason != "" || len(p.Verdict.Regulations) != 0 {
			b, _ := json.Marshal(got)
			t.Errorf("a VM the ledger never saw, on %s: %s; want one boot, allowed, no regulation in force", host, b)
		}
		if host == "hm2" && p.Verdict != nil && p.Verdict.Country != "JP" {
			t.Errorf("on hm2: country %q, want the host's facts (JP)", p.Verdict.Country)
		}
		if host != "hm2" && p.Verdict != nil && p.Verdict.Country != "" {
			t.Errorf("on an unregistered host: country %q", p.Verdict.Country)
		}
		if h := fd.height(t); h != h1+1 {
			t.Errorf("height %d after the unknown VM's placement, want %d", h, h1+1)
		}
		b, _ := json.Marshal(p.Verdict)
		t.Logf("a VM the ledger never saw, booted on %s: recorded, verdict %s", host, b)
	}
	for _, r := range recs {
		if r.exited() {
			t.Errorf("%s exited", r.name)
		}
	}
	t.Logf("%d placements of the VM, %d intervals, 1 violation; %d other VMs once each; malformed and unknown messages acked, nothing written",
		len(ps), len(rep.Intervals), noiseVMs)
}
