package fabric_test

// Residency evidence on the real network: placements recorded by the
// recorder identities (Nova's word) and by a host agent (its own host's),
// their verdicts decided by the chaincode, and a residency report read from
// the ledger and verified against it. Figures:
//
//	LEDGERFENCE_FABRIC_PORT_BASE=25000 go test ./tests/integration/fabric -count=1 -run '^$' \
//	  -bench 'Placement' -benchtime 200x -v

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/fabric"
	"github.com/ledgerfence/ledgerfence/pkg/residency"
)

// placementHosts registers, once per run, two hosts in Japan and one in
// Germany, all of CompanyA, by Org1's host admin.
func placementHosts(t testing.TB, c context.Context) (jp1, jp2, de string) {
	t.Helper()
	jp1, jp2, de = uniq("pl-jp1"), uniq("pl-jp2"), uniq("pl-de")
	admin := connect(t, "hadmin")
	for _, h := range []filter.Host{
		{Name: jp1, Country: "JP", Organizations: []string{"CompanyA"}},
		{Name: jp2, Country: "JP", Organizations: []string{"CompanyA"}},
		{Name: de, Country: "DE", Organizations: []string{"CompanyA"}},
	} {
		if _, _, err := admin.PutHost(c, h); err != nil {
			t.Fatalf("register %s: %v", h.Name, err)
		}
	}
	return jp1, jp2, de
}

// waitSameHeight waits until the peers of Org1 and Org2 hold the same blocks.
func waitSameHeight(t testing.TB, c context.Context, a, b *fabric.Ledger) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ha, err := a.Height(c)
		if err != nil {
			t.Fatal(err)
		}
		hb, err := b.Height(c)
		if err != nil {
			t.Fatal(err)
		}
		if ha == hb {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the peers' heights stay apart: %d and %d", ha, hb)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestPlacementsOnFabric(t *testing.T) {
	c := ctx(t)
	jp1, jp2, de := placementHosts(t, c)
	vm := vmSubject(900)
	project := uniq("plproj")
	vmm := connect(t, "vmm1")
	if _, _, err := vmm.PutRegulationJSON(c, vm, []byte(`{"allow": ["JP.CompanyA"]}`)); err != nil {
		t.Fatal(err)
	}
	recorder, recorder2 := connect(t, "recorder"), connect(t, "recorder-org2")
	t0 := time.Now().UTC().Truncate(time.Second).Add(-30 * time.Minute)
	novaSays := func(host, op string, minutes int, ref string) ledger.Placement {
		return ledger.Placement{VM: vm.ID(), Project: project, Host: host, Op: op, At: t0.Add(time.Duration(minutes) * time.Minute),
			Witness: ledger.WitnessNova, Ref: ref, RequestID: "req-" + ref}
	}

	// a boot and a live migration, allowed, under version 1
	boot, changed, err := recorder.RecordPlacement(c, novaSays(jp1, ledger.OpBoot, 0, uniq("msg-boot")))
	if err != nil || !changed {
		t.Fatalf("boot: changed %v, %v", changed, err)
	}
	v := boot.Verdict
	if v == nil || !v.Allowed || v.Country != "JP" || len(v.Regulations) != 1 || v.Regulations[0].Subject != vm || v.Regulations[0].Version != 1 ||
		boot.Writer.MSP != "Org1MSP" || boot.Writer.Role != "recorder" || boot.TxID == "" || boot.RecordedAt.IsZero() {
		t.Fatalf("boot recorded as %+v, verdict %+v", boot, v)
	}
	live, _, err := recorder.RecordPlacement(c, novaSays(jp2, ledger.OpLiveMigration, 5, uniq("msg-live")))
	if err != nil || !live.Verdict.Allowed {
		t.Fatalf("live migration: %+v, %v", live.Verdict, err)
	}

	// the regulation is changed (version 2, still Japan only); a move forced
	// past the scheduler to Germany is recorded as a violation, with it
	if rec, _, err := vmm.PutRegulationJSON(c, vm, []byte(`{"allow": ["JP.CompanyA", "JP.CompanyB"]}`)); err != nil || rec.Version != 2 {
		t.Fatalf("regulation version 2: %+v, %v", rec, err)
	}
	forced, _, err := recorder2.RecordPlacement(c, novaSays(de, ledger.OpLiveMigration, 10, uniq("msg-forced")))
	if err != nil {
		t.Fatal(err)
	}
	v = forced.Verdict
	if v == nil || v.Allowed || v.Reason != filter.CountryNotAllowed || v.Regulation != vm || v.Country != "DE" ||
		len(v.Regulations) != 1 || v.Regulations[0].Version != 2 || forced.Writer.MSP != "Org2MSP" {
		t.Fatalf("forced move recorded as %+v, verdict %+v", forced, v)
	}

	// the same message again, by either recorder: recorded once
	for _, r := range []*fabric.Ledger{recorder, recorder2} {
		again, changed, err := r.RecordPlacement(c, novaSays(jp1, ledger.OpBoot, 0, uniq("msg-boot")))
		if err != nil || changed || again.TxID != boot.TxID {
			t.Fatalf("the boot again: changed %v, tx %s (first %s), %v", changed, again.TxID, boot.TxID, err)
		}
	}

	// the recorder writes placements and nothing else
	_, _, err = recorder.PutHost(c, filter.Host{Name: jp1, Country: "DE", Organizations: []string{"CompanyA"}})
	wantErr(t, err, ledger.ErrForbidden)
	_, _, err = recorder.PutHost(c, filter.Host{Name: uniq("pl-new"), Country: "JP", Organizations: []string{"CompanyA"}})
	wantErr(t, err, ledger.ErrForbidden, "recorder")
	_, _, err = recorder.PutRegulation(c, vm, filter.Terms{Allow: []filter.Rule{{Country: "*", Organization: "*"}}})
	wantErr(t, err, ledger.ErrForbidden)
	_, _, err = recorder.PutRegulation(c, vmSubject(901), filter.Terms{Allow: []filter.Rule{{Country: "*", Organization: "*"}}})
	wantErr(t, err, ledger.ErrForbidden, "recorder")
	err = recorder.DeleteRegulation(c, vm)
	wantErr(t, err, ledger.ErrForbidden)
	// nor the host agent's word
	agentSays := novaSays(jp1, ledger.OpObserved, 1, uniq("sweep-1"))
	agentSays.Witness = ledger.WitnessHostAgent
	_, _, err = recorder.RecordPlacement(c, agentSays)
	wantErr(t, err, ledger.ErrForbidden, "witness nova")
	// a VM manager records nothing
	_, _, err = vmm.RecordPlacement(c, novaSays(jp1, ledger.OpBoot, 0, uniq("msg-vmm")))
	wantErr(t, err, ledger.ErrForbidden, "recorder", "vmmanager")

	// a host agent records what it sees on its own host, and only there
	agentName := uniq("pl-agent")
	enroll(t, "org1", agentName, "hostagent", jp1)
	agent := connect(t, agentName)
	seen, changed, err := agent.RecordPlacement(c, agentSays)
	if err != nil || !changed || seen.Writer.Role != "hostagent" || !seen.Verdict.Allowed {
		t.Fatalf("the host agent's word: %+v, changed %v, %v", seen, changed, err)
	}
	elsewhere := agentSays
	elsewhere.Host, elsewhere.Ref = de, uniq("sweep-2")
	_, _, err = agent.RecordPlacement(c, elsewhere)
	wantErr(t, err, ledger.ErrForbidden, "own host", jp1, de)
	_, _, err = agent.RecordPlacement(c, novaSays(jp1, ledger.OpBoot, 0, uniq("msg-agent")))
	wantErr(t, err, ledger.ErrForbidden, "witness hostagent")
	// bad input is refused
	bad := novaSays(jp1, "teleport", 20, uniq("msg-bad"))
	_, _, err = recorder.RecordPlacement(c, bad)
	wantErr(t, err, ledger.ErrInvalid, "op")

	// read back: by VM, in order, each once; by project; a period
	ps, err := recorder.Placements(c, ledger.PlacementQuery{VM: vm.ID()})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range ps {
		got = append(got, fmt.Sprintf("%s@%s/%s", p.Host, p.At.Sub(t0), p.Witness))
	}
	want := []string{jp1 + "@0s/nova", jp1 + "@1m0s/hostagent", jp2 + "@5m0s/nova", de + "@10m0s/nova"}
	if !slices.Equal(got, want) {
		t.Fatalf("the VM's placements %v, want %v", got, want)
	}
	byProject, err := recorder.Placements(c, ledger.PlacementQuery{Project: project})
	if err != nil || len(byProject) != 4 {
		t.Fatalf("the project's placements: %d, %v", len(byProject), err)
	}
	period, err := recorder.Placements(c, ledger.PlacementQuery{VM: vm.ID(), From: t0.Add(time.Minute), To: t0.Add(10 * time.Minute)})
	if err != nil || len(period) != 2 {
		t.Fatalf("the placements in [1m, 10m): %d, %v", len(period), err)
	}
	_, err = recorder.Placements(c, ledger.PlacementQuery{VM: vm.ID(), From: t0.Add(time.Hour), To: t0})
	wantErr(t, err, ledger.ErrInvalid, "after to")

	// the report, read from Org1's peer, verified against Org2's
	q := residency.Query{Subject: vm, From: t0.Add(-time.Hour), To: t0.Add(time.Hour)}
	rep, err := residency.Read(c, recorder, q, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Intervals) != 3 || rep.Violations != 1 || rep.Placements != 4 {
		t.Fatalf("report: %d intervals, %d violations, from %d placements: %+v", len(rep.Intervals), rep.Violations, rep.Placements, rep)
	}
	if iv := rep.Intervals[2]; iv.Host != de || !iv.Violation || iv.Verdict.Regulations[0].Version != 2 || !iv.Open {
		t.Fatalf("the forced move's interval %+v", iv)
	}
	if iv := rep.Intervals[0]; iv.Host != jp1 || iv.Violation || !slices.Contains(iv.Witnesses, ledger.WitnessHostAgent) {
		t.Fatalf("the boot's interval %+v", iv)
	}
	org2 := connect(t, "org2-user")
	waitSameHeight(t, c, connect(t, "org1-user"), org2)
	if err := residency.Verify(c, org2, rep); err != nil {
		t.Fatalf("verify: %v", err)
	}
	edited := rep
	edited.Intervals = slices.Clone(rep.Intervals)
	edited.Intervals[2].Host = jp1
	var mismatch *residency.Mismatch
	if err := residency.Verify(c, org2, edited); !errors.As(err, &mismatch) {
		t.Fatalf("a report with one host changed: %v", err)
	}
}

// BenchmarkPlacementCommit is the recorder's commit latency: RecordPlacement
// of a new placement of a regulated VM (its verdict decided in the
// transaction), from endorsement by both organisations to the commit status,
// one at a time, as the recorder does for each of Nova's notifications.
func BenchmarkPlacementCommit(b *testing.B) {
	c := context.Background()
	jp1, jp2, _ := placementHosts(b, c)
	vm := vmSubject(910)
	if _, _, err := connect(b, "vmm1").PutRegulationJSON(c, vm, []byte(`{"allow": ["JP.CompanyA"]}`)); err != nil {
		b.Fatal(err)
	}
	recorder := connect(b, "recorder")
	prefix := uniq(fmt.Sprintf("commit%d", b.N))
	t0 := time.Now().UTC()
	var lat latencies
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		p := ledger.Placement{VM: vm.ID(), Host: []string{jp1, jp2}[i%2], Op: ledger.OpLiveMigration, At: t0.Add(time.Duration(i) * time.Millisecond),
			Witness: ledger.WitnessNova, Ref: fmt.Sprintf("%s-%d", prefix, i)}
		lat.time(func() {
			if rec, changed, err := recorder.RecordPlacement(c, p); err != nil || !changed || !rec.Verdict.Allowed {
				b.Fatalf("record: changed %v, %v", changed, err)
			}
		})
	}
	lat.report(b)
}

// seeded holds the VMs given n placements, once per run.
var seeded struct {
	sync.Mutex
	vms map[int]filter.Subject
}

// seedPlacements records n placements of one VM (once per run), 64 at a
// time, and returns the VM.
func seedPlacements(b *testing.B, n int) filter.Subject {
	b.Helper()
	seeded.Lock()
	defer seeded.Unlock()
	if vm, ok := seeded.vms[n]; ok {
		return vm
	}
	c := context.Background()
	jp1, jp2, de := placementHosts(b, c)
	vm := vmSubject(920 + n)
	if _, _, err := connect(b, "vmm1").PutRegulationJSON(c, vm, []byte(`{"allow": ["JP.CompanyA"]}`)); err != nil {
		b.Fatal(err)
	}
	recorder := connect(b, "recorder")
	t0 := time.Now().UTC().Add(-time.Duration(n) * time.Minute)
	began := time.Now()
	work := make(chan int)
	errs := make(chan error, 64)
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			for i := range work {
				p := ledger.Placement{VM: vm.ID(), Project: "bench", Host: []string{jp1, jp2, de}[i%3], Op: ledger.OpLiveMigration,
					At: t0.Add(time.Duration(i) * time.Minute), Witness: ledger.WitnessNova, Ref: fmt.Sprintf("seed-%d", i), RequestID: fmt.Sprintf("req-%d", i)}
				if _, _, err := recorder.RecordPlacement(c, p); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	for i := 0; i < n; i++ {
		select {
		case work <- i:
		case err := <-errs:
			b.Fatalf("seeding placement %d: %v", i, err)
		}
	}
	close(work)
	wg.Wait()
	select {
	case err := <-errs:
		b.Fatal(err)
	default:
	}
	b.Logf("%d placements recorded in %s (64 at a time)", n, time.Since(began).Round(time.Millisecond))
	if seeded.vms == nil {
		seeded.vms = map[int]filter.Subject{}
	}
	seeded.vms[n] = vm
	return vm
}

// BenchmarkPlacementsRead reads every placement of a VM with 1,000 and with
// 10,000 of them (Placements, pages of up to 2,000 placements each), and
// builds the VM's residency report from them (residency.Read).
func BenchmarkPlacementsRead(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("placements=%d", n), func(b *testing.B) {
			vm := seedPlacements(b, n)
			reader := connect(b, "org1-user")
			c := context.Background()
			var read, report latencies
			b.ResetTimer()
			for b.Loop() {
				read.time(func() {
					ps, err := reader.Placements(c, ledger.PlacementQuery{VM: vm.ID()})
					if err != nil || len(ps) != n {
						b.Fatalf("read %d placements, want %d: %v", len(ps), n, err)
					}
				})
				report.time(func() {
					q := residency.Query{Subject: vm, From: time.Now().Add(-time.Duration(n+1) * time.Minute), To: time.Now()}
					rep, err := residency.Read(c, reader, q, time.Now())
					if err != nil || rep.Placements != n {
						b.Fatalf("report of %d placements, want %d: %v", rep.Placements, n, err)
					}
				})
			}
			read.reportAs(b, "read-")
			report.reportAs(b, "report-")
		})
	}
}
