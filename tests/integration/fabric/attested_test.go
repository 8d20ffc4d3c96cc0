package fabric_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ledgerfence/ledgerfence/pkg/decide"
	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/fabric"
)

// attestedSetup registers a host claimed by Org1's host admin (JP,
// CompanyA), a VM whose regulation requires attested facts and a VM whose
// does not, both allowing JP for CompanyA.
func attestedSetup(tb testing.TB, k int) (host string, strict, plain filter.Subject) {
	tb.Helper()
	host, strict, plain = uniq("att"+string(rune('a'+k))), vmSubject(200+2*k), vmSubject(201+2*k)
	hadmin := connect(tb, "hadmin")
	retry(tb, "register "+host, func(c context.Context) error {
		_, _, err := hadmin.PutHost(c, filter.Host{Name: host, Country: "JP", Organizations: []string{"CompanyA"}})
		return err
	})
	vmm := connect(tb, "vmm1")
	allow := []filter.Rule{{Country: "JP", Organization: "CompanyA"}}
	for _, r := range []struct {
		s     filter.Subject
		terms filter.Terms
	}{{strict, filter.Terms{Allow: allow, RequireAttested: true}}, {plain, filter.Terms{Allow: allow}}} {
		retry(tb, "regulation of "+string(r.s), func(c context.Context) error {
			_, _, err := vmm.PutRegulation(c, r.s, r.terms)
			return err
		})
	}
	return host, strict, plain
}

// attest attests host's facts as the attestor att, waiting while att's
// peer (of another organisation) has not yet committed the host write that
// made them: until then the chaincode there reads the older record.
func attest(tb testing.TB, att *fabric.Ledger, host, country string, orgs []string) (ledger.HostRecord, bool) {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		rec, changed, err := att.AttestHost(context.Background(), host, country, orgs)
		if err == nil {
			return rec, changed
		}
		if !errors.Is(err, ledger.ErrInvalid) || !strings.Contains(err.Error(), "record says") || time.Now().After(deadline) {
			tb.Fatalf("attestation of %s: %v", host, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitClaimed waits until filterd holds host's facts back in JP and
// claimed again (after a change to GB and back).
func waitClaimed(tb testing.TB, f *filterd, vm filter.Subject, host string) {
	tb.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(time.Millisecond) {
		if v := verdictOf(tb, f, vm, host); v.Country == "JP" && v.Reason == filter.HostUnattested {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s not back in JP, claimed, a minute on", host)
		}
	}
}

// allowedBy waits until the webhook's answer for vm does (want) or does not
// offer host, and returns when it first saw it so.
func allowedBy(tb testing.TB, f *filterd, vm filter.Subject, host string, want bool) time.Time {
	tb.Helper()
	body := novaBody(vm.ID(), "", []string{host})
	deadline := time.Now().Add(time.Minute)
	for {
		a, err := f.webhook(context.Background(), body)
		seen := time.Now()
		if err != nil {
			tb.Fatal(err)
		}
		if slices.Contains(a.hosts, host) == want {
			return seen
		}
		if seen.After(deadline) {
			tb.Fatalf("%s offered %v to %s a minute on: %v", host, !want, vm, a.hosts)
		}
		time.Sleep(time.Millisecond)
	}
}

// verdictOf asks filterd's POST /v1/check about vm and host (the webhook's
// decision path, answered with the host's facts), and checks that the
// decision the webhook keeps gives the same reason.
func verdictOf(tb testing.TB, f *filterd, vm filter.Subject, host string) decide.Verdict {
	tb.Helper()
	// A ledger event may land between the two questions: ask both again
	// until they are asked on the same facts.
	for try := 0; ; try++ {
		body, _ := json.Marshal(map[string]any{"instance_uuid": vm.ID(), "hosts": []string{host}})
		resp, err := f.client.Post(f.url+"/v1/check", "application/json", bytes.NewReader(body))
		if err != nil {
			tb.Fatal(err)
		}
		var rep decide.Report
		err = json.NewDecoder(resp.Body).Decode(&rep)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || len(rep.Verdicts) != 1 {
			tb.Fatalf("POST /v1/check: %d %+v: %v", resp.StatusCode, rep, err)
		}
		a := f.mustWebhook(tb, novaBody(vm.ID(), "", []string{host}))
		d := f.decision(tb, a.decision)
		if len(d.Verdicts) == 1 && d.Verdicts[0].Reason == rep.Verdicts[0].Reason {
			return rep.Verdicts[0]
		}
		if try == 20 {
			tb.Fatalf("the webhook's decision %+v and /v1/check's %+v differ", d.Verdicts, rep.Verdicts)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Through Nova's webhook on the Fabric backend: a host whose facts are only
// claimed is denied with host_unattested to a VM whose regulation requires
// attested facts and offered to one whose does not; once an attestor of
// another organisation attests it, it is offered to both; a change of its
// country makes it claimed again, and a new attestation restores it.
func TestWebhookRequiresAttestedFacts(t *testing.T) {
	needNetwork(t)
	host, strict, plain := attestedSetup(t, 0)
	f := startFilterd(t, "org1-user")

	if v := verdictOf(t, f, strict, host); v.Allowed || v.Reason != filter.HostUnattested || v.Facts != decide.FactsClaimed || v.Regulation != strict {
		t.Fatalf("claimed host, regulation requiring attested facts: %+v; want denied host_unattested by %s", v, strict)
	}
	if v := verdictOf(t, f, plain, host); !v.Allowed || v.Facts != decide.FactsClaimed {
		t.Fatalf("claimed host, regulation not requiring attested facts: %+v; want allowed", v)
	}
	if n, ok := f.metric(t, "ledgerfence_hosts_unattested", nil); !ok || n < 1 {
		t.Errorf("ledgerfence_hosts_unattested = %v (%v), want at least 1", n, ok)
	}

	// An attestor of Org1, the claimant's organisation, may not attest.
	_, _, err := connect(t, "attestor").AttestHost(ctx(t), host, "JP", []string{"CompanyA"})
	wantErr(t, err, ledger.ErrForbidden, "same organisation")
	att := connect(t, "attestor-org2")
	rec, changed := attest(t, att, host, "JP", []string{"CompanyA"})
	if !changed || !rec.Attested() {
		t.Fatalf("attestation by Org2: changed %v attested %v", changed, rec.Attested())
	}
	committed := time.Now()
	seen := allowedBy(t, f, strict, host, true)
	t.Logf("attestation committed to the webhook offering the host: %s", seen.Sub(committed))
	if v := verdictOf(t, f, strict, host); !v.Allowed || v.Facts != decide.FactsAttested {
		t.Fatalf("attested host: %+v; want allowed, facts attested", v)
	}

	// The host's country changes: claimed again, denied again.
	hadmin := connect(t, "hadmin")
	if _, _, err := hadmin.PutHost(ctx(t), filter.Host{Name: host, Country: "JP", Organizations: []string{"CompanyA"}, Region: "r2"}); err != nil {
		t.Fatal(err)
	}
	if v := verdictOf(t, f, strict, host); !v.Allowed {
		t.Fatalf("a region change dropped the attestation: %+v", v)
	}
	if _, _, err := hadmin.PutHost(ctx(t), filter.Host{Name: host, Country: "GB", Organizations: []string{"CompanyA"}}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := hadmin.PutHost(ctx(t), filter.Host{Name: host, Country: "JP", Organizations: []string{"CompanyA"}}); err != nil {
		t.Fatal(err)
	}
	// The host is back in JP, claimed: filterd denies it as unattested
	// once both writes' events have reached it (the first, to GB, denies
	// it for its country meanwhile).
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		v := verdictOf(t, f, strict, host)
		if v.Country == "JP" {
			if v.Allowed || v.Reason != filter.HostUnattested || v.Facts != decide.FactsClaimed {
				t.Fatalf("after a country change and back: %+v; want denied host_unattested, claimed", v)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after a country change and back, filterd still says %+v", v)
		}
	}
	if _, changed := attest(t, att, host, "JP", []string{"CompanyA"}); !changed {
		t.Fatal("re-attestation changed nothing")
	}
	allowedBy(t, f, strict, host, true)

	// The history says who attested what.
	changes, err := hadmin.History(ctx(t), ledger.KindHost, host)
	if err != nil {
		t.Fatal(err)
	}
	attests := 0
	for _, c := range changes {
		if c.Op == ledger.OpAttest {
			attests++
			if c.Host == nil || c.Host.Attestation == nil || c.Host.Attestation.Writer.MSP != net0.Get("ORG2_MSPID") {
				t.Errorf("attestation in history without Org2's attestor: %+v", c)
			}
		}
	}
	if attests != 2 {
		t.Errorf("%d attestations in the host's history, want 2", attests)
	}
}

// BenchmarkAttestationToWebhook measures the time from an attestation's
// commit (the submit call returning) to filterd's webhook offering the host
// to a VM whose regulation requires attested facts. Each round makes the
// host claimed again (a country change and back) first.
func BenchmarkAttestationToWebhook(b *testing.B) {
	needNetwork(b)
	host, strict, _ := attestedSetup(b, 1)
	f := startFilterd(b, "org1-user")
	hadmin := connect(b, "hadmin")
	att := connect(b, "attestor-org2")
	var lat latencies
	for b.Loop() {
		for _, c := range []string{"GB", "JP"} {
			if _, _, err := hadmin.PutHost(context.Background(), filter.Host{Name: host, Country: c, Organizations: []string{"CompanyA"}}); err != nil {
				b.Fatal(err)
			}
		}
		waitClaimed(b, f, strict, host)
		if _, changed := attest(b, att, host, "JP", []string{"CompanyA"}); !changed {
			b.Fatal("attestation changed nothing")
		}
		committed := time.Now()
		lat = append(lat, allowedBy(b, f, strict, host, true).Sub(committed))
	}
	lat.report(b)
}
