package observability

import (
	"context"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	prom "github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/notify"
)

// TestPrometheusScrapesRegistry: a real Prometheus scrapes a registry that
// holds filterd's deny counter and a pkg/notify publisher's metrics (the
// publisher sending to a real nats-server), and PromQL returns the counts.
func TestPrometheusScrapesRegistry(t *testing.T) {
	reg := prom.NewRegistry()
	denied := prom.NewCounterVec(prom.CounterOpts{
		Name: "ledgerfence_hosts_denied_total",
		Help: "Candidate hosts removed from Nova's answers, by reason.",
	}, []string{"reason"})
	reg.MustRegister(denied)
	for _, r := range filter.Reasons() {
		denied.WithLabelValues(string(r))
	}

	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	t.Cleanup(ns.Shutdown)
	if !ns.ReadyForConnections(waitFor) {
		t.Fatal("nats-server did not start")
	}
	pub, err := notify.Connect(ns.ClientURL(), notify.WithRegisterer(reg))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		_ = pub.Close(ctx)
	})

	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	t.Cleanup(srv.Close)
	p := startPrometheus(t, "filterd", hostPort(srv.URL))

	// The seed's Table 4 over four candidates, decided twice.
	terms, err := filter.ParseTerms([]byte(`{"countries":["JP","GB"],"organizations":["CompanyA","CompanyB"]}`))
	rules := terms.Allow
	if err != nil {
		t.Fatal(err)
	}
	hosts := []filter.Host{
		{Name: "hm1", Country: "JP", Organizations: []string{"CompanyA"}},
		{Name: "hm3", Country: "DE", Organizations: []string{"CompanyA"}},
		{Name: "hm4", Country: "GB", Organizations: []string{"CompanyC"}},
	}
	regs := []filter.Regulation{{Subject: filter.VMSubject("0b3e1c52-7a4e-4b8e-9f3a-3d2c1b0a9e8f"), Allow: rules}}
	cands := []filter.Candidate{{Name: "hm1", Host: &hosts[0]}, {Name: "hm3", Host: &hosts[1]}, {Name: "hm4", Host: &hosts[2]}, {Name: "hm6"}}
	for i := range 2 {
		res := filter.Evaluate(regs, cands, filter.Options{})
		for _, r := range filter.Reasons() {
			denied.WithLabelValues(string(r)).Add(float64(res.Denied(r)))
		}
		ev, ok := notify.NewDecisionDenied(notify.Decision{ID: "d" + strconv.Itoa(i), Time: time.Now()}, &res)
		if !ok || !pub.Publish(ev) {
			t.Fatalf("decision %d not published", i)
		}
	}

	p.await(t, `sum by (reason) (ledgerfence_hosts_denied_total)`, "reason", map[string]float64{
		"country_not_allowed": 2, "organization_not_allowed": 2, "host_unregistered": 2,
	})
	p.await(t, `sum by (subject) (ledgerfence_notify_published_total)`, "subject", map[string]float64{
		notify.SubjectDecisionDenied: 2,
	})
	p.await(t, `up{job="filterd"}`, "job", map[string]float64{"filterd": 1})
}
