package main

import (
	"net/http"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/ledgerfence/ledgerfence/pkg/notify"
)

// With --nats, filterd publishes every ledger change it sees and every
// decision that denied a host, on a real nats-server.
func TestRunPublishesOnNATS(t *testing.T) {
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	if !ns.ReadyForConnections(20 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	changed := make(chan notify.LedgerChanged, 16)
	denied := make(chan notify.DecisionDenied, 16)
	if _, err := notify.Subscribe(nc, func(c notify.LedgerChanged) { changed <- c }, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := notify.Subscribe(nc, func(d notify.DecisionDenied) { denied <- d }, nil); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	cfg := testConfig(t)
	cfg.NATS = ns.ClientURL()
	client := &http.Client{Timeout: 10 * time.Second}
	base := started(t, cfg, client, "http")
	for _, h := range []struct{ name, body string }{
		{"hm1", `{"country": "JP", "organizations": ["CompanyA"]}`},
		{"hm3", `{"country": "DE", "organizations": ["CompanyA"]}`},
	} {
		if resp, body := call(t, client, http.MethodPut, base+"/v1/hosts/"+h.name, "s3cret", h.body); resp.StatusCode != http.StatusOK {
			t.Fatalf("PUT %s: %d %s", h.name, resp.StatusCode, body)
		}
	}
	if resp, body := call(t, client, http.MethodPut, base+"/v1/regulations/vm:6f1c0d3e-8b2a-4c1d-9e7f-0a1b2c3d4e5f", "s3cret", `{"allow": ["JP.CompanyA"]}`); resp.StatusCode != http.StatusOK {
		t.Fatalf("PUT regulation: %d %s", resp.StatusCode, body)
	}
	for i := range 3 {
		select {
		case c := <-changed:
			if c.Block != uint64(i+1) || c.TxID == "" {
				t.Errorf("change %d: %+v", i, c)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("only %d ledger changes published", i)
		}
	}
	resp, _ := call(t, client, http.MethodPost, base+"/scheduler/nova/external", "", webhookBody)
	select {
	case d := <-denied:
		if d.DecisionID != resp.Header.Get("X-Ledgerfence-Decision") || d.Operation != "live_migrate" || d.Allowed != 1 ||
			len(d.Denied) != 1 || d.Denied[0].Host != "hm3" || d.Denied[0].Reason != "country_not_allowed" {
			t.Errorf("decision published = %+v", d)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no decision published")
	}
}
