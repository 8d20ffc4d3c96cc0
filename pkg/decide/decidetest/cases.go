// Package decidetest is the table of decisions every entry point to the one
// decision must agree on (Nova's webhook, POST /v1/check, the chaincode's
// Check, the host agent's sweep, ledgerctl check): the hosts and
// regulations to seed a ledger with, and for each case the verdict, reason
// and deciding regulation of each host.
package decidetest

import (
	"fmt"
	"slices"

	"github.com/ledgerfence/ledgerfence/pkg/decide"
	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
)

// The VMs and projects of the table.
const (
	// VM may go to JP for CompanyA and CompanyB, and to GB for anyone.
	VM = "6f1c0d3e-8b2a-4c1d-9e7f-0a1b2c3d4e5f"
	// Unregulated has no regulation of its own.
	Unregulated = "0d7e7a47-3c5b-4e8b-9a61-5f0b8d6c2e11"
	// Anywhere may go to any country, for CompanyA only.
	Anywhere = "2b6f9a3e-4c1d-4e8f-9a0b-1c2d3e4f5a6b"
	// JapanOnly is a project whose VMs may go to JP only, for anyone.
	JapanOnly = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
	// Free is a project with no regulation.
	Free = "f0e1d2c3b4a5968778695a4b3c2d1e0f"
	// Attested may go to JP for CompanyA and CompanyB, on attested facts
	// only (require_attested).
	Attested = "9c8b7a69-5e4d-4c3b-8a29-1807f6e5d4c3"
)

// Hosts are the registered hosts; "ghost" is not registered.
func Hosts() []filter.Host {
	return []filter.Host{
		{Name: "jp-a", Country: "JP", Organizations: []string{"CompanyA"}},
		{Name: "jp-ab", Country: "JP", Organizations: []string{"CompanyA", "CompanyB"}},
		{Name: "jp-c", Country: "JP", Organizations: []string{"CompanyC"}},
		{Name: "gb-b", Country: "GB", Organizations: []string{"CompanyB"}},
		{Name: "de-a", Country: "DE", Organizations: []string{"CompanyA"}},
		{Name: "de-ab", Country: "DE", Organizations: []string{"CompanyA", "CompanyB"}},
	}
}

// AttestedHosts are the hosts whose facts a second organisation (or, on the
// embedded ledger, another identity) has attested; the others' are only
// claimed.
func AttestedHosts() []string { return []string{"jp-a", "gb-b", "jp-c"} }

// HostNames are every host a case may name, the unregistered one last.
func HostNames() []string {
	var out []string
	for _, h := range Hosts() {
		out = append(out, h.Name)
	}
	return append(out, "ghost")
}

// Regulations are the regulations to write.
func Regulations() []filter.Regulation {
	return []filter.Regulation{
		{Subject: filter.VMSubject(VM), Allow: []filter.Rule{
			{Country: "GB", Organization: filter.Any}, {Country: "JP", Organization: "CompanyA"}, {Country: "JP", Organization: "CompanyB"}}},
		{Subject: filter.VMSubject(Anywhere), Allow: []filter.Rule{{Country: filter.Any, Organization: "CompanyA"}}},
		{Subject: filter.ProjectSubject(JapanOnly), Allow: []filter.Rule{{Country: "JP", Organization: filter.Any}}},
		{Subject: filter.VMSubject(Attested), RequireAttested: true, Allow: []filter.Rule{
			{Country: "JP", Organization: "CompanyA"}, {Country: "JP", Organization: "CompanyB"}}},
	}
}

// Facts are Hosts and Regulations as a ledger lookup answers them.
func Facts() ledger.Lookup {
	lk := ledger.Lookup{Height: 9, Regulations: map[filter.Subject]ledger.RegulationRecord{}, Hosts: map[string]ledger.HostRecord{}}
	for _, h := range Hosts() {
		rec := ledger.HostRecord{Host: h}
		if slices.Contains(AttestedHosts(), h.Name) {
			rec.Attestation = &ledger.Attestation{Country: h.Country, Organizations: h.Organizations}
		}
		lk.Hosts[h.Name] = rec
	}
	for _, r := range Regulations() {
		lk.Regulations[r.Subject] = ledger.RegulationRecord{Regulation: r}
	}
	return lk
}

// Want is a host's expected verdict.
type Want struct {
	Reason filter.Reason // "" for allowed
	// By is the regulation that denies the host, when one does.
	By filter.Subject
}

// Case is one decision and what every entry point must answer.
type Case struct {
	Name        string
	VM, Project string
	Options     filter.Options
	Hosts       []string
	// Regulations are the subjects that apply, in the one order.
	Regulations []filter.Subject
	Want        map[string]Want
}

var (
	vmReg    = filter.VMSubject(VM)
	anyReg   = filter.VMSubject(Anywhere)
	attReg   = filter.VMSubject(Attested)
	japanReg = filter.ProjectSubject(JapanOnly)
)

// Cases is the table.
func Cases() []Case {
	all := HostNames()
	return []Case{
		{
			Name: "the VM's regulation alone", VM: VM, Hosts: all, Regulations: []filter.Subject{vmReg},
			Want: map[string]Want{
				"jp-a": {}, "jp-ab": {}, "gb-b": {},
				"jp-c":  {filter.OrganizationNotAllowed, vmReg},
				"de-a":  {filter.CountryNotAllowed, vmReg},
				"de-ab": {filter.CountryNotAllowed, vmReg},
				"ghost": {filter.HostUnregistered, ""},
			},
		},
		{
			// de-a is denied by both: the VM's own regulation is named.
			Name: "both regulations deny: the VM's is named", VM: VM, Project: JapanOnly, Hosts: all,
			Regulations: []filter.Subject{vmReg, japanReg},
			Want: map[string]Want{
				"jp-a": {}, "jp-ab": {},
				"jp-c":  {filter.OrganizationNotAllowed, vmReg},
				"gb-b":  {filter.CountryNotAllowed, japanReg},
				"de-a":  {filter.CountryNotAllowed, vmReg},
				"de-ab": {filter.CountryNotAllowed, vmReg},
				"ghost": {filter.HostUnregistered, ""},
			},
		},
		{
			Name: "only the project's regulation applies", VM: Unregulated, Project: JapanOnly, Hosts: all,
			Regulations: []filter.Subject{japanReg},
			Want: map[string]Want{
				"jp-a": {}, "jp-ab": {}, "jp-c": {},
				"gb-b":  {filter.CountryNotAllowed, japanReg},
				"de-a":  {filter.CountryNotAllowed, japanReg},
				"de-ab": {filter.CountryNotAllowed, japanReg},
				"ghost": {filter.HostUnregistered, ""},
			},
		},
		{
			Name: "unregulated: every host passes", VM: Unregulated, Project: Free, Hosts: all,
			Want: map[string]Want{"jp-a": {}, "jp-ab": {}, "jp-c": {}, "gb-b": {}, "de-a": {}, "de-ab": {}, "ghost": {}},
		},
		{
			Name: "unregulated with --deny-unregulated", VM: Unregulated, Project: Free, Hosts: all,
			Options: filter.Options{DenyUnregulated: true},
			Want: map[string]Want{
				"jp-a": {filter.VMUnregulated, ""}, "jp-ab": {filter.VMUnregulated, ""}, "jp-c": {filter.VMUnregulated, ""},
				"gb-b": {filter.VMUnregulated, ""}, "de-a": {filter.VMUnregulated, ""}, "de-ab": {filter.VMUnregulated, ""},
				"ghost": {filter.VMUnregulated, ""},
			},
		},
		{
			Name: "--deny-unregulated does not touch a regulated VM", VM: VM, Hosts: []string{"jp-a", "de-a"},
			Options: filter.Options{DenyUnregulated: true}, Regulations: []filter.Subject{vmReg},
			Want: map[string]Want{"jp-a": {}, "de-a": {filter.CountryNotAllowed, vmReg}},
		},
		{
			Name: "a wildcard country; a host of two organisations", VM: Anywhere, Hosts: all,
			Regulations: []filter.Subject{anyReg},
			Want: map[string]Want{
				"jp-a": {}, "de-a": {},
				"jp-ab": {filter.OrganizationNotAllowed, anyReg},
				"de-ab": {filter.OrganizationNotAllowed, anyReg},
				"jp-c":  {filter.OrganizationNotAllowed, anyReg},
				"gb-b":  {filter.OrganizationNotAllowed, anyReg},
				"ghost": {filter.HostUnregistered, ""},
			},
		},
		{
			// The rules first: jp-c keeps its reason; de-ab is claimed and
			// out of the rules' countries.
			Name: "attested facts required by the regulation", VM: Attested, Hosts: all, Regulations: []filter.Subject{attReg},
			Want: map[string]Want{
				"jp-a":  {},
				"jp-ab": {filter.HostUnattested, attReg},
				"jp-c":  {filter.OrganizationNotAllowed, attReg},
				"gb-b":  {filter.CountryNotAllowed, attReg},
				"de-a":  {filter.CountryNotAllowed, attReg},
				"de-ab": {filter.CountryNotAllowed, attReg},
				"ghost": {filter.HostUnregistered, ""},
			},
		},
		{
			Name: "a regulation that does not require attested facts allows claimed hosts", VM: VM, Hosts: []string{"jp-a", "jp-ab"},
			Regulations: []filter.Subject{vmReg},
			Want:        map[string]Want{"jp-a": {}, "jp-ab": {}},
		},
		{
			Name: "unregistered hosts only", VM: VM, Hosts: []string{"ghost", "nowhere"}, Regulations: []filter.Subject{vmReg},
			Want: map[string]Want{"ghost": {filter.HostUnregistered, ""}, "nowhere": {filter.HostUnregistered, ""}},
		},
	}
}

// Verdict is one host's verdict as an entry point showed it.
type Verdict struct {
	Host    string
	Allowed bool
	Reason  filter.Reason
	By      filter.Subject
}

// Verdicts of a report.
func Verdicts(r decide.Report) []Verdict {
	out := make([]Verdict, len(r.Verdicts))
	for i, v := range r.Verdicts {
		out[i] = Verdict{Host: v.Host, Allowed: v.Allowed, Reason: v.Reason, By: v.Regulation}
	}
	return out
}

// Check compares a report with the case.
func (c Case) Check(r decide.Report) error {
	if err := c.CheckVerdicts(Verdicts(r)); err != nil {
		return err
	}
	want := c.Regulations
	if want == nil {
		want = []filter.Subject{}
	}
	got := r.Regulations
	if got == nil {
		got = []filter.Subject{}
	}
	if !slices.Equal(got, want) {
		return fmt.Errorf("regulations %v, want %v", got, want)
	}
	return nil
}

// CheckVerdicts compares the verdicts an entry point gave, one per host in
// the order asked, with the case.
func (c Case) CheckVerdicts(vs []Verdict) error {
	if len(vs) != len(c.Hosts) {
		return fmt.Errorf("%d verdicts, want %d: %+v", len(vs), len(c.Hosts), vs)
	}
	for i, v := range vs {
		if v.Host != c.Hosts[i] {
			return fmt.Errorf("verdict %d is for %s, want %s", i, v.Host, c.Hosts[i])
		}
		w := c.Want[v.Host]
		if v.Allowed != (w.Reason == "") || v.Reason != w.Reason || v.By != w.By {
			return fmt.Errorf("%s: allowed %v, reason %q by %q; want reason %q by %q", v.Host, v.Allowed, v.Reason, v.By, w.Reason, w.By)
		}
	}
	return nil
}
