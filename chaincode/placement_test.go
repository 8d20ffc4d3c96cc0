package chaincode

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/fabric/wire"
)

var (
	recorder1 = ident("Org1MSP", "recorder", wire.AttrRole, wire.RoleRecorder)
	recorder2 = ident("Org2MSP", "recorder-org2", wire.AttrRole, wire.RoleRecorder)
)

const (
	pvm     = "0b4e8a4c-6c1e-4a43-9d7e-0a1f2b3c4d5e"
	pvm2    = "11111111-2222-3333-4444-555555555555"
	project = "p1"
)

var t0 = time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)

func record(l *ledgerState, id fakeIdentity, p ledger.Placement) (wire.RecordPlacementResult, []string, *event, error) {
	body, _ := json.Marshal(p)
	return call[wire.RecordPlacementResult](l, id, func(ctx Ctx) (string, error) { return cc.RecordPlacement(ctx, string(body)) })
}

func placements(t *testing.T, l *ledgerState, q wire.PlacementQuery) (wire.PlacementPage, error) {
	t.Helper()
	body, _ := json.Marshal(q)
	return read[wire.PlacementPage](t, l, func(ctx Ctx) (string, error) { return cc.Placements(ctx, string(body)) })
}

// nova is Nova's word that the VM went to host at t0 plus minutes.
func nova(vm, host, op string, minutes int, ref string) ledger.Placement {
	return ledger.Placement{VM: vm, Project: project, Host: host, Op: op, At: t0.Add(time.Duration(minutes) * time.Minute),
		Witness: ledger.WitnessNova, Ref: ref, RequestID: "req-" + ref}
}

// seedRegulated registers hm1 (JP, CompanyA), hm2 (JP, CompanyA) and hm3
// (DE, CompanyA), and regulates pvm to JP and CompanyA.
func seedRegulated(t *testing.T, l *ledgerState) {
	t.Helper()
	seedHosts(t, l,
		filter.Host{Name: "hm1", Country: "JP", Organizations: []string{"CompanyA"}},
		filter.Host{Name: "hm2", Country: "JP", Organizations: []string{"CompanyA"}},
		filter.Host{Name: "hm3", Country: "DE", Organizations: []string{"CompanyA"}},
	)
	_, _, _, err := putReg(l, alice, "vm:"+pvm, `{"allow": ["JP.CompanyA"]}`)
	must(t, err)
}

func TestRecordPlacementAccess(t *testing.T) {
	l := newLedgerState()
	seedRegulated(t, l)
	agent := func(p ledger.Placement) ledger.Placement {
		p.Witness, p.Op = ledger.WitnessHostAgent, ledger.OpObserved
		return p
	}
	gone := ledger.Placement{VM: pvm, From: "hm1", Op: ledger.OpGone, At: t0.Add(time.Hour), Witness: ledger.WitnessHostAgent, Ref: "sweep-9"}
	for _, tc := range []struct {
		name  string
		as    fakeIdentity
		p     ledger.Placement
		code  string
		words []string
	}{
		{"a recorder records Nova's word", recorder1, nova(pvm, "hm1", ledger.OpBoot, 0, "m1"), "", nil},
		{"a recorder of another organisation too", recorder2, nova(pvm, "hm3", ledger.OpLiveMigration, 1, "m2"), "", nil},
		{"a recorder does not record the host agent's word", recorder1, agent(nova(pvm, "hm1", "", 2, "s1")), wire.CodeForbid, []string{"recorder", "witness nova"}},
		{"a host agent records what it sees on its own host", agentHM1, agent(nova(pvm, "hm1", "", 3, "s2")), "", nil},
		{"and that the VM is gone from it", agentHM1, gone, "", nil},
		{"a host agent does not record Nova's word", agentHM1, nova(pvm, "hm1", ledger.OpBoot, 4, "m3"), wire.CodeForbid, []string{"witness hostagent"}},
		{"a host agent records nothing of another host", agentHM1, agent(nova(pvm, "hm2", "", 5, "s3")), wire.CodeForbid, []string{"own host", "hm1", "hm2"}},
		{"a host agent whose credential names no host records nothing", agentBare, agent(nova(pvm, "hm1", "", 6, "s4")), wire.CodeForbid, []string{"names none"}},
		{"a vmmanager is refused", alice, nova(pvm, "hm1", ledger.OpBoot, 7, "m4"), wire.CodeForbid, []string{"recorder", "vmmanager"}},
		{"a policy admin is refused", policy1, nova(pvm, "hm1", ledger.OpBoot, 8, "m5"), wire.CodeForbid, []string{"policyadmin"}},
		{"a host admin is refused", hostAdmin1, agent(nova(pvm, "hm1", "", 9, "s5")), wire.CodeForbid, []string{"hostadmin"}},
		{"an identity without a role is refused", noRole, nova(pvm, "hm1", ledger.OpBoot, 10, "m6"), wire.CodeForbid, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, writes, ev, err := record(l, tc.as, tc.p)
			wantCode(t, err, tc.code, tc.words...)
			if tc.code != "" {
				if len(writes) != 0 || ev != nil {
					t.Fatalf("a refused placement wrote %v, event %v", writes, ev)
				}
				return
			}
			if !res.Changed || res.Record.Writer.MSP != tc.as.msp || res.Record.Writer.Role != tc.as.attrs[wire.AttrRole] {
				t.Fatalf("result %+v", res)
			}
			want := []string{placementKey(res.Record.Placement), placementRefKey(res.Record.Placement)}
			if res.Record.Project != "" {
				want = append(want, placementProjectKey(res.Record.Placement))
			}
			if !reflect.DeepEqual(writes, want) {
				t.Fatalf("writes %v, want %v", writes, want)
			}
		})
	}
}

func TestRecorderWritesNothingElse(t *testing.T) {
	l := newLedgerState()
	seedRegulated(t, l)
	_, writes, _, err := putHost(l, recorder1, filter.Host{Name: "hm9", Country: "JP", Organizations: []string{"CompanyA"}})
	wantCode(t, err, wire.CodeForbid, "recorder")
	_, _, _, err2 := putHost(l, recorder1, filter.Host{Name: "hm1", Country: "DE", Organizations: []string{"CompanyA"}})
	wantCode(t, err2, wire.CodeForbid)
	_, writes2, _, err := putReg(l, recorder1, "vm:"+pvm2, `{"allow": ["JP.CompanyA"]}`)
	wantCode(t, err, wire.CodeForbid, "recorder")
	_, _, _, err = putReg(l, recorder1, "vm:"+pvm, `{"allow": ["DE.CompanyA"]}`)
	wantCode(t, err, wire.CodeForbid)
	_, _, err = l.tx(recorder1, func(ctx Ctx) error { return cc.DeleteRegulation(ctx, "vm:"+pvm) })
	wantCode(t, err, wire.CodeForbid)
	_, _, _, err = attest(l, recorder2, "hm1", "JP", "CompanyA")
	wantCode(t, err, wire.CodeForbid)
	_, _, err = l.tx(recorder1, func(ctx Ctx) error { _, err := cc.BindProject(ctx, project); return err })
	wantCode(t, err, wire.CodeForbid)
	if len(writes)+len(writes2) != 0 {
		t.Fatalf("refused writes wrote %v %v", writes, writes2)
	}
}

func TestRecordPlacementIsIdempotent(t *testing.T) {
	l := newLedgerState()
	seedRegulated(t, l)
	p := nova(pvm, "hm1", ledger.OpBoot, 0, "msg-1")
	first, _, ev, err := record(l, recorder1, p)
	must(t, err)
	if ev == nil || ev.name != "placement.put" {
		t.Fatalf("event %+v", ev)
	}
	got := decodeEvent(t, ev)
	if got.Kind != ledger.KindPlacement || got.Key != pvm || got.Op != ledger.OpPut || got.TxID != first.Record.TxID ||
		got.Placement == nil || !reflect.DeepEqual(*got.Placement, first.Record) || got.Writer != first.Record.Writer || !got.Time.Equal(first.Record.RecordedAt) {
		t.Fatalf("event %+v", got)
	}
	if first.Record.RecordedAt.IsZero() || first.Record.RecordedAt.Equal(p.At) {
		t.Errorf("recorded at %v: want the transaction's time", first.Record.RecordedAt)
	}

	// the same message again, by the other replica, even with another time:
	// the stored record back, nothing written, no event
	for _, again := range []ledger.Placement{p, func() ledger.Placement { q := p; q.At = q.At.Add(time.Minute); q.Host = "hm3"; return q }()} {
		res, writes, ev, err := record(l, recorder2, again)
		must(t, err)
		if res.Changed || len(writes) != 0 || ev != nil || !reflect.DeepEqual(res.Record, first.Record) {
			t.Fatalf("recorded again: changed=%v writes=%v event=%v record %+v", res.Changed, writes, ev, res.Record)
		}
	}
	// an identity that may not record it is refused even so
	_, _, _, err = record(l, alice, p)
	wantCode(t, err, wire.CodeForbid)
	// the same ref from the other witness is another placement
	q := p
	q.Witness, q.Op = ledger.WitnessHostAgent, ledger.OpObserved
	res, _, _, err := record(l, agentHM1, q)
	must(t, err)
	if !res.Changed {
		t.Fatal("the host agent's word with Nova's ref was taken for Nova's")
	}
	page, err := placements(t, l, wire.PlacementQuery{VM: pvm})
	must(t, err)
	if len(page.Placements) != 2 {
		t.Fatalf("%d placements, want 2", len(page.Placements))
	}
}

func TestPlacementVerdicts(t *testing.T) {
	l := newLedgerState()
	seedRegulated(t, l)
	boot, _, _, err := record(l, recorder1, nova(pvm, "hm1", ledger.OpBoot, 0, "m1"))
	must(t, err)
	v := boot.Record.Verdict
	if v == nil || !v.Allowed || v.Reason != "" || v.Country != "JP" || !reflect.DeepEqual(v.Organizations, []string{"CompanyA"}) ||
		!reflect.DeepEqual(v.Regulations, []ledger.RegulationVersion{{Subject: filter.Subject("vm:" + pvm), Version: 1}}) {
		t.Fatalf("boot verdict %+v", v)
	}

	// the regulation changes (version 2, still JP only); a forced move to DE
	// is recorded, as a violation, with the version in force
	_, _, _, err = putReg(l, alice, "vm:"+pvm, `{"allow": ["JP.CompanyA", "JP.CompanyB"]}`)
	must(t, err)
	forced, _, ev, err := record(l, recorder1, nova(pvm, "hm3", ledger.OpLiveMigration, 5, "m2"))
	must(t, err)
	v = forced.Record.Verdict
	if v == nil || v.Allowed || v.Reason != filter.CountryNotAllowed || v.Regulation != filter.Subject("vm:"+pvm) || v.Detail == "" || v.Country != "DE" ||
		!reflect.DeepEqual(v.Regulations, []ledger.RegulationVersion{{Subject: filter.Subject("vm:" + pvm), Version: 2}}) {
		t.Fatalf("forced move verdict %+v", v)
	}
	if e := decodeEvent(t, ev); e.Placement.Verdict == nil || e.Placement.Verdict.Allowed {
		t.Errorf("the event's verdict %+v", e.Placement.Verdict)
	}

	// the project's regulation applies too, after the VM's
	bind(t, l, policy1, project)
	_, _, _, err = putReg(l, alice, "project:"+project, `{"allow": ["JP.CompanyB"]}`)
	must(t, err)
	back, _, _, err := record(l, recorder1, nova(pvm, "hm2", ledger.OpColdMigration, 10, "m3"))
	must(t, err)
	v = back.Record.Verdict
	if v == nil || v.Allowed || v.Reason != filter.OrganizationNotAllowed || v.Regulation != filter.Subject("project:"+project) ||
		!reflect.DeepEqual(v.Regulations, []ledger.RegulationVersion{{Subject: filter.Subject("vm:" + pvm), Version: 2}, {Subject: filter.Subject("project:" + project), Version: 1}}) {
		t.Fatalf("verdict under the project's regulation %+v", v)
	}

	// an unregistered host; a VM on no host has no verdict
	unreg, _, _, err := record(l, recorder1, nova(pvm, "hm404", ledger.OpEvacuate, 15, "m4"))
	must(t, err)
	if v := unreg.Record.Verdict; v == nil || v.Allowed || v.Reason != filter.HostUnregistered {
		t.Fatalf("unregistered host's verdict %+v", v)
	}
	del := ledger.Placement{VM: pvm, Project: project, Op: ledger.OpDeleteVM, At: t0.Add(20 * time.Minute), Witness: ledger.WitnessNova, Ref: "m5"}
	gone, _, _, err := record(l, recorder1, del)
	must(t, err)
	if gone.Record.Verdict != nil || gone.Record.Host != "" {
		t.Fatalf("a deleted VM's placement %+v", gone.Record)
	}

	// an unregulated VM passes every registered host, with no regulation
	free, _, _, err := record(l, recorder1, ledger.Placement{VM: pvm2, Host: "hm3", Op: ledger.OpBoot, At: t0, Witness: ledger.WitnessNova, Ref: "m6"})
	must(t, err)
	if v := free.Record.Verdict; v == nil || !v.Allowed || len(v.Regulations) != 0 || v.Country != "DE" {
		t.Fatalf("unregulated VM's verdict %+v", v)
	}
}

func TestPlacementVerdictRequiresAttestation(t *testing.T) {
	l := newLedgerState()
	seedRegulated(t, l)
	_, _, _, err := attest(l, attestor2, "hm2", "JP", "CompanyA")
	must(t, err)
	r := registryOf(map[string][]string{"Org1MSP": {"CompanyA"}, "Org2MSP": {"CompanyB"}})
	r.RequireAttested = true
	inForce(t, l, r)
	a, _, _, err := record(l, recorder1, nova(pvm, "hm1", ledger.OpBoot, 0, "m1"))
	must(t, err)
	if v := a.Record.Verdict; v.Allowed || v.Reason != filter.HostUnattested {
		t.Fatalf("claimed host under a registry requiring attestation: %+v", v)
	}
	b, _, _, err := record(l, recorder1, nova(pvm, "hm2", ledger.OpLiveMigration, 1, "m2"))
	must(t, err)
	if v := b.Record.Verdict; !v.Allowed || !v.Attested {
		t.Fatalf("attested host: %+v", v)
	}
}

func TestRecordPlacementRejectsMalformedInput(t *testing.T) {
	l := newLedgerState()
	good := `{"vm": "` + pvm + `", "host": "hm1", "op": "boot", "at": "2026-03-01T10:00:00Z", "witness": "nova", "ref": "m1"}`
	for _, tc := range []struct{ body, word string }{
		{`{"vm": 1`, "placement"},
		{strings.TrimSuffix(good, "}") + `, "verdict": {"allowed": true}}`, "placement"},
		{strings.TrimSuffix(good, "}") + `, "tx_id": "x"}`, "placement"},
		{good + ` {}`, "placement"},
		{`[` + good + `]`, "placement"},
		{strings.Replace(good, `"m1"`, `"`+strings.Repeat("m", maxPlacementBytes)+`"`, 1), "larger than"},
		{strings.Replace(good, pvm, "not-a-uuid", 1), "vm"},
		{strings.Replace(good, `"boot"`, `"teleport"`, 1), "op"},
		{strings.Replace(good, `"nova"`, `"oracle"`, 1), "witness"},
		{strings.Replace(good, `"host": "hm1", `, "", 1), "needs the host"},
		{strings.Replace(good, `"op": "boot"`, `"op": "delete"`, 1), "no host"},
		{strings.Replace(good, "2026-03-01", "1970-01-01", 1), "at"},
		{strings.Replace(good, `"ref": "m1"`, `"ref": ""`, 1), "ref"},
		{strings.Replace(good, `"ref": "m1"`, `"ref": "a\u0001b"`, 1), "ref"},
		{strings.Replace(good, `"host": "hm1"`, `"host": "hm1/../x"`, 1), "host"},
	} {
		w, _, err := l.tx(recorder1, func(ctx Ctx) error { _, err := cc.RecordPlacement(ctx, tc.body); return err })
		wantCode(t, err, wire.CodeInvalid, tc.word)
		if len(w) != 0 {
			t.Fatalf("%s: wrote %v", tc.body, w)
		}
	}
}

func TestPlacementsQuery(t *testing.T) {
	l := newLedgerState()
	seedRegulated(t, l)
	// VM 1: Nova's word and the host agent's, recorded out of order; VM 2 in
	// the same project; VM 3 (no project) at the same times.
	pvm3 := "22222222-2222-3333-4444-555555555555"
	var all []ledger.Placement
	for _, m := range []int{30, 0, 10, 20} {
		all = append(all, nova(pvm, "hm1", ledger.OpLiveMigration, m, fmt.Sprintf("n%02d", m)))
		a := nova(pvm, "hm1", ledger.OpObserved, m, fmt.Sprintf("a%02d", m))
		a.Witness = ledger.WitnessHostAgent
		all = append(all, a)
		all = append(all, nova(pvm2, "hm2", ledger.OpBoot, m, fmt.Sprintf("n%02d", m)))
		c := nova(pvm3, "hm2", ledger.OpBoot, m, fmt.Sprintf("n%02d", m))
		c.Project = ""
		all = append(all, c)
	}
	for _, p := range all {
		as := recorder1
		if p.Witness == ledger.WitnessHostAgent {
			as = agentHM1
		}
		_, _, _, err := record(l, as, p)
		must(t, err)
	}
	type key struct {
		vm      string
		minutes int
		witness string
	}
	keys := func(page wire.PlacementPage) []key {
		var out []key
		for _, r := range page.Placements {
			out = append(out, key{r.VM[:4], int(r.At.Sub(t0).Minutes()), r.Witness})
		}
		return out
	}
	page, err := placements(t, l, wire.PlacementQuery{VM: strings.ToUpper(pvm)})
	must(t, err)
	want := []key{{"0b4e", 0, "hostagent"}, {"0b4e", 0, "nova"}, {"0b4e", 10, "hostagent"}, {"0b4e", 10, "nova"},
		{"0b4e", 20, "hostagent"}, {"0b4e", 20, "nova"}, {"0b4e", 30, "hostagent"}, {"0b4e", 30, "nova"}}
	if got := keys(page); !reflect.DeepEqual(got, want) || page.Next != "" {
		t.Fatalf("a VM's placements %v (next %q), want %v", got, page.Next, want)
	}
	if r := page.Placements[1]; r.Verdict == nil || !r.Verdict.Allowed || r.TxID == "" || r.Writer.Role != wire.RoleRecorder {
		t.Errorf("record %+v", r)
	}

	// [from, to): from included, to not
	page, err = placements(t, l, wire.PlacementQuery{VM: pvm, From: t0.Add(10 * time.Minute), To: t0.Add(30 * time.Minute)})
	must(t, err)
	if got := keys(page); !reflect.DeepEqual(got, want[2:6]) {
		t.Fatalf("a VM's placements in [10, 30): %v", got)
	}
	page, err = placements(t, l, wire.PlacementQuery{VM: pvm, From: t0.Add(20 * time.Minute), To: t0.Add(20 * time.Minute)})
	must(t, err)
	if len(page.Placements) != 0 {
		t.Fatalf("an empty period: %v", keys(page))
	}

	// pages of 3: every placement once, in order
	var paged []key
	q := wire.PlacementQuery{VM: pvm, Limit: 3}
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatal("paging does not end")
		}
		page, err = placements(t, l, q)
		must(t, err)
		paged = append(paged, keys(page)...)
		if page.Next == "" {
			break
		}
		q.After = page.Next
	}
	if !reflect.DeepEqual(paged, want) {
		t.Fatalf("paged %v", paged)
	}

	// a project's: by VM, then At; VM 3, of no project, is not in it
	page, err = placements(t, l, wire.PlacementQuery{Project: project, From: t0.Add(10 * time.Minute), To: t0.Add(30 * time.Minute)})
	must(t, err)
	wantP := append(append([]key{}, want[2:6]...), key{"1111", 10, "nova"}, key{"1111", 20, "nova"})
	if got := keys(page); !reflect.DeepEqual(got, wantP) {
		t.Fatalf("a project's placements in [10, 30): %v", got)
	}
	paged = nil
	q = wire.PlacementQuery{Project: project, From: t0.Add(10 * time.Minute), To: t0.Add(30 * time.Minute), Limit: 2}
	for pages := 0; ; pages++ {
		if pages > 10 {
			t.Fatal("paging does not end")
		}
		page, err = placements(t, l, q)
		must(t, err)
		paged = append(paged, keys(page)...)
		if page.Next == "" {
			break
		}
		q.After = page.Next
	}
	if !reflect.DeepEqual(paged, wantP) {
		t.Fatalf("a project's placements paged %v", paged)
	}
	page, err = placements(t, l, wire.PlacementQuery{VM: "33333333-2222-3333-4444-555555555555"})
	must(t, err)
	if len(page.Placements) != 0 || page.Placements == nil {
		t.Fatalf("a VM with no placement: %+v", page)
	}

	for _, tc := range []struct{ q, word string }{
		{`{}`, "a VM or a project"},
		{`{"vm": "` + pvm + `", "project": "p1"}`, "not both"},
		{`{"vm": "nope"}`, "vm"},
		{`{"project": "p/1"}`, "project"},
		{`{"vm": "` + pvm + `", "from": "2026-03-02T00:00:00Z", "to": "2026-03-01T00:00:00Z"}`, "after to"},
		{`{"vm": "` + pvm + `", "to": "1970-03-01T00:00:00Z"}`, "years"},
		{`{"vm": "` + pvm + `", "limit": 2001}`, "limit"},
		{`{"vm": "` + pvm + `", "limit": -1}`, "limit"},
		{`{"vm": "` + pvm + `", "after": "host/hm1"}`, "after"},
		{`{"vm": "` + pvm + `", "from": "2026-03-01T10:20:00Z", "after": "placement/` + pvm + `/2026-03-01T10:00:00.000000000Z/nova/n00"}`, "after"},
		{`{"project": "p1", "after": "placement/` + pvm + `/2026-03-01T10:00:00.000000000Z/nova/n00"}`, "after"},
		{`{"vm": "` + pvm + `", "order": "desc"}`, "placement query"},
		{`{"vm": "` + pvm + `"} {}`, "placement query"},
		{`{"vm": "` + pvm + `", "after": "` + strings.Repeat("x", maxPlacementQueryBytes) + `"}`, "larger than"},
	} {
		_, err := read[wire.PlacementPage](t, l, func(ctx Ctx) (string, error) { return cc.Placements(ctx, tc.q) })
		wantCode(t, err, wire.CodeInvalid, tc.word)
	}
}

func TestPlacementKeysOrder(t *testing.T) {
	// At's key form sorts as time does, nanoseconds included
	times := []time.Time{
		time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC),
		time.Date(2026, 3, 1, 10, 0, 0, 1, time.UTC),
		time.Date(2026, 3, 1, 10, 0, 0, 999_999_999, time.UTC),
		time.Date(2026, 3, 1, 11, 0, 1, 0, time.FixedZone("x", 3600)),
		time.Date(9999, 12, 31, 23, 59, 59, 999_999_999, time.UTC),
	}
	for i := 1; i < len(times); i++ {
		a, b := keyTime(times[i-1]), keyTime(times[i])
		if len(a) != len(placementTime) || !(a < b) {
			t.Fatalf("%s !< %s", a, b)
		}
	}
}

func TestPlacementPageEncoding(t *testing.T) {
	recs := []json.RawMessage{json.RawMessage(`{"vm":"a","ref":"x\"y"}`), json.RawMessage(`{"vm":"b"}`)}
	for _, p := range []placementPage{
		{Placements: []json.RawMessage{}},
		{Placements: recs[:1]},
		{Placements: recs, Next: "placement/a/\"b\"/<c>&\u2028"},
	} {
		got, err := p.encode()
		must(t, err)
		want, err := json.Marshal(p)
		must(t, err)
		if got != string(want) {
			t.Fatalf("encoded\n%s\nwant\n%s", got, want)
		}
		var back wire.PlacementPage
		must(t, json.Unmarshal([]byte(got), &back))
		if back.Next != p.Next || len(back.Placements) != len(p.Placements) {
			t.Fatalf("decoded %+v", back)
		}
	}
}
