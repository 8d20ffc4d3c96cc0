package residency

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
)

const vm = "6f1c0d3e-8b2a-4c1d-9e7f-0a1b2c3d4e5f"

var t0 = time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)

func at(min int) time.Time { return t0.Add(time.Duration(min) * time.Minute) }

func place(witness, op, host string, min int, allowed bool) ledger.PlacementRecord {
	p := ledger.PlacementRecord{
		Placement: ledger.Placement{VM: vm, Project: "p1", Host: host, Op: op, At: at(min), Witness: witness,
			Ref: fmt.Sprintf("%s-%d", witness, min)},
		TxID: fmt.Sprintf("tx-%s-%d", witness, min), RecordedAt: at(min).Add(time.Second),
	}
	if host != "" {
		p.Verdict = &ledger.PlacementVerdict{Allowed: allowed, Country: "JP", Organizations: []string{"CompanyA"},
			Regulations: []ledger.RegulationVersion{{Subject: filter.VMSubject(vm), Version: 1}}}
		if !allowed {
			p.Verdict.Reason, p.Verdict.Country = filter.CountryNotAllowed, "DE"
		}
	}
	return p
}

// The flows of a VM's life: boot, live and cold migration, a forced move
// past the scheduler, shelve-offload and unshelve, delete; the host agent
// confirms all but one interval and sees the VM once where Nova never put
// it.
func flows() []ledger.PlacementRecord {
	return []ledger.PlacementRecord{
		place(ledger.WitnessNova, ledger.OpBoot, "hm1", 0, true),
		place(ledger.WitnessHostAgent, ledger.OpObserved, "hm1", 2, true),
		place(ledger.WitnessNova, ledger.OpLiveMigration, "hm2", 60, true),
		place(ledger.WitnessHostAgent, ledger.OpObserved, "hm2", 61, true),
		place(ledger.WitnessNova, ledger.OpColdMigration, "hm3", 120, true),
		// not confirmed by the host agent
		place(ledger.WitnessNova, ledger.OpLiveMigration, "de1", 180, false),
		place(ledger.WitnessHostAgent, ledger.OpObserved, "de1", 183, false),
		place(ledger.WitnessNova, ledger.OpShelveOffload, "", 240, false),
		place(ledger.WitnessHostAgent, ledger.OpObserved, "hm9", 250, true), // Nova never placed it there
		place(ledger.WitnessNova, ledger.OpUnshelve, "hm1", 300, true),
		place(ledger.WitnessHostAgent, ledger.OpObserved, "hm1", 301, true),
		place(ledger.WitnessNova, ledger.OpDeleteVM, "", 360, false),
	}
}

func query(t *testing.T) Query {
	t.Helper()
	q, err := Query{Subject: filter.VMSubject(vm), From: at(-60), To: at(24 * 60)}.Normalize()
	if err != nil {
		t.Fatal(err)
	}
	return q
}

func TestBuildTheIntervalsOfAVMsLife(t *testing.T) {
	q := query(t)
	r := Build(q, flows(), at(24*60))
	type want struct {
		host        string
		from, to    int
		violation   bool
		witnesses   string
		discrepancy string
	}
	wants := []want{
		{"hm1", 0, 60, false, "nova+hostagent", ""},
		{"hm2", 60, 120, false, "nova+hostagent", ""},
		{"hm3", 120, 180, false, "nova", NotConfirmed},
		{"de1", 180, 240, true, "nova+hostagent", ""},
		{"hm9", 250, 301, false, "hostagent", HostAgentOnly},
		{"hm1", 300, 360, false, "nova+hostagent", ""},
	}
	if len(r.Intervals) != len(wants) {
		var b bytes.Buffer
		WriteTable(&b, r)
		t.Fatalf("%d intervals, want %d:\n%s", len(r.Intervals), len(wants), b.String())
	}
	for i, w := range wants {
		iv := r.Intervals[i]
		if iv.Host != w.host || !iv.From.Equal(at(w.from)) || !iv.To.Equal(at(w.to)) || iv.Violation != w.violation ||
			strings.Join(iv.Witnesses, "+") != w.witnesses || iv.Discrepancy != w.discrepancy {
			t.Errorf("interval %d: %s %s..%s violation %v witnesses %v %q; want %+v", i+1, iv.Host, iv.From, iv.To,
				iv.Violation, iv.Witnesses, iv.Discrepancy, w)
		}
	}
	if r.Violations != 1 || r.Discrepancies != 2 || r.Placements != len(flows()) {
		t.Errorf("totals: %d violations, %d discrepancies, %d placements", r.Violations, r.Discrepancies, r.Placements)
	}
	// The order placements come in changes nothing.
	rev := flows()
	for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
		rev[i], rev[j] = rev[j], rev[i]
	}
	if err := Same(r, Build(q, rev, at(24*60))); err != nil {
		t.Errorf("placements in another order: %v", err)
	}
}

// A resize's finish and its confirmation both place the VM on the same
// host: one interval with both as evidence. A placement on the same host
// with another verdict (a regulation tightened meanwhile) starts another.
func TestSameHostIsOneInterval(t *testing.T) {
	ps := []ledger.PlacementRecord{
		place(ledger.WitnessNova, ledger.OpBoot, "hm1", 0, true),
		place(ledger.WitnessNova, ledger.OpResize, "hm3", 60, true),
		place(ledger.WitnessNova, ledger.OpResize, "hm3", 61, true),
		place(ledger.WitnessNova, ledger.OpRebuild, "hm3", 90, false),
	}
	r := Build(query(t), ps, at(120))
	if len(r.Intervals) != 3 || r.Intervals[1].Host != "hm3" || len(r.Intervals[1].Evidence) != 2 ||
		!r.Intervals[1].To.Equal(at(90)) || !r.Intervals[2].Violation || r.Intervals[2].Op != ledger.OpRebuild {
		var b bytes.Buffer
		WriteTable(&b, r)
		t.Fatalf("intervals:\n%s", b.String())
	}
}

// A sighting from an earlier stay on a host does not confirm a later stay
// there that began within the bound; one on the destination while the
// migration to it is still under way (before Nova's word) does.
func TestAnEarlierStaysSightingConfirmsNothingLater(t *testing.T) {
	ps := []ledger.PlacementRecord{
		place(ledger.WitnessNova, ledger.OpBoot, "hm1", 0, true),
		place(ledger.WitnessHostAgent, ledger.OpObserved, "hm1", 1, true),
		place(ledger.WitnessNova, ledger.OpLiveMigration, "hm2", 5, true),
		place(ledger.WitnessHostAgent, ledger.OpObserved, "hm2", 6, true),
		place(ledger.WitnessNova, ledger.OpLiveMigration, "hm1", 10, true),
	}
	r := Build(query(t), ps, at(60))
	if len(r.Intervals) != 3 {
		t.Fatalf("%d intervals", len(r.Intervals))
	}
	if last := r.Intervals[2]; last.Host != "hm1" || len(last.Witnesses) != 1 || last.Discrepancy != NotConfirmed {
		t.Fatalf("the second stay on hm1: witnesses %v, discrepancy %q, evidence %d; want Nova's alone, not confirmed",
			last.Witnesses, last.Discrepancy, len(last.Evidence))
	}
	if first := r.Intervals[0]; len(first.Witnesses) != 2 {
		t.Fatalf("the first stay on hm1: witnesses %v", first.Witnesses)
	}
	early := append(ps[:len(ps):len(ps)], place(ledger.WitnessHostAgent, ledger.OpObserved, "hm3", 19, true),
		place(ledger.WitnessNova, ledger.OpResize, "hm3", 20, true))
	r = Build(query(t), early, at(60))
	if len(r.Intervals) != 4 || r.Intervals[3].Host != "hm3" || len(r.Intervals[3].Witnesses) != 2 || len(r.Intervals[2].Witnesses) != 1 {
		var b bytes.Buffer
		WriteTable(&b, r)
		t.Fatalf("a sighting on the destination a minute before Nova's word:\n%s", b.String())
	}
}

func TestBuildClipsToThePeriodAndAsOf(t *testing.T) {
	q, err := Query{Subject: filter.VMSubject(vm), From: at(90), To: at(200)}.Normalize()
	if err != nil {
		t.Fatal(err)
	}
	r := Build(q, flows(), at(130))
	// As of minute 130, the cold migration at 120 is the last placement:
	// hm2 from 90 (clipped) to 120, hm3 from 120, open, to 130.
	if len(r.Intervals) != 2 || r.Intervals[0].Host != "hm2" || !r.Intervals[0].From.Equal(at(90)) ||
		r.Intervals[1].Host != "hm3" || !r.Intervals[1].Open || !r.Intervals[1].To.Equal(at(130)) {
		var b bytes.Buffer
		WriteTable(&b, r)
		t.Fatalf("clipped report:\n%s", b.String())
	}
	// An interval younger than the bound is not yet a discrepancy.
	if r.Intervals[1].Discrepancy != "" {
		t.Errorf("hm3, 10 minutes old and unconfirmed with a 15 minute bound, is flagged before the bound passed: %q", r.Intervals[1].Discrepancy)
	}
	// Once the bound has passed, it is.
	if r := Build(q, flows(), at(150)); r.Intervals[1].Discrepancy != NotConfirmed {
		t.Errorf("hm3, 30 minutes old and unconfirmed: %q, want %q", r.Intervals[1].Discrepancy, NotConfirmed)
	}
}

type fakeLedger []ledger.PlacementRecord

func (f fakeLedger) Placements(_ context.Context, q ledger.PlacementQuery) ([]ledger.PlacementRecord, error) {
	var out []ledger.PlacementRecord
	for _, p := range f {
		if (q.VM == "" || p.VM == q.VM) && (q.Project == "" || p.Project == q.Project) && p.At.Before(q.To) {
			out = append(out, p)
		}
	}
	return out, nil
}

func TestVerifyCatchesAnEditedReport(t *testing.T) {
	l := fakeLedger(flows())
	r, err := Read(context.Background(), l, query(t), at(24*60))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := WriteJSON(&buf, r); err != nil {
		t.Fatal(err)
	}
	back, err := ReadJSON(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if err := Verify(context.Background(), l, back); err != nil {
		t.Fatalf("the report as written: %v", err)
	}
	edits := map[string]func(*Report){
		"a host changed": func(r *Report) { r.Intervals[3].Host = "hm2" },
		"a violation hidden": func(r *Report) {
			r.Intervals[3].Verdict.Allowed, r.Intervals[3].Violation, r.Violations = true, false, 0
		},
		"an interval removed": func(r *Report) { r.Intervals = append(r.Intervals[:3], r.Intervals[4:]...) },
		"a time moved":        func(r *Report) { r.Intervals[0].To = r.Intervals[0].To.Add(time.Minute) },
		"a witness added":     func(r *Report) { r.Intervals[2].Witnesses = append(r.Intervals[2].Witnesses, "hostagent") },
		"the period changed":  func(r *Report) { r.From = at(90) },
	}
	for name, edit := range edits {
		t.Run(name, func(t *testing.T) {
			r, _ := ReadJSON(bytes.NewReader(buf.Bytes()))
			edit(&r)
			var m *Mismatch
			if err := Verify(context.Background(), l, r); !errors.As(err, &m) {
				t.Fatalf("Verify = %v, want a mismatch", err)
			}
		})
	}
	// A placement recorded after the report's time does not make it fail.
	later := append(fakeLedger(flows()), place(ledger.WitnessNova, ledger.OpBoot, "hm5", 24*60+5, true))
	later[len(later)-1].RecordedAt = at(25 * 60)
	if err := Verify(context.Background(), later, back); err != nil {
		t.Errorf("a placement recorded after the report: %v", err)
	}
}

func TestQueryBounds(t *testing.T) {
	for name, q := range map[string]Query{
		"backwards":   {Subject: filter.VMSubject(vm), From: at(10), To: at(0)},
		"empty":       {Subject: filter.VMSubject(vm), From: at(0), To: at(0)},
		"absurd span": {Subject: filter.VMSubject(vm), From: at(0), To: at(0).AddDate(20, 0, 0)},
		"no subject":  {From: at(0), To: at(10)},
		"bad subject": {Subject: "vm:nope", From: at(0), To: at(10)},
		"no times":    {Subject: filter.VMSubject(vm)},
		"bound":       {Subject: filter.VMSubject(vm), From: at(0), To: at(10), Bound: 48 * time.Hour},
	} {
		if _, err := q.Normalize(); !errors.Is(err, ledger.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
}

func TestRenderings(t *testing.T) {
	r := Build(query(t), flows(), at(24*60))
	var tb, hb bytes.Buffer
	if err := WriteTable(&tb, r); err != nil {
		t.Fatal(err)
	}
	if err := WriteHTML(&hb, r); err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"de1", "country_not_allowed", NotConfirmed, HostAgentOnly, "1 violations"} {
		if !strings.Contains(tb.String(), w) {
			t.Errorf("table does not say %q:\n%s", w, tb.String())
		}
	}
	for _, w := range []string{`class="violation"`, `class="discrepancy"`, "de1", "<strong>1 violations</strong>"} {
		if !strings.Contains(hb.String(), w) {
			t.Errorf("page does not hold %q", w)
		}
	}
	if strings.Contains(hb.String(), "<script") || strings.Contains(hb.String(), "http") {
		t.Error("the page fetches or runs something")
	}
}

// report10000 is a VM with 10,000 placements (moves every hour, each
// confirmed by the host agent) and the query of its report.
func report10000(b *testing.B) (fakeLedger, Query) {
	var ps []ledger.PlacementRecord
	for i := 0; i < 5000; i++ {
		h := fmt.Sprintf("hm%d", i%50)
		ps = append(ps, place(ledger.WitnessNova, ledger.OpLiveMigration, h, i*60, true),
			place(ledger.WitnessHostAgent, ledger.OpObserved, h, i*60+1, true))
	}
	q, err := Query{Subject: filter.VMSubject(vm), From: at(0), To: at(5000 * 60)}.Normalize()
	if err != nil {
		b.Fatal(err)
	}
	return fakeLedger(ps), q
}

// BenchmarkReport10000 builds the report of a VM with 10,000 placements.
func BenchmarkReport10000(b *testing.B) {
	l, q := report10000(b)
	var r Report
	for b.Loop() {
		r, _ = Read(context.Background(), l, q, at(5001*60))
	}
	if len(r.Intervals) != 5000 || r.Discrepancies != 0 {
		b.Fatalf("%d intervals, %d discrepancies", len(r.Intervals), r.Discrepancies)
	}
}

// BenchmarkVerify10000 verifies it.
func BenchmarkVerify10000(b *testing.B) {
	l, q := report10000(b)
	r, _ := Read(context.Background(), l, q, at(5001*60))
	for b.Loop() {
		if err := Verify(context.Background(), l, r); err != nil {
			b.Fatal(err)
		}
	}
}
