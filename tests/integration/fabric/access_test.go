package fabric_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/hyperledger/fabric-gateway/pkg/client"
	"github.com/hyperledger/fabric-protos-go-apiv2/peer"

	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/fabric"
	"github.com/ledgerfence/ledgerfence/tests/integration/fabricnet"
)

// wantErr checks that err matches kind and that its text says every word.
func wantErr(t *testing.T, err, kind error, words ...string) {
	t.Helper()
	if !errors.Is(err, kind) {
		t.Fatalf("want %v, got %v", kind, err)
	}
	for _, w := range words {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not say %q", err, w)
		}
	}
}

func TestHostAgentWritesOnlyItsOwnHost(t *testing.T) {
	c := ctx(t)
	agent := connect(t, "hm1agent")
	rec, changed, err := agent.PutHost(c, filter.Host{Name: "hm1", Country: "jp", Organizations: []string{"CompanyA"}, Region: runID})
	if err != nil {
		t.Fatalf("hm1's agent writing hm1: %v", err)
	}
	if !changed || rec.Country != "JP" || rec.Writer.MSP != "Org1MSP" || !strings.Contains(rec.Writer.ID, "CN=hm1agent") || rec.TxID == "" {
		t.Fatalf("stored %+v (changed %v)", rec, changed)
	}
	got, err := agent.GetHost(c, "hm1")
	if err != nil || got.TxID != rec.TxID || got.Region != runID {
		t.Fatalf("read back %+v, %v", got, err)
	}

	// the same facts again: a no-op, nothing submitted
	again, changed, err := agent.PutHost(c, filter.Host{Name: "hm1", Country: "JP", Organizations: []string{"CompanyA"}, Region: runID})
	if err != nil || changed || again.TxID != rec.TxID {
		t.Fatalf("unchanged write: changed %v, tx %s (first %s), %v", changed, again.TxID, rec.TxID, err)
	}

	_, _, err = agent.PutHost(c, filter.Host{Name: "hm2", Country: "DE", Organizations: []string{"Evil"}})
	wantErr(t, err, ledger.ErrForbidden, "own host", "hm1", "hm2")
	var ee *client.EndorseError
	if !errors.As(err, &ee) {
		t.Errorf("the refusal does not keep the gateway's EndorseError: %T", errors.Unwrap(err))
	}
}

func TestIdentityWithoutRoleIsRefused(t *testing.T) {
	c := ctx(t)
	for _, name := range []string{"norole", "org1-user"} {
		l := connect(t, name)
		_, _, err := l.PutHost(c, filter.Host{Name: "hm1", Country: "JP", Organizations: []string{"CompanyA"}})
		wantErr(t, err, ledger.ErrForbidden, "role is none")
		_, _, err = l.PutRegulation(c, vmSubject(0), filter.Terms{Allow: []filter.Rule{{Country: "JP", Organization: "*"}}})
		wantErr(t, err, ledger.ErrForbidden, "role is none")
	}
	// attributes registered but not put in the enrolment certificate
	enroll(t, "org1", "noecert-hm1", "hostagent", "hm1", fabricnet.WithoutECert())
	_, _, err := connect(t, "noecert-hm1").PutHost(c, filter.Host{Name: "hm1", Country: "JP", Organizations: []string{"CompanyA"}})
	wantErr(t, err, ledger.ErrForbidden, "role is none")
}

func TestHostCannotBeTakenOverByAnotherOrganisation(t *testing.T) {
	c := ctx(t)
	org1 := connect(t, "hm3agent")
	if _, _, err := org1.PutHost(c, filter.Host{Name: "hm3", Country: "JP", Organizations: []string{"CompanyA"}}); err != nil {
		t.Fatal(err)
	}
	// Org2's CA can issue a host agent certificate naming any host.
	enroll(t, "org2", "hm3agent-org2", "hostagent", "hm3")
	org2 := connect(t, "hm3agent-org2")
	_, _, err := org2.PutHost(c, filter.Host{Name: "hm3", Country: "DE", Organizations: []string{"Evil"}})
	wantErr(t, err, ledger.ErrForbidden, "registered through Org1MSP", "Org2MSP")
	got, err := org1.GetHost(c, "hm3")
	if err != nil || got.Country != "JP" {
		t.Fatalf("hm3 after the attempt: %+v, %v", got, err)
	}
}

func TestSecondVMManagerCannotChangeARegulation(t *testing.T) {
	c := ctx(t)
	vm := vmSubject(1)
	first := connect(t, "vmm1")
	second := connect(t, "vmm2")
	rec, changed, err := first.PutRegulationJSON(c, vm, []byte(`{"countries": ["JP", "GB"], "organizations": ["CompanyA", "CompanyB"]}`))
	if err != nil || !changed {
		t.Fatalf("first vm manager: %v (changed %v)", err, changed)
	}
	if !strings.HasPrefix(rec.Owner, "Org1MSP/x509::CN=vmm1") || rec.Version != 1 || len(rec.Allow) != 4 {
		t.Fatalf("stored %+v", rec)
	}
	_, _, err = second.PutRegulation(c, vm, filter.Terms{Allow: []filter.Rule{{Country: "*", Organization: "*"}}})
	wantErr(t, err, ledger.ErrForbidden, "only the owner", "CN=vmm1")
	err = second.DeleteRegulation(c, vm)
	wantErr(t, err, ledger.ErrForbidden, "only the owner")

	// the policy admin of the owner's organisation may
	padmin := connect(t, "padmin")
	rec2, changed, err := padmin.PutRegulation(c, vm, filter.Terms{Allow: []filter.Rule{{Country: "JP", Organization: "CompanyA"}}})
	if err != nil || !changed || rec2.Version != 2 || rec2.Owner != rec.Owner {
		t.Fatalf("policy admin: %+v %v %v", rec2, changed, err)
	}
	// another organisation's vm manager may not
	other := connect(t, "vmm-org2")
	_, _, err = other.PutRegulation(c, vm, filter.Terms{Allow: []filter.Rule{{Country: "DE", Organization: "*"}}})
	wantErr(t, err, ledger.ErrForbidden)

	// validation by the chaincode
	_, _, err = first.PutRegulationJSON(c, vm, []byte(`{"allow": ["XX.CompanyA"]}`))
	wantErr(t, err, ledger.ErrInvalid, "country")

	// history: who, when, what, tx id
	if err := first.DeleteRegulation(c, vm); err != nil {
		t.Fatal(err)
	}
	_, err = first.GetRegulation(c, vm)
	wantErr(t, err, ledger.ErrNotFound)
	hist, err := first.History(c, ledger.KindRegulation, string(vm))
	if err != nil {
		t.Fatal(err)
	}
	var seen []string
	for _, ch := range hist {
		who := ch.Writer.ID[strings.Index(ch.Writer.ID, "CN=")+3:]
		who = who[:strings.IndexAny(who, ",:")]
		seen = append(seen, string(ch.Op)+":"+who)
		if ch.TxID == "" || ch.Time.IsZero() {
			t.Errorf("change without tx id or time: %+v", ch)
		}
	}
	if strings.Join(seen, " ") != "put:vmm1 put:padmin delete:vmm1" {
		t.Errorf("history %v", seen)
	}
	if hist[0].TxID != rec.TxID || hist[1].Regulation == nil || hist[1].Regulation.Allow[0].Country != "JP" {
		t.Errorf("history values %+v", hist)
	}
	for i := 1; i < len(hist); i++ {
		if hist[i].Block <= hist[i-1].Block {
			t.Errorf("blocks of the history not increasing: %d then %d", hist[i-1].Block, hist[i].Block)
		}
	}
}

func TestOneOrganisationsEndorsementIsNotCommitted(t *testing.T) {
	c := ctx(t)
	l := connect(t, "hm4agent", fabric.WithEndorsingOrganizations("Org1MSP"))
	region := uniq("r")
	_, _, err := l.PutHost(c, filter.Host{Name: "hm4", Country: "JP", Organizations: []string{"CompanyA"}, Region: region})
	wantErr(t, err, ledger.ErrForbidden, "not endorsed")
	var ce *client.CommitError
	if !errors.As(err, &ce) || ce.Code != peer.TxValidationCode_ENDORSEMENT_POLICY_FAILURE {
		t.Fatalf("want a commit error ENDORSEMENT_POLICY_FAILURE, got %v", err)
	}
	got, err := connect(t, "hm4agent").GetHost(c, "hm4")
	if err == nil && got.Region == region {
		t.Fatalf("a transaction endorsed by one organisation was written: %+v", got)
	}
	if err != nil && !errors.Is(err, ledger.ErrNotFound) {
		t.Fatal(err)
	}
}

func TestReads(t *testing.T) {
	c := ctx(t)
	admin := connect(t, "hadmin")
	names := []string{uniq("rd-a"), uniq("rd-b"), uniq("rd-c")}
	for i, n := range names {
		if _, _, err := admin.PutHost(c, filter.Host{Name: n, Country: []string{"JP", "GB", "DE"}[i], Organizations: []string{"CompanyA"}}); err != nil {
			t.Fatal(err)
		}
	}
	vm := vmSubject(2)
	if _, _, err := connect(t, "vmm1").PutRegulationJSON(c, vm, []byte(`{"allow": ["JP.CompanyA", "GB.All"]}`)); err != nil {
		t.Fatal(err)
	}
	before, err := admin.Height(c)
	if err != nil {
		t.Fatal(err)
	}
	lk, err := admin.Lookup(c, []filter.Subject{vm, "project:nothing"}, append(names, "no-such-host"))
	if err != nil {
		t.Fatal(err)
	}
	if len(lk.Hosts) != 3 || len(lk.Regulations) != 1 || lk.Regulations[vm].Version != 1 {
		t.Fatalf("lookup %+v", lk)
	}
	// The records are at least as new as the height the lookup reports, and
	// that height includes the writes above.
	if lk.Height < before || before == 0 {
		t.Errorf("lookup height %d, ledger height before it %d", lk.Height, before)
	}
	res, err := admin.Check(c, vm.ID(), "", append(names, "no-such-host"), filter.Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := []filter.Reason{"", "", filter.CountryNotAllowed, filter.HostUnregistered}
	for i, v := range res.Verdicts {
		if v.Reason != want[i] || v.Host != append(names, "no-such-host")[i] {
			t.Errorf("verdict %d: %+v, want %s", i, v, want[i])
		}
	}
	if !res.Regulated || len(res.Allowed) != 2 {
		t.Errorf("check %+v", res)
	}
	// paging goes through every host once
	seen := map[string]int{}
	after := ""
	for {
		p, err := admin.ListHosts(c, after, 2)
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range p.Hosts {
			seen[h.Name]++
		}
		if p.Next == "" {
			break
		}
		after = p.Next
	}
	for _, n := range names {
		if seen[n] != 1 {
			t.Errorf("host %s listed %d times", n, seen[n])
		}
	}
	_, err = admin.GetHost(c, "no-such-host")
	wantErr(t, err, ledger.ErrNotFound)
	h, err := admin.Height(c)
	if err != nil || h == 0 {
		t.Fatalf("height %d, %v", h, err)
	}
}
