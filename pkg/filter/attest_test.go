package filter

import (
	"strings"
	"testing"
)

// A regulation that requires attested facts denies a host that its rules
// allow but whose facts are merely claimed; the rules are checked first, so
// a host they deny keeps their reason.
func TestRequireAttested(t *testing.T) {
	rules := mustRules(t, `{"countries":["JP","GB"],"organizations":["CompanyA","CompanyB"]}`)
	jp := &Host{Name: "jp", Country: "JP", Organizations: []string{"CompanyA"}}
	us := &Host{Name: "us", Country: "US", Organizations: []string{"CompanyA"}}
	cands := func() []Candidate {
		return []Candidate{{Name: "jp", Host: jp}, {Name: "jp-attested", Host: jp, Attested: true}, {Name: "us", Host: us}, {Name: "ghost"}}
	}
	plain := Regulation{Subject: VMSubject(vm1), Allow: rules}
	strict := Regulation{Subject: VMSubject(vm1), Allow: rules, RequireAttested: true}
	tests := []struct {
		name string
		regs []Regulation
		opts Options
		want []Reason
	}{
		{"not required", []Regulation{plain}, Options{}, []Reason{ReasonNone, ReasonNone, CountryNotAllowed, HostUnregistered}},
		{"regulation requires", []Regulation{strict}, Options{}, []Reason{HostUnattested, ReasonNone, CountryNotAllowed, HostUnregistered}},
		{"cloud requires", []Regulation{plain}, Options{RequireAttested: true}, []Reason{HostUnattested, ReasonNone, CountryNotAllowed, HostUnregistered}},
		{"one of two requires", []Regulation{plain, {Subject: ProjectSubject("p1"), Allow: rules, RequireAttested: true}}, Options{},
			[]Reason{HostUnattested, ReasonNone, CountryNotAllowed, HostUnregistered}},
		{"unregulated VM, cloud requires", nil, Options{RequireAttested: true}, []Reason{ReasonNone, ReasonNone, ReasonNone, ReasonNone}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := Evaluate(tc.regs, cands(), tc.opts)
			for i, v := range res.Verdicts {
				if v.Reason != tc.want[i] || v.Allowed != (tc.want[i] == ReasonNone) {
					t.Errorf("%s: reason %q allowed %v, want %q", v.Host, v.Reason, v.Allowed, tc.want[i])
				}
			}
			want := 0
			for _, r := range tc.want {
				if r == HostUnattested {
					want++
				}
			}
			if got := res.Denied(HostUnattested); got != want {
				t.Errorf("Denied(host_unattested) = %d, want %d", got, want)
			}
		})
	}
	// The detail names who asked for attested facts.
	res := Evaluate([]Regulation{strict}, cands(), Options{})
	if d := res.Verdicts[0].Detail(); !strings.Contains(d, string(strict.Subject)) {
		t.Errorf("detail %q does not name %s", d, strict.Subject)
	}
	res = Evaluate([]Regulation{plain}, cands(), Options{RequireAttested: true})
	if v := res.Verdicts[0]; v.Subject != "" || !strings.Contains(v.Detail(), "cloud") {
		t.Errorf("cloud-wide: subject %q detail %q; want no subject and the cloud named", v.Subject, v.Detail())
	}
}

func TestParseTermsOptions(t *testing.T) {
	for _, body := range []string{
		`{"allow":["JP.CompanyA"],"require_attested":true,"project":"P-1"}`,
		`{"allow":[{"country":"JP","organization":"CompanyA"}],"require_attested":true,"project":"P-1"}`,
		`{"countries":["JP"],"organizations":["CompanyA"],"require_attested":true,"project":"P-1"}`,
	} {
		terms, err := ParseTerms([]byte(body))
		if err != nil {
			t.Fatalf("%s: %v", body, err)
		}
		if !terms.RequireAttested || terms.Project != "P-1" || len(terms.Allow) != 1 {
			t.Errorf("%s: got %+v", body, terms)
		}
		n, err := NormalizeTerms(VMSubject(vm1), terms)
		if err != nil || n.Project != "P-1" {
			t.Errorf("%s: NormalizeTerms = %+v, %v", body, n, err)
		}
		if _, err := NormalizeTerms(ProjectSubject("p1"), terms); err == nil || !strings.Contains(err.Error(), "project") {
			t.Errorf("%s: a project regulation naming a project: err = %v, want a refusal", body, err)
		}
	}
	if _, err := ParseTerms([]byte(`{"allow":["JP.CompanyA"],"require_attested":"yes"}`)); err == nil {
		t.Error(`require_attested "yes" accepted`)
	}
	terms, _ := ParseTerms([]byte(`{"allow":["JP.CompanyA"],"project":"ABCDEF0123456789ABCDEF0123456789"}`))
	if n, err := NormalizeTerms(VMSubject(vm1), terms); err != nil || n.Project != "abcdef0123456789abcdef0123456789" {
		t.Errorf("hex project id not normalised: %+v, %v", n, err)
	}
}
