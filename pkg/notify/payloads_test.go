package notify_test

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
	"github.com/ledgerfence/ledgerfence/pkg/notify"
)

const vm1 = "0b3e1c52-7a4e-4b8e-9f3a-3d2c1b0a9e8f"

// table4 is the seed paper's Table 4 decided by pkg/filter: VM1 may go to JP
// and GB for CompanyA and CompanyB.
func table4(t testing.TB) filter.Result {
	t.Helper()
	terms, err := filter.ParseTerms([]byte(`{"countries":["JP","GB"],"organizations":["CompanyA","CompanyB"]}`))
	rules := terms.Allow
	if err != nil {
		t.Fatal(err)
	}
	hosts := []filter.Host{
		{Name: "hm1", Country: "JP", Organizations: []string{"CompanyA", "CompanyB"}},
		{Name: "hm3", Country: "DE", Organizations: []string{"CompanyA"}},
		{Name: "hm4", Country: "GB", Organizations: []string{"CompanyC"}},
	}
	cands := []filter.Candidate{{Name: "hm1", Host: &hosts[0]}, {Name: "hm3", Host: &hosts[1]}, {Name: "hm4", Host: &hosts[2]}, {Name: "hm6"}}
	return filter.Evaluate([]filter.Regulation{{Subject: filter.VMSubject(vm1), Allow: rules}}, cands, filter.Options{})
}

func decision(id string) notify.Decision {
	return notify.Decision{
		ID: id, RequestID: "req-1", Instance: vm1, Project: "p1", Operation: "live_migrate",
		LedgerHeight: 42, Time: time.Date(2026, 11, 25, 20, 41, 5, 0, time.UTC),
	}
}

func TestNewDecisionDenied(t *testing.T) {
	res := table4(t)
	ev, ok := notify.NewDecisionDenied(decision("d1"), &res)
	if !ok {
		t.Fatal("ok = false for a decision that denied hosts")
	}
	want := []notify.DeniedHost{
		{Host: "hm3", Reason: filter.CountryNotAllowed, Detail: "country DE is not allowed by vm:" + vm1, Regulation: filter.VMSubject(vm1)},
		{Host: "hm4", Reason: filter.OrganizationNotAllowed, Detail: "organization CompanyC in GB is not allowed by vm:" + vm1, Regulation: filter.VMSubject(vm1)},
		{Host: "hm6", Reason: filter.HostUnregistered, Detail: "host has no record in the ledger"},
	}
	if len(ev.Denied) != len(want) {
		t.Fatalf("denied = %+v, want %+v", ev.Denied, want)
	}
	for i := range want {
		if ev.Denied[i] != want[i] {
			t.Errorf("denied[%d] = %+v, want %+v", i, ev.Denied[i], want[i])
		}
	}
	if ev.V != notify.Version || ev.DecisionID != "d1" || ev.RequestID != "req-1" || ev.Instance != vm1 ||
		ev.Project != "p1" || ev.Operation != "live_migrate" || ev.LedgerHeight != 42 ||
		ev.Candidates != 4 || ev.Allowed != 1 {
		t.Errorf("event = %+v", ev)
	}
	if ev.Subject() != notify.SubjectDecisionDenied || ev.MsgID() != "decision:d1" {
		t.Errorf("subject %q msg id %q", ev.Subject(), ev.MsgID())
	}

	allowed := filter.Evaluate(nil, []filter.Candidate{{Name: "hm1"}}, filter.Options{})
	if _, ok := notify.NewDecisionDenied(decision("d2"), &allowed); ok {
		t.Error("ok = true for a decision that denied no host")
	}
}

func TestNewLedgerChanged(t *testing.T) {
	at := time.Date(2026, 11, 25, 21, 0, 0, 0, time.FixedZone("JST", 9*3600))
	tests := []struct {
		name  string
		in    ledger.Event
		msgID string
	}{
		{
			name: "host put",
			in: ledger.Event{Kind: ledger.KindHost, Key: "hm1", Op: ledger.OpPut, TxID: "tx1", Block: 7,
				Writer: ledger.Writer{MSP: "Org1MSP", ID: "hostagent-hm1"}, Time: at,
				Host: &ledger.HostRecord{Host: filter.Host{Name: "hm1", Country: "JP", Organizations: []string{"CompanyA"}}, TxID: "tx1"}},
			msgID: "ledger:tx1:host:hm1",
		},
		{
			name:  "regulation delete",
			in:    ledger.Event{Kind: ledger.KindRegulation, Key: "vm:" + vm1, Op: ledger.OpDelete, TxID: "tx2", Block: 8, Writer: ledger.Writer{ID: "admin"}, Time: at},
			msgID: "ledger:tx2:regulation:vm:" + vm1,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := notify.NewLedgerChanged(tc.in)
			if c.V != notify.Version || c.Kind != tc.in.Kind || c.Key != tc.in.Key || c.Op != tc.in.Op ||
				c.TxID != tc.in.TxID || c.Block != tc.in.Block || c.Writer != tc.in.Writer || !c.Time.Equal(at) {
				t.Errorf("got %+v from %+v", c, tc.in)
			}
			if c.Time.Location() != time.UTC {
				t.Errorf("time %v is not in UTC", c.Time)
			}
			if (c.Host != nil) != (tc.in.Host != nil) || c.Regulation != nil {
				t.Errorf("value: host %v regulation %v", c.Host, c.Regulation)
			}
			if c.MsgID() != tc.msgID {
				t.Errorf("msg id = %q, want %q", c.MsgID(), tc.msgID)
			}
		})
	}
}

func TestNewViolation(t *testing.T) {
	res := table4(t)
	v := notify.NewViolation(vm1, "p1", res.Verdicts[1], time.Now())
	if v.Host != "hm3" || v.Reason != filter.CountryNotAllowed || v.Instance != vm1 || v.Project != "p1" ||
		v.Regulation != filter.VMSubject(vm1) || v.Detail == "" || v.ID == "" {
		t.Errorf("violation = %+v", v)
	}
	if w := notify.NewViolation(vm1, "p1", res.Verdicts[1], time.Now()); w.MsgID() == v.MsgID() {
		t.Errorf("two reports share the msg id %q", v.MsgID())
	}
}

func TestDecode(t *testing.T) {
	res := table4(t)
	ev, _ := notify.NewDecisionDenied(decision("d1"), &res)
	good, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	var fields map[string]any
	if err := json.Unmarshal(good, &fields); err != nil {
		t.Fatal(err)
	}
	if fields["v"] != float64(1) {
		t.Errorf(`"v" = %v in %s`, fields["v"], good)
	}
	tests := []struct {
		name string
		data string
		err  error
	}{
		{"round trip", string(good), nil},
		{"unknown fields ignored", `{"v":1,"decision_id":"d9","new_field":true}`, nil},
		{"later version", `{"v":2,"decision_id":"d9"}`, notify.ErrVersion},
		{"no version", `{"decision_id":"d9"}`, notify.ErrMalformed},
		{"not json", `denied`, notify.ErrMalformed},
		{"wrong type", `{"v":1,"candidates":"many"}`, notify.ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := notify.Decode[notify.DecisionDenied]([]byte(tc.data))
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			if tc.name == "round trip" {
				if got.DecisionID != "d1" || len(got.Denied) != 3 || got.Denied[0].Reason != filter.CountryNotAllowed || !got.Time.Equal(ev.Time) {
					t.Errorf("decoded %+v", got)
				}
			}
		})
	}
}
