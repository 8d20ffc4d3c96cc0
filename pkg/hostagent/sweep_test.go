package hostagent

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ledgerfence/ledgerfence/pkg/cloud"
	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
)

const (
	vm1 = "11111111-1111-4111-8111-111111111111"
	vm2 = "22222222-2222-4222-8222-222222222222"
	vm3 = "33333333-3333-4333-8333-333333333333"
	vm4 = "44444444-4444-4444-8444-444444444444"
)

func TestSweep(t *testing.T) {
	type hostFacts struct {
		country string
		orgs    []string
	}
	tests := []struct {
		name    string
		host    *hostFacts // nil: unregistered
		regs    map[string]string
		servers []cloud.Server
		opts    filter.Options
		want    map[string]filter.Reason // instance -> reason
	}{
		{
			name:    "seed Table 4: DE host denied by country",
			host:    &hostFacts{"DE", []string{"CompanyA"}},
			regs:    map[string]string{"vm:" + vm1: `{"countries":["JP","GB"],"organizations":["CompanyA","CompanyB"]}`},
			servers: []cloud.Server{{ID: vm1, ProjectID: "p1"}, {ID: vm2, ProjectID: "p1"}},
			want:    map[string]filter.Reason{vm1: filter.CountryNotAllowed},
		},
		{
			name:    "organisation not allowed",
			host:    &hostFacts{"JP", []string{"CompanyA", "CompanyC"}},
			regs:    map[string]string{"vm:" + vm1: `{"allow":["JP.CompanyA","GB.CompanyB"]}`},
			servers: []cloud.Server{{ID: vm1, ProjectID: "p1"}},
			want:    map[string]filter.Reason{vm1: filter.OrganizationNotAllowed},
		},
		{
			name:    "compliant host, no violation",
			host:    &hostFacts{"GB", []string{"CompanyB"}},
			regs:    map[string]string{"vm:" + vm1: `{"allow":["JP.CompanyA","GB.CompanyB"]}`},
			servers: []cloud.Server{{ID: vm1, ProjectID: "p1"}},
			want:    map[string]filter.Reason{},
		},
		{
			name:    "project regulation applies to every VM of the project",
			host:    &hostFacts{"US", []string{"CompanyA"}},
			regs:    map[string]string{"project:p1": `{"allow":["JP.All"]}`},
			servers: []cloud.Server{{ID: vm1, ProjectID: "p1"}, {ID: vm2, ProjectID: "p1"}, {ID: vm3, ProjectID: "p2"}},
			want:    map[string]filter.Reason{vm1: filter.CountryNotAllowed, vm2: filter.CountryNotAllowed},
		},
		{
			name:    "project and VM regulations intersect",
			host:    &hostFacts{"JP", []string{"CompanyB"}},
			regs:    map[string]string{"project:p1": `{"allow":["JP.All"]}`, "vm:" + vm1: `{"allow":["JP.CompanyA"]}`},
			servers: []cloud.Server{{ID: vm1, ProjectID: "p1"}, {ID: vm2, ProjectID: "p1"}},
			want:    map[string]filter.Reason{vm1: filter.OrganizationNotAllowed},
		},
		{
			name:    "unregistered host breaks every regulated VM",
			regs:    map[string]string{"vm:" + vm1: `{"allow":["JP.CompanyA"]}`},
			servers: []cloud.Server{{ID: vm1, ProjectID: "p1"}, {ID: vm2, ProjectID: "p1"}},
			want:    map[string]filter.Reason{vm1: filter.HostUnregistered},
		},
		{
			name:    "deny unregulated",
			host:    &hostFacts{"JP", []string{"CompanyA"}},
			servers: []cloud.Server{{ID: vm4, ProjectID: "p9"}},
			opts:    filter.Options{DenyUnregulated: true},
			want:    map[string]filter.Reason{vm4: filter.VMUnregulated},
		},
		{
			name:    "no servers",
			host:    &hostFacts{"JP", []string{"CompanyA"}},
			servers: nil,
			want:    map[string]filter.Reason{},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := newFakeLedger()
			if tc.host != nil {
				if _, _, err := l.PutHost(context.Background(), filter.Host{Name: "cmp", Country: tc.host.country, Organizations: tc.host.orgs}); err != nil {
					t.Fatal(err)
				}
			}
			for s, body := range tc.regs {
				l.putRegulation(t, s, body)
			}
			servers := &fakeServers{byHost: map[string][]cloud.Server{"cmp": tc.servers, "other": {{ID: vm3}}}}
			pub := &fakePublisher{}
			reg := prometheus.NewRegistry()
			m := NewMetrics(reg)
			s := &Sweeper{Host: "cmp", Servers: servers, Ledger: l, Options: tc.opts, Publisher: pub, Clock: newFakeClock(), Metrics: m}
			rep, err := s.Sweep(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if rep.Servers != len(tc.servers) {
				t.Errorf("servers = %d, want %d", rep.Servers, len(tc.servers))
			}
			got := map[string]filter.Reason{}
			for _, v := range rep.Violations {
				got[v.InstanceUUID] = v.Reason
				if v.Host != "cmp" || v.Detail == "" {
					t.Errorf("violation lacks host or detail: %+v", v)
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("violations = %v, want %v", got, tc.want)
			}
			counts := map[filter.Reason]int{}
			for _, r := range tc.want {
				counts[r]++
			}
			for _, r := range filter.Reasons() {
				if g := testutil.ToFloat64(m.violations.WithLabelValues(string(r))); int(g) != counts[r] {
					t.Errorf("gauge %s = %v, want %d", r, g, counts[r])
				}
			}
			if len(pub.events) != len(tc.want) {
				t.Fatalf("published %d events, want %d", len(pub.events), len(tc.want))
			}
			for _, v := range pub.events {
				if v.Reason != tc.want[v.InstanceUUID] || v.Verdict.Reason != v.Reason || v.Verdict.Host != "cmp" {
					t.Errorf("published %#v", v)
				}
			}
		})
	}
}

func TestSweepBatchesAndClearsGauge(t *testing.T) {
	l := newFakeLedger()
	l.PutHost(context.Background(), filter.Host{Name: "cmp", Country: "DE", Organizations: []string{"CompanyA"}})
	var servers []cloud.Server
	for i := 0; i < 250; i++ {
		id := fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i)
		servers = append(servers, cloud.Server{ID: id, ProjectID: "p1"})
		if i%2 == 0 {
			l.putRegulation(t, "vm:"+id, `{"allow":["JP.CompanyA"]}`)
		}
	}
	fs := &fakeServers{byHost: map[string][]cloud.Server{"cmp": servers}}
	m := NewMetrics(prometheus.NewRegistry())
	s := &Sweeper{Host: "cmp", Servers: fs, Ledger: l, Batch: 100, Clock: newFakeClock(), Metrics: m}
	rep, err := s.Sweep(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if l.lookups != 3 {
		t.Errorf("%d lookups for 250 servers in batches of 100, want 3", l.lookups)
	}
	if len(rep.Violations) != 125 || rep.Regulated != 125 {
		t.Fatalf("violations=%d regulated=%d, want 125 and 125", len(rep.Violations), rep.Regulated)
	}
	if g := testutil.ToFloat64(m.violations.WithLabelValues(string(filter.CountryNotAllowed))); g != 125 {
		t.Fatalf("gauge = %v", g)
	}
	// The VMs leave: the next sweep clears the gauge.
	fs.byHost["cmp"] = nil
	if _, err := s.Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	if g := testutil.ToFloat64(m.violations.WithLabelValues(string(filter.CountryNotAllowed))); g != 0 {
		t.Fatalf("gauge after the VMs left = %v, want 0", g)
	}
}

func TestSweepFailures(t *testing.T) {
	tests := []struct {
		name    string
		servers *fakeServers
		ledger  func(*fakeLedger)
		want    error
	}{
		{"nova unavailable", &fakeServers{err: fmt.Errorf("%w: connection refused", cloud.ErrUnavailable)}, nil, cloud.ErrUnavailable},
		{"ledger unavailable", &fakeServers{byHost: map[string][]cloud.Server{"cmp": {{ID: vm1}}}},
			func(l *fakeLedger) { l.failErr, l.failures = ledger.Errorf(ledger.ErrUnavailable, nil, "down"), 1 }, ledger.ErrUnavailable},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := newFakeLedger()
			if tc.ledger != nil {
				tc.ledger(l)
			}
			m := NewMetrics(prometheus.NewRegistry())
			m.violations.WithLabelValues(string(filter.CountryNotAllowed)).Set(3)
			s := &Sweeper{Host: "cmp", Servers: tc.servers, Ledger: l, Clock: newFakeClock(), Metrics: m}
			_, err := s.Sweep(context.Background())
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if g := testutil.ToFloat64(m.sweeps.WithLabelValues("error")); g != 1 {
				t.Errorf("error sweeps = %v", g)
			}
			// A failed sweep leaves the last known count in place.
			if g := testutil.ToFloat64(m.violations.WithLabelValues(string(filter.CountryNotAllowed))); g != 3 {
				t.Errorf("gauge changed by a failed sweep: %v", g)
			}
		})
	}
}
