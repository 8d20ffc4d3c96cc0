package chaincode

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/ledgerfence/ledgerfence/pkg/decide"
	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/fabric/wire"
)

func ident(msp, cn string, attrs ...string) fakeIdentity {
	f := fakeIdentity{msp: msp, cn: cn, attrs: map[string]string{}}
	for i := 0; i+1 < len(attrs); i += 2 {
		f.attrs[attrs[i]] = attrs[i+1]
	}
	return f
}

var (
	agentHM1   = ident("Org1MSP", "hm1agent", wire.AttrRole, wire.RoleHostAgent, wire.AttrHost, "hm1")
	agentHM2   = ident("Org1MSP", "hm2agent", wire.AttrRole, wire.RoleHostAgent, wire.AttrHost, "hm2")
	agentBare  = ident("Org1MSP", "bareagent", wire.AttrRole, wire.RoleHostAgent)
	org2HM1    = ident("Org2MSP", "hm1agent", wire.AttrRole, wire.RoleHostAgent, wire.AttrHost, "hm1")
	hostAdmin1 = ident("Org1MSP", "hostadmin", wire.AttrRole, wire.RoleHostAdmin)
	hostAdmin2 = ident("Org2MSP", "hostadmin", wire.AttrRole, wire.RoleHostAdmin)
	alice      = ident("Org1MSP", "alice", wire.AttrRole, wire.RoleVMManager)
	bob        = ident("Org1MSP", "bob", wire.AttrRole, wire.RoleVMManager)
	carol      = ident("Org2MSP", "carol", wire.AttrRole, wire.RoleVMManager)
	policy1    = ident("Org1MSP", "policy", wire.AttrRole, wire.RolePolicyAdmin)
	policy2    = ident("Org2MSP", "policy", wire.AttrRole, wire.RolePolicyAdmin)
	noRole     = ident("Org1MSP", "User1")
)

const vm1 = "vm:0b4e8a4c-6c1e-4a43-9d7e-0a1f2b3c4d5e"

var cc = &Contract{}

func putHost(l *ledgerState, id fakeIdentity, h filter.Host) (wire.PutHostResult, []string, *event, error) {
	var res wire.PutHostResult
	body, _ := json.Marshal(h)
	writes, ev, err := l.tx(id, func(ctx Ctx) error {
		out, err := cc.PutHost(ctx, string(body))
		if err != nil {
			return err
		}
		return json.Unmarshal([]byte(out), &res)
	})
	return res, writes, ev, err
}

func putReg(l *ledgerState, id fakeIdentity, subject, body string) (wire.PutRegulationResult, []string, *event, error) {
	var res wire.PutRegulationResult
	writes, ev, err := l.tx(id, func(ctx Ctx) error {
		out, err := cc.PutRegulation(ctx, subject, body)
		if err != nil {
			return err
		}
		return json.Unmarshal([]byte(out), &res)
	})
	return res, writes, ev, err
}

func read[T any](t *testing.T, l *ledgerState, fn func(ctx Ctx) (string, error)) (T, error) {
	t.Helper()
	var v T
	writes, _, err := l.tx(noRole, func(ctx Ctx) error {
		out, err := fn(ctx)
		if err != nil {
			return err
		}
		return json.Unmarshal([]byte(out), &v)
	})
	if len(writes) > 0 {
		t.Fatalf("a read wrote %v", writes)
	}
	return v, err
}

// wantCode checks that err is a chaincode refusal with the given code whose
// text contains every one of words.
func wantCode(t *testing.T, err error, code string, words ...string) {
	t.Helper()
	if code == "" {
		if err != nil {
			t.Fatalf("want success, got %v", err)
		}
		return
	}
	var we *wire.Error
	if !errors.As(err, &we) {
		t.Fatalf("want a %s refusal, got %v", code, err)
	}
	if we.Code != code {
		t.Fatalf("want code %s, got %s (%s)", code, we.Code, we.Msg)
	}
	for _, w := range words {
		if !strings.Contains(we.Msg, w) {
			t.Errorf("message %q does not name %q", we.Msg, w)
		}
	}
}

func TestPutHostAccess(t *testing.T) {
	hm1 := filter.Host{Name: "hm1", Country: "jp", Organizations: []string{"CompanyA"}}
	hm2 := filter.Host{Name: "hm2", Country: "JP", Organizations: []string{"CompanyA"}}
	tests := []struct {
		name  string
		setup func(l *ledgerState) // earlier writes
		as    fakeIdentity
		host  filter.Host
		code  string
		words []string
	}{
		{name: "agent writes its own host", as: agentHM1, host: hm1},
		{name: "agent writes another host", as: agentHM1, host: hm2, code: wire.CodeForbid, words: []string{"own host", "hm1", "hm2"}},
		{name: "agent without host attribute", as: agentBare, host: hm1, code: wire.CodeForbid, words: []string{"name its host"}},
		{name: "identity without role", as: noRole, host: hm1, code: wire.CodeForbid, words: []string{"role is none"}},
		{name: "vm manager writes a host", as: alice, host: hm1, code: wire.CodeForbid, words: []string{"role is vmmanager"}},
		{name: "host admin writes any host of its MSP", as: hostAdmin1, host: hm2},
		{
			name: "host admin updates a host its MSP registered", as: hostAdmin1, host: filter.Host{Name: "hm1", Country: "GB", Organizations: []string{"CompanyA"}},
			setup: func(l *ledgerState) { putHost(l, agentHM1, hm1) },
		},
		{
			name: "other MSP's agent takes over a host", as: org2HM1, host: filter.Host{Name: "hm1", Country: "DE", Organizations: []string{"Evil"}},
			setup: func(l *ledgerState) { putHost(l, agentHM1, hm1) },
			code:  wire.CodeForbid, words: []string{"Org1MSP", "Org2MSP", "take it over"},
		},
		{
			name: "other MSP's host admin takes over a host", as: hostAdmin2, host: hm1,
			setup: func(l *ledgerState) { putHost(l, agentHM1, hm1) },
			code:  wire.CodeForbid, words: []string{"Org1MSP"},
		},
		{name: "other MSP registers a new host", as: org2HM1, host: hm1},
		{name: "invalid country", as: agentHM1, host: filter.Host{Name: "hm1", Country: "XX", Organizations: []string{"A"}}, code: wire.CodeInvalid, words: []string{"country"}},
		{name: "no organisation", as: agentHM1, host: filter.Host{Name: "hm1", Country: "JP"}, code: wire.CodeInvalid, words: []string{"organizations"}},
		{name: "wildcard organisation", as: agentHM1, host: filter.Host{Name: "hm1", Country: "JP", Organizations: []string{"*"}}, code: wire.CodeInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := newLedgerState()
			if tc.setup != nil {
				tc.setup(l)
			}
			before := len(l.events)
			res, writes, ev, err := putHost(l, tc.as, tc.host)
			wantCode(t, err, tc.code, tc.words...)
			if tc.code != "" {
				if len(l.events) != before {
					t.Errorf("a refused write emitted an event")
				}
				return
			}
			if !res.Changed || len(writes) != 1 || writes[0] != "host/"+tc.host.Name || ev == nil {
				t.Fatalf("changed=%v writes=%v event=%v", res.Changed, writes, ev)
			}
			if res.Record.Writer.MSP != tc.as.msp || !strings.Contains(res.Record.Writer.ID, "CN="+tc.as.cn) || res.Record.Writer.Role != tc.as.attrs[wire.AttrRole] {
				t.Errorf("writer = %+v", res.Record.Writer)
			}
		})
	}
}

func TestPutHostNormalisesAndIsIdempotent(t *testing.T) {
	l := newLedgerState()
	in := filter.Host{Name: "hm1", Country: "jp", Organizations: []string{"CompanyB", "CompanyA", "CompanyB"}, Region: "r1"}
	first, _, ev, err := putHost(l, agentHM1, in)
	must(t, err)
	want := filter.Host{Name: "hm1", Country: "JP", Organizations: []string{"CompanyA", "CompanyB"}, Region: "r1"}
	if !first.Record.Host.Equal(want) || first.Record.TxID != "tx001" || first.Record.UpdatedAt.IsZero() {
		t.Fatalf("stored %+v", first.Record)
	}
	if ev.name != "host.put" {
		t.Errorf("event name %q", ev.name)
	}
	var got ledger.Event
	must(t, json.Unmarshal(ev.payload, &got))
	if got.Kind != ledger.KindHost || got.Key != "hm1" || got.Op != ledger.OpPut || got.TxID != "tx001" || got.Host == nil || !got.Host.Host.Equal(want) || got.Writer != first.Record.Writer {
		t.Errorf("event %+v", got)
	}

	// The same facts in another order: nothing written, no event, the stored record back.
	again, writes, ev, err := putHost(l, agentHM1, filter.Host{Name: "hm1", Country: "JP", Organizations: []string{"CompanyA", "CompanyB"}, Region: "r1"})
	must(t, err)
	if again.Changed || len(writes) != 0 || ev != nil || again.Record.TxID != "tx001" {
		t.Fatalf("unchanged write: changed=%v writes=%v event=%v record=%+v", again.Changed, writes, ev, again.Record)
	}
	// An unchanged write by someone not allowed to write is still refused.
	_, _, _, err = putHost(l, agentHM2, want)
	wantCode(t, err, wire.CodeForbid)
}

func TestPutHostRejectsMalformedJSON(t *testing.T) {
	l := newLedgerState()
	for _, body := range []string{
		`{"host": 1`,
		`{"host": "hm1", "country": "JP", "organizations": ["A"], "owner": "me"}`,
		`{"host": "hm1", "country": "JP", "organizations": ["A"]} {}`,
		`["hm1"]`,
		`{"host": "hm1", "country": "JP", "organizations": ["` + strings.Repeat("A", maxHostBytes) + `"]}`,
	} {
		_, _, err := l.tx(agentHM1, func(ctx Ctx) error { _, err := cc.PutHost(ctx, body); return err })
		wantCode(t, err, wire.CodeInvalid, "host")
	}
}

func TestRegulationAccess(t *testing.T) {
	const jp = `{"allow": ["JP.CompanyA"]}`
	const gb = `{"allow": ["GB.CompanyA"]}`
	tests := []struct {
		name    string
		creator fakeIdentity // writes jp first; zero: no regulation yet
		as      fakeIdentity
		code    string
		words   []string
		owner   fakeIdentity // expected owner afterwards
	}{
		{name: "vm manager creates and owns", as: alice, owner: alice},
		{name: "policy admin creates and owns", as: policy2, owner: policy2},
		{name: "identity without role creates", as: noRole, code: wire.CodeForbid, words: []string{"role is none"}},
		{name: "host agent creates", as: agentHM1, code: wire.CodeForbid, words: []string{"vmmanager"}},
		{name: "owner changes", creator: alice, as: alice, owner: alice},
		{name: "second vm manager changes", creator: alice, as: bob, code: wire.CodeForbid, words: []string{"only the owner", "CN=alice", vm1}},
		{name: "other MSP's vm manager changes", creator: alice, as: carol, code: wire.CodeForbid},
		{name: "policy admin of owner's MSP changes", creator: alice, as: policy1, owner: alice},
		{name: "policy admin of another MSP changes", creator: alice, as: policy2, code: wire.CodeForbid, words: []string{"policyadmin of Org1MSP"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := newLedgerState()
			if tc.creator.msp != "" {
				_, _, _, err := putReg(l, tc.creator, vm1, jp)
				must(t, err)
			}
			res, _, _, err := putReg(l, tc.as, vm1, gb)
			wantCode(t, err, tc.code, tc.words...)
			if tc.code != "" {
				return
			}
			if !res.Changed || !strings.HasPrefix(res.Record.Owner, tc.owner.msp+"/x509::CN="+tc.owner.cn+",") {
				t.Errorf("record %+v", res.Record)
			}
			if res.Record.Writer.MSP != tc.as.msp || res.Record.Writer.Role != tc.as.attrs[wire.AttrRole] {
				t.Errorf("writer %+v", res.Record.Writer)
			}
		})
	}
}

func TestRegulationForms(t *testing.T) {
	want := []filter.Rule{{Country: "GB", Organization: "CompanyA"}, {Country: "GB", Organization: "CompanyB"}, {Country: "JP", Organization: "CompanyA"}, {Country: "JP", Organization: "CompanyB"}}
	forms := map[string]string{
		"allow objects": `{"allow": [{"country": "jp", "organization": "CompanyA"}, {"country": "JP", "organization": "CompanyB"}, {"country": "GB", "organization": "CompanyA"}, {"country": "GB", "organization": "CompanyB"}]}`,
		"lists":         `{"countries": ["JP", "GB"], "organizations": ["CompanyA", "CompanyB"]}`,
		"seed ids":      `{"allow": ["JP.CompanyA", "JP.CompanyB", "GB.CompanyA", "GB.CompanyB"]}`,
	}
	for name, body := range forms {
		t.Run(name, func(t *testing.T) {
			l := newLedgerState()
			res, _, _, err := putReg(l, alice, "vm:"+strings.ToUpper(vm1[3:]), body)
			must(t, err)
			if !reflect.DeepEqual(res.Record.Allow, want) || string(res.Record.Subject) != vm1 || res.Record.Version != 1 {
				t.Errorf("stored %+v", res.Record)
			}
		})
	}
	l := newLedgerState()
	for _, bad := range []struct{ subject, body, word string }{
		{vm1, `{"allow": ["XX.CompanyA"]}`, "country"},
		{vm1, `{"allow": []}`, "at least one rule"},
		{vm1, `{"allow": ["JP.CompanyA"], "extra": 1}`, "known form"},
		{"vm:not-a-uuid", `{"allow": ["JP.CompanyA"]}`, "UUID"},
		{"tenant:x", `{"allow": ["JP.CompanyA"]}`, "unknown kind"},
	} {
		_, _, _, err := putReg(l, alice, bad.subject, bad.body)
		wantCode(t, err, wire.CodeInvalid, bad.word)
	}
}

func TestRegulationLifecycle(t *testing.T) {
	l := newLedgerState()
	const project = "project:p-42"
	bind(t, l, policy1, "p-42") // tx001: a project's regulation needs the project bound first
	r1, _, ev, err := putReg(l, alice, project, `{"allow": ["JP.All"]}`)
	must(t, err)
	if r1.Record.Version != 1 || ev.name != "regulation.put" {
		t.Fatalf("first put %+v %v", r1.Record, ev)
	}
	same, writes, ev, err := putReg(l, alice, project, `{"countries": ["JP"], "organizations": ["*"]}`)
	must(t, err)
	if same.Changed || len(writes) != 0 || ev != nil {
		t.Fatalf("unchanged regulation written: %+v %v %v", same, writes, ev)
	}
	r2, _, _, err := putReg(l, policy1, project, `{"allow": ["JP.CompanyA"]}`)
	must(t, err)
	if r2.Record.Version != 2 || r2.Record.Owner != r1.Record.Owner {
		t.Fatalf("second put %+v", r2.Record)
	}

	del := func(id fakeIdentity) (*event, error) {
		_, ev, err := l.tx(id, func(ctx Ctx) error { return cc.DeleteRegulation(ctx, project) })
		return ev, err
	}
	_, err = del(bob)
	wantCode(t, err, wire.CodeForbid, "only the owner")
	ev, err = del(alice)
	must(t, err)
	var got ledger.Event
	must(t, json.Unmarshal(ev.payload, &got))
	if ev.name != "regulation.delete" || got.Op != ledger.OpDelete || got.Key != project || got.Regulation != nil || got.Writer.MSP != "Org1MSP" {
		t.Errorf("delete event %s %+v", ev.name, got)
	}
	_, err = read[ledger.RegulationRecord](t, l, func(ctx Ctx) (string, error) { return cc.GetRegulation(ctx, project) })
	wantCode(t, err, wire.CodeNotFound)
	_, err = del(alice)
	wantCode(t, err, wire.CodeNotFound)

	// A new regulation after the delete: a new owner, the version count goes on.
	r3, _, _, err := putReg(l, bob, project, `{"allow": ["GB.CompanyA"]}`)
	must(t, err)
	if r3.Record.Version != 4 || !strings.Contains(r3.Record.Owner, "CN=bob") {
		t.Fatalf("put after delete %+v", r3.Record)
	}

	hist, err := read[[]ledger.Change](t, l, func(ctx Ctx) (string, error) { return cc.History(ctx, "regulation", project) })
	must(t, err)
	var ops []string
	for _, c := range hist {
		who := c.Writer.ID[strings.Index(c.Writer.ID, "CN=")+3 : strings.Index(c.Writer.ID, ",")]
		ops = append(ops, string(c.Op)+":"+who+":"+c.TxID)
		if c.Time.IsZero() {
			t.Errorf("change %s has no time", c.TxID)
		}
	}
	wantOps := []string{"put:alice:tx002", "put:policy:tx004", "delete:alice:tx006", "put:bob:tx009"}
	if !reflect.DeepEqual(ops, wantOps) {
		t.Errorf("history %v, want %v", ops, wantOps)
	}
	if hist[1].Regulation == nil || hist[1].Regulation.Allow[0] != (filter.Rule{Country: "JP", Organization: "CompanyA"}) || hist[2].Regulation != nil {
		t.Errorf("history values %+v", hist)
	}
}

func TestHostHistory(t *testing.T) {
	l := newLedgerState()
	_, _, _, err := putHost(l, agentHM1, filter.Host{Name: "hm1", Country: "JP", Organizations: []string{"A"}})
	must(t, err)
	_, _, _, err = putHost(l, hostAdmin1, filter.Host{Name: "hm1", Country: "GB", Organizations: []string{"A"}})
	must(t, err)
	hist, err := read[[]ledger.Change](t, l, func(ctx Ctx) (string, error) { return cc.History(ctx, "host", "hm1") })
	must(t, err)
	if len(hist) != 2 || hist[0].Host.Country != "JP" || hist[1].Host.Country != "GB" || !strings.Contains(hist[1].Writer.ID, "CN=hostadmin") {
		t.Fatalf("history %+v", hist)
	}
	_, err = read[[]ledger.Change](t, l, func(ctx Ctx) (string, error) { return cc.History(ctx, "host", "nope") })
	wantCode(t, err, wire.CodeNotFound)
	_, err = read[[]ledger.Change](t, l, func(ctx Ctx) (string, error) { return cc.History(ctx, "vm", "x") })
	wantCode(t, err, wire.CodeInvalid, "kind")
}

func seedHosts(t *testing.T, l *ledgerState, hosts ...filter.Host) {
	t.Helper()
	for _, h := range hosts {
		_, _, _, err := putHost(l, hostAdmin1, h)
		must(t, err)
	}
}

func TestReads(t *testing.T) {
	l := newLedgerState()
	seedHosts(t, l,
		filter.Host{Name: "c", Country: "JP", Organizations: []string{"A"}},
		filter.Host{Name: "a", Country: "JP", Organizations: []string{"A"}},
		filter.Host{Name: "b", Country: "GB", Organizations: []string{"B"}},
		filter.Host{Name: "d", Country: "DE", Organizations: []string{"B"}},
	)
	_, _, _, err := putReg(l, alice, vm1, `{"allow": ["JP.A"]}`)
	must(t, err)

	var names []string
	after := ""
	for pages := 0; ; pages++ {
		p, err := read[ledger.HostPage](t, l, func(ctx Ctx) (string, error) { return cc.ListHosts(ctx, after, 3) })
		must(t, err)
		for _, h := range p.Hosts {
			names = append(names, h.Name)
		}
		if p.Next == "" {
			if pages != 1 {
				t.Errorf("%d pages, want 2", pages+1)
			}
			break
		}
		after = p.Next
	}
	if !reflect.DeepEqual(names, []string{"a", "b", "c", "d"}) {
		t.Errorf("listed %v", names)
	}
	_, err = read[ledger.HostPage](t, l, func(ctx Ctx) (string, error) { return cc.ListHosts(ctx, "", wire.MaxPage+1) })
	wantCode(t, err, wire.CodeInvalid, "limit")

	got, err := read[map[string]ledger.HostRecord](t, l, func(ctx Ctx) (string, error) { return cc.GetHosts(ctx, `["a","zz","d"]`) })
	must(t, err)
	if len(got) != 2 || got["a"].Country != "JP" || got["d"].Country != "DE" {
		t.Errorf("GetHosts %+v", got)
	}
	_, err = read[ledger.HostRecord](t, l, func(ctx Ctx) (string, error) { return cc.GetHost(ctx, "zz") })
	wantCode(t, err, wire.CodeNotFound, "zz")

	lk, err := read[wire.LookupResult](t, l, func(ctx Ctx) (string, error) {
		return cc.Lookup(ctx, `["vm:`+strings.ToUpper(vm1[3:])+`","project:none"]`, `["a","zz"]`)
	})
	must(t, err)
	if len(lk.Regulations) != 1 || lk.Regulations[filter.Subject(vm1)].Version != 1 || len(lk.Hosts) != 1 {
		t.Errorf("Lookup %+v", lk)
	}
	_, err = read[wire.LookupResult](t, l, func(ctx Ctx) (string, error) { return cc.Lookup(ctx, `["bad"]`, `[]`) })
	wantCode(t, err, wire.CodeInvalid, "subject")
	_, err = read[wire.LookupResult](t, l, func(ctx Ctx) (string, error) { return cc.Lookup(ctx, `{}`, `[]`) })
	wantCode(t, err, wire.CodeInvalid, "JSON list")
}

// TestCheckSeedTable4 is the seed paper's Table 4 decided by the chaincode.
func TestCheckSeedTable4(t *testing.T) {
	l := newLedgerState()
	seedHosts(t, l,
		filter.Host{Name: "jp-a", Country: "JP", Organizations: []string{"CompanyA"}},
		filter.Host{Name: "gb-ab", Country: "GB", Organizations: []string{"CompanyA", "CompanyB"}},
		filter.Host{Name: "de-a", Country: "DE", Organizations: []string{"CompanyA"}},
		filter.Host{Name: "jp-c", Country: "JP", Organizations: []string{"CompanyC"}},
		filter.Host{Name: "jp-ac", Country: "JP", Organizations: []string{"CompanyA", "CompanyC"}},
	)
	_, _, _, err := putReg(l, alice, vm1, `{"countries": ["JP", "GB"], "organizations": ["CompanyA", "CompanyB"]}`)
	must(t, err)
	bind(t, l, policy1, "p1")
	_, _, _, err = putReg(l, policy1, "project:p1", `{"allow": ["*.CompanyA", "*.CompanyB", "*.CompanyC"]}`)
	must(t, err)

	tests := []struct {
		name, vm, project, hosts string
		deny                     bool
		want                     map[string]filter.Reason
		regulated                bool
	}{
		{
			name: "VM1 over named hosts", vm: vm1[3:], hosts: `["jp-a","gb-ab","de-a","jp-c","jp-ac","ghost"]`, regulated: true,
			want: map[string]filter.Reason{"jp-a": "", "gb-ab": "", "de-a": filter.CountryNotAllowed, "jp-c": filter.OrganizationNotAllowed, "jp-ac": filter.OrganizationNotAllowed, "ghost": filter.HostUnregistered},
		},
		{
			name: "VM1 and its project over every host", vm: vm1[3:], project: "p1", regulated: true,
			want: map[string]filter.Reason{"jp-a": "", "gb-ab": "", "de-a": filter.CountryNotAllowed, "jp-c": filter.OrganizationNotAllowed, "jp-ac": filter.OrganizationNotAllowed},
		},
		{
			name: "unregulated VM", vm: "11111111-2222-3333-4444-555555555555", hosts: `["jp-a","de-a"]`,
			want: map[string]filter.Reason{"jp-a": "", "de-a": ""},
		},
		{
			name: "unregulated VM denied", vm: "11111111-2222-3333-4444-555555555555", hosts: `["jp-a"]`, deny: true,
			want: map[string]filter.Reason{"jp-a": filter.VMUnregulated},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := read[decide.Report](t, l, func(ctx Ctx) (string, error) { return cc.Check(ctx, tc.vm, tc.project, tc.hosts, tc.deny) })
			must(t, err)
			got := map[string]filter.Reason{}
			allowed := 0
			for _, v := range res.Verdicts {
				got[v.Host] = v.Reason
				if v.Allowed {
					allowed++
				}
			}
			if !reflect.DeepEqual(got, tc.want) || res.Regulated != tc.regulated || len(res.Allowed) != allowed {
				t.Errorf("verdicts %v (regulated %v, allowed %v), want %v", got, res.Regulated, res.Allowed, tc.want)
			}
		})
	}
	_, err = read[decide.Report](t, l, func(ctx Ctx) (string, error) { return cc.Check(ctx, "nope", "", "", false) })
	wantCode(t, err, wire.CodeInvalid, "UUID")
}

func TestNewChaincode(t *testing.T) {
	c, err := New()
	must(t, err)
	if c == nil {
		t.Fatal("no chaincode")
	}
}

func TestWireErrorRoundTrip(t *testing.T) {
	err := refuse(wire.CodeForbid, "a host agent may write only its own host")
	msg := "chaincode response 500, " + err.Error()
	we, ok := wire.ParseError(msg)
	if !ok || we.Code != wire.CodeForbid || !errors.Is(we.Kind(), ledger.ErrForbidden) || we.Msg != "a host agent may write only its own host" {
		t.Fatalf("parsed %+v %v", we, ok)
	}
	if _, ok := wire.ParseError("chaincode response 500, Function Nope not found"); ok {
		t.Error("parsed a foreign message")
	}
}

// TestGetHostsLargeBatch reads a batch large enough for one range scan: only
// the hosts asked for come back, wherever they sit in the range.
func TestGetHostsLargeBatch(t *testing.T) {
	l := newLedgerState()
	for i := range 60 {
		seedHosts(t, l, filter.Host{Name: fmt.Sprintf("h%02d", i), Country: "JP", Organizations: []string{"A"}})
	}
	var ask []string
	want := map[string]bool{}
	for i := 5; i < 55; i++ {
		if i%3 == 0 {
			continue // hosts in the span that were not asked for
		}
		ask = append(ask, fmt.Sprintf("h%02d", i))
		want[fmt.Sprintf("h%02d", i)] = true
	}
	ask = append(ask, "h20x", "h99", "bad name") // unknown, outside the span, invalid
	if len(ask) < scanFrom {
		t.Fatalf("batch of %d does not reach the scan", len(ask))
	}
	body, _ := json.Marshal(ask)
	got, err := read[map[string]ledger.HostRecord](t, l, func(ctx Ctx) (string, error) { return cc.GetHosts(ctx, string(body)) })
	must(t, err)
	if len(got) != len(want) {
		t.Errorf("%d hosts, want %d", len(got), len(want))
	}
	for n := range want {
		if got[n].Name != n {
			t.Errorf("host %s missing", n)
		}
	}
}
