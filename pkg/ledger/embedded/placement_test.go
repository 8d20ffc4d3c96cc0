package embedded

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/access"
)

const (
	pVM1 = "3f0c9a52-6b1e-4d8a-9c1e-2a7b5d4e6f10"
	pVM2 = "8d2e6b1a-0c4f-4e7b-9a3d-5f1c2b7e9a01"
	pVM3 = "01a2b3c4-d5e6-4f70-8a9b-0c1d2e3f4a5b"
)

var (
	pAt       = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	gRecorder = identity("recorder", access.RoleRecorder, "")
	gAgent2   = identity("agent-hm3", access.RoleHostAgent, "hm3")
)

// nova is a placement of Nova's word, ref its message id.
func nova(vm, host, op string, at time.Time, ref string) ledger.Placement {
	return ledger.Placement{VM: vm, Project: "p1", Host: host, Op: op, At: at, Witness: ledger.WitnessNova, Ref: ref}
}

// seen is the host agent's word that it sees vm on host.
func seen(vm, host string, at time.Time) ledger.Placement {
	return ledger.Placement{VM: vm, Project: "p1", Host: host, Op: ledger.OpObserved, At: at, Witness: ledger.WitnessHostAgent,
		Ref: "hostagent:" + host + ":" + vm + ":" + at.Format(time.RFC3339Nano)}
}

func mustRecord(t testing.TB, l *Ledger, ctx context.Context, p ledger.Placement) ledger.PlacementRecord {
	t.Helper()
	rec, changed, err := l.RecordPlacement(ctx, p)
	if err != nil || !changed {
		t.Fatalf("RecordPlacement(%+v) = %v, changed %v", p, err, changed)
	}
	return rec
}

// placementFacts writes hm1 (JP, A), hm2 (DE, A), hm3 (JP, A, B) and the
// regulations of pVM1 (JP for A and B) and of project p1 (any country, A).
func placementFacts(t testing.TB, l *Ledger) {
	t.Helper()
	ctx := context.Background()
	for _, h := range []filter.Host{
		{Name: "hm1", Country: "JP", Organizations: []string{"A"}},
		{Name: "hm2", Country: "DE", Organizations: []string{"A"}},
		{Name: "hm3", Country: "JP", Organizations: []string{"A", "B"}},
	} {
		if _, _, err := l.PutHost(gOperator, h); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := l.PutRegulation(ctx, filter.VMSubject(pVM1), filter.Terms{Allow: []filter.Rule{{Country: "JP", Organization: "A"}, {Country: "JP", Organization: "B"}}}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := l.PutRegulation(ctx, filter.ProjectSubject("p1"), filter.Terms{Allow: []filter.Rule{{Country: "*", Organization: "A"}}}); err != nil {
		t.Fatal(err)
	}
}

func TestPlacementRules(t *testing.T) {
	l := openTemp(t)
	placementFacts(t, l)
	ok := func(ctx context.Context, p ledger.Placement, writer ledger.Writer) {
		t.Helper()
		rec := mustRecord(t, l, ctx, p)
		if rec.Writer != writer {
			t.Errorf("writer %+v, want %+v", rec.Writer, writer)
		}
	}
	ok(gRecorder, nova(pVM1, "hm1", ledger.OpBoot, pAt, "msg-1"), ledger.Writer{ID: "recorder", Role: access.RoleRecorder})
	ok(gRecorder, ledger.Placement{VM: pVM1, From: "hm1", Op: ledger.OpDeleteVM, At: pAt.Add(time.Hour), Witness: ledger.WitnessNova, Ref: "msg-2"},
		ledger.Writer{ID: "recorder", Role: access.RoleRecorder})
	ok(gAgent, seen(pVM1, "hm1", pAt), ledger.Writer{ID: "agent-hm1", Role: access.RoleHostAgent})
	ok(gAgent, ledger.Placement{VM: pVM1, From: "hm1", Op: ledger.OpGone, At: pAt.Add(time.Hour), Witness: ledger.WitnessHostAgent, Ref: "gone-1"},
		ledger.Writer{ID: "agent-hm1", Role: access.RoleHostAgent})
	ok(gOperator, seen(pVM1, "hm2", pAt), ledger.Writer{ID: "admin", Role: access.RoleOperator})
	ok(context.Background(), nova(pVM1, "hm2", ledger.OpBoot, pAt, "msg-op"), ledger.Writer{ID: DefaultWriterID})

	for _, tc := range []struct {
		name  string
		ctx   context.Context
		p     ledger.Placement
		words []string
	}{
		{"recorder as the host agent", gRecorder, seen(pVM1, "hm1", pAt.Add(time.Minute)), []string{"records Nova's word"}},
		{"host agent as Nova", gAgent, nova(pVM1, "hm1", ledger.OpBoot, pAt, "msg-9"), []string{"records its own word"}},
		{"host agent of another host", gAgent, seen(pVM1, "hm3", pAt), []string{"its own host only", "hm1", "hm3"}},
		{"host agent: gone from another host", gAgent, ledger.Placement{VM: pVM1, From: "hm3", Op: ledger.OpGone, At: pAt, Witness: ledger.WitnessHostAgent, Ref: "gone-2"},
			[]string{"its own host only"}},
		{"vmmanager", gVMM, nova(pVM1, "hm1", ledger.OpBoot, pAt, "msg-10"), []string{"needs the role recorder or hostagent", "role is vmmanager"}},
		{"hostadmin", gHostAdmin, seen(pVM1, "hm1", pAt.Add(2*time.Minute)), []string{"role is hostadmin"}},
		{"policyadmin", gPolicy, nova(pVM1, "hm1", ledger.OpBoot, pAt, "msg-11"), []string{"role is policyadmin"}},
		{"attestor", gAttestor, nova(pVM1, "hm1", ledger.OpBoot, pAt, "msg-12"), []string{"role is attestor"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := mustHeight(t, l)
			_, _, err := l.RecordPlacement(tc.ctx, tc.p)
			refusedUnchanged(t, l, before, err, ledger.ErrForbidden, tc.words...)
		})
	}
	// A recorder writes no host and no regulation.
	before := mustHeight(t, l)
	_, _, err := l.PutHost(gRecorder, filter.Host{Name: "hm9", Country: "JP", Organizations: []string{"A"}})
	refusedUnchanged(t, l, before, err, ledger.ErrForbidden, "role is recorder")
	_, _, err = l.PutRegulation(gRecorder, filter.VMSubject(pVM2), filter.Terms{Allow: []filter.Rule{{Country: "JP", Organization: "A"}}})
	refusedUnchanged(t, l, before, err, ledger.ErrForbidden, "role is recorder")

	// Invalid placements are refused before any rule.
	for _, p := range []ledger.Placement{
		{VM: "not-a-uuid", Host: "hm1", Op: ledger.OpBoot, At: pAt, Witness: ledger.WitnessNova, Ref: "x"},
		{VM: pVM1, Host: "hm1", Op: "teleport", At: pAt, Witness: ledger.WitnessNova, Ref: "x"},
		{VM: pVM1, Op: ledger.OpBoot, At: pAt, Witness: ledger.WitnessNova, Ref: "x"},
		{VM: pVM1, Host: "hm1", Op: ledger.OpBoot, Witness: ledger.WitnessNova, Ref: "x"},
		{VM: pVM1, Host: "hm1", Op: ledger.OpBoot, At: pAt, Witness: "oracle", Ref: "x"},
		{VM: pVM1, Host: "hm1", Op: ledger.OpBoot, At: pAt, Witness: ledger.WitnessNova},
	} {
		_, _, err := l.RecordPlacement(gRecorder, p)
		refusedUnchanged(t, l, before, err, ledger.ErrInvalid, "placement")
	}
	verifyOK(t, l)
}

func TestPlacementIdempotent(t *testing.T) {
	ctx := gRecorder
	l := openTemp(t)
	placementFacts(t, l)
	p := nova(strings.ToUpper(pVM1), "hm1", ledger.OpBoot, pAt.In(time.FixedZone("JST", 9*3600)), "msg-1")
	first := mustRecord(t, l, ctx, p)
	if first.VM != pVM1 || !first.At.Equal(pAt) || first.At.Location() != time.UTC {
		t.Fatalf("not normalised: %+v", first)
	}
	h := mustHeight(t, l)
	if first.TxID == "" || first.RecordedAt.IsZero() {
		t.Fatalf("record %+v", first)
	}
	e, err := l.History(context.Background(), ledger.KindHost, "hm1")
	if err != nil || len(e) != 1 {
		t.Fatal(err)
	}
	for _, again := range []ledger.Placement{p, nova(pVM1, "hm3", ledger.OpLiveMigration, pAt.Add(time.Hour), "msg-1")} {
		rec, changed, err := l.RecordPlacement(ctx, again)
		if err != nil || changed {
			t.Fatalf("again: %v, changed %v", err, changed)
		}
		if !sameJSON(rec, first) {
			t.Fatalf("again: %+v, want the stored %+v", rec, first)
		}
		if mustHeight(t, l) != h {
			t.Fatal("a placement recorded again moved the height")
		}
	}
	// Another witness's word of the same ref is another placement.
	op := ledger.Placement{VM: pVM1, Host: "hm1", Op: ledger.OpObserved, At: pAt, Witness: ledger.WitnessHostAgent, Ref: "msg-1"}
	if _, changed, err := l.RecordPlacement(gOperator, op); err != nil || !changed {
		t.Fatalf("the other witness: %v, %v", err, changed)
	}
	got, err := l.Placements(context.Background(), ledger.PlacementQuery{VM: pVM1})
	if err != nil || len(got) != 2 {
		t.Fatalf("Placements = %+v, %v", got, err)
	}
	verifyOK(t, l)
}

func TestPlacementVerdict(t *testing.T) {
	ctx := gRecorder
	l := openTemp(t)
	placementFacts(t, l)
	vmReg, projReg := filter.VMSubject(pVM1), filter.ProjectSubject("p1")

	// Allowed on hm1, with both regulations and their versions.
	rec := mustRecord(t, l, ctx, nova(pVM1, "hm1", ledger.OpBoot, pAt, "m1"))
	want := &ledger.PlacementVerdict{Allowed: true, Regulations: []ledger.RegulationVersion{{Subject: vmReg, Version: 1}, {Subject: projReg, Version: 1}},
		Country: "JP", Organizations: []string{"A"}}
	if !sameJSON(rec.Verdict, want) {
		t.Fatalf("verdict %+v, want %+v", rec.Verdict, want)
	}
	// A violation: hm2 is in DE; the VM's regulation denies it.
	rec = mustRecord(t, l, ctx, nova(pVM1, "hm2", ledger.OpLiveMigration, pAt.Add(time.Hour), "m2"))
	if v := rec.Verdict; v == nil || v.Allowed || v.Reason != filter.CountryNotAllowed || v.Regulation != vmReg || v.Detail == "" || v.Country != "DE" {
		t.Fatalf("violation verdict %+v", v)
	}
	// The regulation's version in force is recorded: version 2 now.
	if _, _, err := l.PutRegulation(context.Background(), vmReg, filter.Terms{Allow: []filter.Rule{{Country: "*", Organization: "A"}, {Country: "*", Organization: "B"}}}); err != nil {
		t.Fatal(err)
	}
	rec = mustRecord(t, l, ctx, nova(pVM1, "hm2", ledger.OpColdMigration, pAt.Add(2*time.Hour), "m3"))
	if v := rec.Verdict; !v.Allowed || !slices.Equal(v.Regulations, []ledger.RegulationVersion{{Subject: vmReg, Version: 2}, {Subject: projReg, Version: 1}}) {
		t.Fatalf("verdict under version 2: %+v", v)
	}
	// The project's regulation denies an organisation it does not allow.
	rec = mustRecord(t, l, ctx, nova(pVM1, "hm3", ledger.OpColdMigration, pAt.Add(3*time.Hour), "m4"))
	if v := rec.Verdict; v.Allowed || v.Reason != filter.OrganizationNotAllowed || v.Regulation != projReg {
		t.Fatalf("project's denial: %+v", v)
	}
	// An unregistered host; no host; an unregulated VM.
	rec = mustRecord(t, l, ctx, nova(pVM1, "hm9", ledger.OpEvacuate, pAt.Add(4*time.Hour), "m5"))
	if v := rec.Verdict; v.Allowed || v.Reason != filter.HostUnregistered || v.Country != "" {
		t.Fatalf("unregistered host: %+v", v)
	}
	rec = mustRecord(t, l, ctx, ledger.Placement{VM: pVM1, From: "hm9", Op: ledger.OpShelveOffload, At: pAt.Add(5 * time.Hour), Witness: ledger.WitnessNova, Ref: "m6"})
	if rec.Verdict != nil {
		t.Fatalf("a placement on no host has a verdict: %+v", rec.Verdict)
	}
	rec = mustRecord(t, l, ctx, ledger.Placement{VM: pVM2, Host: "hm2", Op: ledger.OpBoot, At: pAt, Witness: ledger.WitnessNova, Ref: "m7"})
	if v := rec.Verdict; !v.Allowed || len(v.Regulations) != 0 || v.Regulations == nil {
		t.Fatalf("unregulated VM: %+v", v)
	}
	// The registry's require_attested: hm1's facts are only claimed.
	if _, err := l.Propose(gOperator, ledger.Proposal{Kind: ledger.ProposeRegistry, Registry: registryOf(map[string][]string{"": {"*"}}, true)}); err != nil {
		t.Fatal(err)
	}
	rec = mustRecord(t, l, ctx, nova(pVM1, "hm1", ledger.OpUnshelve, pAt.Add(6*time.Hour), "m8"))
	if v := rec.Verdict; v.Allowed || v.Reason != filter.HostUnattested {
		t.Fatalf("require_attested: %+v", v)
	}
	if _, _, err := l.AttestHost(gAttestor, "hm1", "JP", []string{"A"}); err != nil {
		t.Fatal(err)
	}
	rec = mustRecord(t, l, ctx, nova(pVM1, "hm1", ledger.OpRebuild, pAt.Add(7*time.Hour), "m9"))
	if v := rec.Verdict; !v.Allowed || !v.Attested {
		t.Fatalf("attested: %+v", v)
	}
	rep := verifyOK(t, l)
	if rep.Placements != 9 {
		t.Fatalf("Verify counts %d placements", rep.Placements)
	}
}

func TestPlacementsQuery(t *testing.T) {
	ctx := context.Background()
	l := openTemp(t)
	placementFacts(t, l)
	// Recorded out of order, several VMs, two witnesses, two projects.
	ps := []ledger.Placement{
		nova(pVM1, "hm3", ledger.OpLiveMigration, pAt.Add(2*time.Hour), "b"),
		nova(pVM2, "hm1", ledger.OpBoot, pAt.Add(time.Hour), "a"),
		seen(pVM1, "hm1", pAt),
		nova(pVM1, "hm1", ledger.OpBoot, pAt, "z"),
		nova(pVM1, "hm1", ledger.OpBoot, pAt, "a"),
		{VM: pVM3, Project: "p2", Host: "hm1", Op: ledger.OpBoot, At: pAt, Witness: ledger.WitnessNova, Ref: "c"},
		{VM: pVM1, From: "hm3", Op: ledger.OpDeleteVM, At: pAt.Add(3 * time.Hour), Witness: ledger.WitnessNova, Ref: "d"},
	}
	for _, p := range ps {
		mustRecord(t, l, gOperator, p)
	}
	names := func(rs []ledger.PlacementRecord) string {
		var out []string
		for _, r := range rs {
			out = append(out, fmt.Sprintf("%s/%s/%s/%s", r.VM[:3], r.At.Sub(pAt), r.Witness, r.Ref))
		}
		return strings.Join(out, " ")
	}
	for _, tc := range []struct {
		name string
		q    ledger.PlacementQuery
		want string
	}{
		{"a VM, all", ledger.PlacementQuery{VM: pVM1},
			"3f0/0s/hostagent/hostagent:hm1:" + pVM1 + ":2026-03-01T12:00:00Z 3f0/0s/nova/a 3f0/0s/nova/z 3f0/2h0m0s/nova/b 3f0/3h0m0s/nova/d"},
		{"a VM in any case", ledger.PlacementQuery{VM: strings.ToUpper(pVM2)}, "8d2/1h0m0s/nova/a"},
		{"a VM from", ledger.PlacementQuery{VM: pVM1, From: pAt.Add(time.Nanosecond)}, "3f0/2h0m0s/nova/b 3f0/3h0m0s/nova/d"},
		{"a VM to (excluded)", ledger.PlacementQuery{VM: pVM1, From: pAt.Add(time.Hour), To: pAt.Add(3 * time.Hour)}, "3f0/2h0m0s/nova/b"},
		{"an empty period", ledger.PlacementQuery{VM: pVM1, From: pAt, To: pAt}, ""},
		{"a project", ledger.PlacementQuery{Project: "p1"},
			"3f0/0s/hostagent/hostagent:hm1:" + pVM1 + ":2026-03-01T12:00:00Z 3f0/0s/nova/a 3f0/0s/nova/z 3f0/2h0m0s/nova/b 8d2/1h0m0s/nova/a"},
		{"a project in a period", ledger.PlacementQuery{Project: "p1", From: pAt.Add(time.Hour), To: pAt.Add(2 * time.Hour)}, "8d2/1h0m0s/nova/a"},
		{"a project from", ledger.PlacementQuery{Project: "p1", From: pAt.Add(90 * time.Minute)}, "3f0/2h0m0s/nova/b"},
		{"another project", ledger.PlacementQuery{Project: "p2"}, "01a/0s/nova/c"},
		{"no such VM", ledger.PlacementQuery{VM: "11111111-2222-4333-8444-555555555555"}, ""},
		{"no such project", ledger.PlacementQuery{Project: "p9"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := l.Placements(ctx, tc.q)
			if err != nil {
				t.Fatal(err)
			}
			if got == nil || names(got) != tc.want {
				t.Fatalf("got  %s\nwant %s", names(got), tc.want)
			}
		})
	}
	// The deleting placement names no project: it is the VM's only.
	for _, tc := range []struct {
		name  string
		q     ledger.PlacementQuery
		words string
	}{
		{"neither", ledger.PlacementQuery{}, "a VM or a project"},
		{"both", ledger.PlacementQuery{VM: pVM1, Project: "p1"}, "not both"},
		{"bad VM", ledger.PlacementQuery{VM: "x"}, "vm"},
		{"backwards", ledger.PlacementQuery{VM: pVM1, From: pAt, To: pAt.Add(-time.Second)}, "is after to"},
		{"absurd", ledger.PlacementQuery{VM: pVM1, From: time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)}, "between the years"},
		{"limit beyond the most", ledger.PlacementQuery{VM: pVM1, Limit: ledger.MaxPlacements + 1}, "limit"},
		{"negative limit", ledger.PlacementQuery{VM: pVM1, Limit: -1}, "limit"},
		{"more than the limit", ledger.PlacementQuery{VM: pVM1, Limit: 4}, "narrow the period"},
		{"more than the limit, project", ledger.PlacementQuery{Project: "p1", Limit: 2}, "narrow the period"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := l.Placements(ctx, tc.q)
			if !errors.Is(err, ledger.ErrInvalid) || !strings.Contains(err.Error(), tc.words) {
				t.Fatalf("err = %v, want ErrInvalid saying %q", err, tc.words)
			}
		})
	}
	if got, err := l.Placements(ctx, ledger.PlacementQuery{VM: pVM1, Limit: 5}); err != nil || len(got) != 5 {
		t.Fatalf("exactly the limit: %d, %v", len(got), err)
	}
	// History does not list placements; Placements does.
	if _, err := l.History(ctx, ledger.KindPlacement, pVM1); !errors.Is(err, ledger.ErrInvalid) {
		t.Fatalf("History of placements: %v", err)
	}
}

func TestPlacementEvents(t *testing.T) {
	l := openTemp(t)
	placementFacts(t, l)
	h := mustHeight(t, l)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := l.Watch(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	rec := mustRecord(t, l, gRecorder, nova(pVM1, "hm2", ledger.OpLiveMigration, pAt, "m1"))
	mustRecord(t, l, gRecorder, nova(pVM1, "hm2", ledger.OpLiveMigration, pAt, "m1x")) // another
	if _, changed, _ := l.RecordPlacement(gRecorder, nova(pVM1, "hm2", ledger.OpLiveMigration, pAt, "m1")); changed {
		t.Fatal("recorded again")
	}
	ev := <-ch
	if ev.Kind != ledger.KindPlacement || ev.Key != pVM1 || ev.Op != ledger.OpPut || ev.Block != h+1 || ev.TxID != rec.TxID ||
		ev.Placement == nil || !sameJSON(*ev.Placement, rec) || !ev.Time.Equal(rec.RecordedAt) || ev.Writer != rec.Writer {
		t.Fatalf("event %+v (placement %+v), want one of %+v", ev, ev.Placement, rec)
	}
	if ev.Placement.Verdict == nil || ev.Placement.Verdict.Allowed {
		t.Fatalf("the event's verdict: %+v", ev.Placement.Verdict)
	}
	if ev := <-ch; ev.Block != h+2 || ev.Placement.Ref != "m1x" {
		t.Fatalf("second event %+v", ev)
	}
}

// fillPlacements writes placementFacts (entries 1-5), then
//
//	6 placement pVM1 on hm1 (recorder, allowed)
//	7 placement pVM1 on hm2 (recorder, denied: country_not_allowed)
//	8 placement pVM1 seen on hm1 (host agent)
//	9 regulation of pVM1, version 2 (DE allowed)
//	10 placement pVM2 on hm2 (recorder, project p2)
func fillPlacements(t *testing.T, path string) {
	t.Helper()
	l, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	placementFacts(t, l)
	mustRecord(t, l, gRecorder, nova(pVM1, "hm1", ledger.OpBoot, pAt, "m1"))
	mustRecord(t, l, gRecorder, nova(pVM1, "hm2", ledger.OpLiveMigration, pAt.Add(time.Hour), "m2"))
	mustRecord(t, l, gAgent, seen(pVM1, "hm1", pAt.Add(time.Minute)))
	if _, _, err := l.PutRegulation(context.Background(), filter.VMSubject(pVM1), filter.Terms{Allow: []filter.Rule{{Country: "*", Organization: "A"}}}); err != nil {
		t.Fatal(err)
	}
	p := nova(pVM2, "hm2", ledger.OpBoot, pAt, "m3")
	p.Project = "p2"
	mustRecord(t, l, gRecorder, p)
}

// placementKeyAt is the placements bucket's key of entry seq's placement.
func placementKeyAt(tx *bolt.Tx, seq uint64) []byte {
	e, err := readEntry(tx, seq)
	if err != nil {
		return nil
	}
	r, err := e.records()
	if err != nil || r.placement == nil {
		return nil
	}
	return placementKey(r.placement.Placement)
}

func TestVerifyPlacements(t *testing.T) {
	editRecord := func(seq uint64, from, to string) func(tx *bolt.Tx) error {
		return func(tx *bolt.Tx) error {
			k := placementKeyAt(tx, seq)
			b := tx.Bucket(bucketPlacements)
			v := b.Get(k)
			if !strings.Contains(string(v), from) {
				return errors.New("nothing to edit: " + string(v))
			}
			return b.Put(k, []byte(strings.Replace(string(v), from, to, 1)))
		}
	}
	tests := []struct {
		name      string
		tamper    func(tx *bolt.Tx) error
		wantSeq   uint64
		wantWords string
	}{
		{"untouched", nil, 0, ""},
		{"verdict in the record turned allowed", editRecord(7, `"allowed":false`, `"allowed":true`), 7, "differs from what the entry wrote"},
		{"host in the record changed", editRecord(6, `"host":"hm1"`, `"host":"hm3"`), 6, "differs"},
		{"record removed", func(tx *bolt.Tx) error { return tx.Bucket(bucketPlacements).Delete(placementKeyAt(tx, 8)) }, 0, "the chain records 4 placements and the ledger holds 3"},
		{"record moved in time", func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketPlacements)
			k := placementKeyAt(tx, 6)
			v := bytes.Clone(b.Get(k))
			p := nova(pVM1, "hm1", ledger.OpBoot, pAt.Add(-time.Hour), "m1")
			if err := b.Delete(k); err != nil {
				return err
			}
			return b.Put(placementKey(p), v)
		}, 6, "not under the key"},
		{"record of no entry added", func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketPlacements)
			v := bytes.Clone(b.Get(placementKeyAt(tx, 6)))
			copy(v, seqKey(3)) // a host's entry
			return b.Put(placementKey(nova(pVM3, "hm1", ledger.OpBoot, pAt, "forged")), v)
		}, 0, "written by no chain entry"},
		{"ref removed", func(tx *bolt.Tx) error {
			return tx.Bucket(bucketPlacementRefs).Delete(refKey(nova(pVM1, "", "", time.Time{}, "m2")))
		}, 7, "the placement ref index does not name placement"},
		{"ref pointed elsewhere", func(tx *bolt.Tx) error {
			return tx.Bucket(bucketPlacementRefs).Put(refKey(nova(pVM1, "", "", time.Time{}, "m2")), placementKeyAt(tx, 6))
		}, 7, "does not name placement"},
		{"ref of no placement added", func(tx *bolt.Tx) error {
			return tx.Bucket(bucketPlacementRefs).Put(refKey(nova(pVM3, "", "", time.Time{}, "m9")), placementKeyAt(tx, 6))
		}, 0, "ref index has 5 keys"},
		{"project index removed", func(tx *bolt.Tx) error {
			return tx.Bucket(bucketPlacementProjects).Delete(projectKey("p2", placementKeyAt(tx, 10)))
		}, 10, "missing from the project index"},
		{"project index key added", func(tx *bolt.Tx) error {
			return tx.Bucket(bucketPlacementProjects).Put(projectKey("p9", placementKeyAt(tx, 10)), nil)
		}, 0, "project index has 5 keys, and the chain's placements of projects make 4"},
		{"project index of another project", func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketPlacementProjects)
			if err := b.Delete(projectKey("p2", placementKeyAt(tx, 10))); err != nil {
				return err
			}
			return b.Put(projectKey("p1", placementKeyAt(tx, 10)), nil)
		}, 10, "missing from the project index"},
		{"placement entry edited", editEntry(7, false, func(e *entry) {
			e.Value = []byte(strings.Replace(string(e.Value), `"allowed":false`, `"allowed":true`, 1))
		}), 7, "does not match its hash"},
		{"violation forged allowed, chain rewritten", forge(7, func(e *entry) {
			v := string(e.Value)
			i, j := strings.Index(v, `"verdict":`), strings.Index(v, `,"regulation":`)
			e.Value = []byte(v[:i] + `"verdict":{"allowed":true` + v[j:])
			e.Value = []byte(strings.Replace(string(e.Value), `,"regulation":"vm:`+pVM1+`"`, "", 1))
		}), 7, "the placement's verdict is not the decision on the ledger's state then (denied: country_not_allowed)"},
		{"host changed, chain rewritten", forge(7, func(e *entry) {
			e.Value = []byte(strings.Replace(string(e.Value), `"host":"hm2"`, `"host":"hm3"`, 1))
		}), 7, "verdict is not the decision"},
		{"regulation version forged, chain rewritten", forge(6, func(e *entry) {
			e.Value = []byte(strings.Replace(string(e.Value), `"version":1`, `"version":2`, 1))
		}), 6, "verdict is not the decision"},
		{"recorder's placement as the host agent's, chain rewritten", forge(6, func(e *entry) {
			e.Value = []byte(strings.Replace(string(e.Value), `"witness":"nova"`, `"witness":"hostagent"`, 1))
		}), 6, "may not record"},
		{"placement not normalised, chain rewritten", forge(6, func(e *entry) {
			e.Value = []byte(strings.Replace(string(e.Value), pVM1, strings.ToUpper(pVM1), 1))
		}), 6, "not the normalised placement"},
		{"placement recorded twice, chain rewritten", forge(8, func(e *entry) {
			*e = entry{Seq: e.Seq, Kind: ledger.KindPlacement, Key: pVM1, Op: ledger.OpPut, Writer: ledger.Writer{ID: "recorder", Role: access.RoleRecorder}, Time: e.Time}
			p := nova(pVM1, "hm1", ledger.OpBoot, pAt.Add(time.Second), "m1")
			e.Value, _ = marshalPlacementValue(p, &ledger.PlacementVerdict{Allowed: true,
				Regulations: []ledger.RegulationVersion{{Subject: filter.VMSubject(pVM1), Version: 1}, {Subject: filter.ProjectSubject("p1"), Version: 1}},
				Country:     "JP", Organizations: []string{"A"}})
		}), 6, "the placement ref index does not name placement"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), FileName)
			fillPlacements(t, path)
			if tt.tamper != nil {
				db, err := bolt.Open(path, 0o600, nil)
				if err != nil {
					t.Fatal(err)
				}
				if err := db.Update(tt.tamper); err != nil {
					t.Fatalf("tamper: %v", err)
				}
				if err := db.Close(); err != nil {
					t.Fatal(err)
				}
				if l, err := Open(path); !errors.Is(err, ErrTampered) {
					if l != nil {
						l.Close()
					}
					t.Fatalf("Open of a tampered file: %v, want ErrTampered", err)
				}
			}
			l, err := OpenReadOnly(path)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			rep, err := l.Verify(context.Background())
			if tt.wantWords == "" {
				if err != nil || !rep.OK || rep.Height != 10 || rep.Placements != 4 || rep.Hosts != 3 || rep.Regulations != 2 {
					t.Fatalf("Verify = %+v, %v", rep, err)
				}
				return
			}
			if !errors.Is(err, ErrTampered) {
				t.Fatalf("err = %v, want ErrTampered (report %+v)", err, rep)
			}
			if rep.OK || rep.BrokenSeq != tt.wantSeq || !strings.Contains(rep.Problem, tt.wantWords) {
				t.Errorf("report %+v, want broken entry %d and a problem saying %q", rep, tt.wantSeq, tt.wantWords)
			}
		})
	}
}

func marshalPlacementValue(p ledger.Placement, v *ledger.PlacementVerdict) ([]byte, error) {
	p, err := ledger.NormalizePlacement(p)
	if err != nil {
		return nil, err
	}
	return json.Marshal(placementValue{Placement: p, Verdict: v})
}

// TestOldFileTakesPlacements: a ledger written before placements existed
// (and before governance) opens and verifies without their buckets, reads
// none, takes placements, and opens and verifies again.
func TestOldFileTakesPlacements(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	for _, name := range []string{FileName, "ledger.head"} {
		copyFile(t, filepath.Join("testdata", "before-governance", name), filepath.Join(dir, name))
	}
	path := filepath.Join(dir, FileName)
	l, err := Open(path)
	if err != nil {
		t.Fatalf("Open of a file written before placements: %v", err)
	}
	rep := verifyOK(t, l)
	if rep.Height != 7 || rep.Placements != 0 {
		t.Fatalf("Verify = %+v", rep)
	}
	for _, q := range []ledger.PlacementQuery{{VM: pVM1}, {Project: "p1"}} {
		if got, err := l.Placements(ctx, q); err != nil || got == nil || len(got) != 0 {
			t.Fatalf("Placements(%+v) = %+v, %v", q, got, err)
		}
	}
	lk, err := l.Lookup(ctx, []filter.Subject{filter.VMSubject(pVM1)}, []string{"hm1"})
	if err != nil {
		t.Fatal(err)
	}
	rec := mustRecord(t, l, gRecorder, ledger.Placement{VM: pVM1, Host: "hm1", Op: ledger.OpBoot, At: pAt, Witness: ledger.WitnessNova, Ref: "m1"})
	if v := rec.Verdict; v == nil || len(v.Regulations) != 1 || v.Regulations[0].Version != lk.Regulations[filter.VMSubject(pVM1)].Version {
		t.Fatalf("verdict %+v", v)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	rep = verifyOK(t, l)
	if rep.Height != 8 || rep.Placements != 1 {
		t.Fatalf("Verify = %+v", rep)
	}
	if got, err := l.Placements(ctx, ledger.PlacementQuery{VM: pVM1}); err != nil || len(got) != 1 || !sameJSON(got[0], rec) {
		t.Fatalf("Placements = %+v, %v", got, err)
	}
}
