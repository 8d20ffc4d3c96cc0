package filter

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// seedHosts are the five host machines of the seed paper's evaluation.
func seedHosts() []Host {
	return []Host{
		{Name: "hm1", Country: "JP", Organizations: []string{"CompanyA", "CompanyB"}, Region: "region1"},
		{Name: "hm2", Country: "JP", Organizations: []string{"CompanyA"}, Region: "region1"},
		{Name: "hm3", Country: "DE", Organizations: []string{"CompanyA"}, Region: "region2"},
		{Name: "hm4", Country: "GB", Organizations: []string{"CompanyC"}, Region: "region3"},
		{Name: "hm5", Country: "GB", Organizations: []string{"CompanyB"}, Region: "region3"},
	}
}

func candidates(hosts []Host, unregistered ...string) []Candidate {
	out := make([]Candidate, 0, len(hosts)+len(unregistered))
	for i := range hosts {
		out = append(out, Candidate{Name: hosts[i].Name, Host: &hosts[i]})
	}
	for _, n := range unregistered {
		out = append(out, Candidate{Name: n})
	}
	return out
}

func mustRules(t testing.TB, body string) []Rule {
	t.Helper()
	r, err := parseRules([]byte(body))
	if err != nil {
		t.Fatalf("parseRules(%s): %v", body, err)
	}
	return r
}

const vm1 = "0b3e1c52-7a4e-4b8e-9f3a-3d2c1b0a9e8f"

// TestSeedTable4 is the seed paper's Table 4: VM1 may go to JP and GB for
// CompanyA and CompanyB.
func TestSeedTable4(t *testing.T) {
	reg := Regulation{Subject: VMSubject(vm1), Allow: mustRules(t, `{"countries":["JP","GB"],"organizations":["CompanyA","CompanyB"]}`)}
	res := Evaluate([]Regulation{reg}, candidates(seedHosts(), "hm6"), Options{})
	want := []struct {
		host   string
		reason Reason
	}{
		{"hm1", ReasonNone},
		{"hm2", ReasonNone},
		{"hm3", CountryNotAllowed},
		{"hm4", OrganizationNotAllowed},
		{"hm5", ReasonNone},
		{"hm6", HostUnregistered},
	}
	if len(res.Verdicts) != len(want) {
		t.Fatalf("got %d verdicts, want %d", len(res.Verdicts), len(want))
	}
	for i, w := range want {
		v := res.Verdicts[i]
		if v.Host != w.host || v.Reason != w.reason || v.Allowed != (w.reason == ReasonNone) {
			t.Errorf("verdict %d = %+v, want host %s reason %q", i, v, w.host, w.reason)
		}
	}
	if got, want := res.Summary(), "3/6 hosts eligible: 1 country_not_allowed, 1 organization_not_allowed, 1 host_unregistered"; got != want {
		t.Errorf("Summary() = %q, want %q", got, want)
	}
	if d := res.Verdicts[2].Detail(); !strings.Contains(d, "DE") || !strings.Contains(d, vm1) {
		t.Errorf("detail of hm3 = %q, want the country and the subject", d)
	}
	if d := res.Verdicts[3].Detail(); !strings.Contains(d, "CompanyC") {
		t.Errorf("detail of hm4 = %q, want the organisation", d)
	}
}

// EvaluateInto over a buffer left from a larger decision must answer as
// Evaluate does, in the buffer's memory.
func TestEvaluateIntoReusesBuffer(t *testing.T) {
	reg := Regulation{Subject: VMSubject(vm1), Allow: mustRules(t, `{"countries":["JP","GB"],"organizations":["CompanyA","CompanyB"]}`)}
	cands := candidates(seedHosts(), "hm6")
	buf := make([]Verdict, 10)
	for i := range buf {
		buf[i] = Verdict{Host: "stale", Reason: LedgerUnavailable}
	}
	for _, regs := range [][]Regulation{{reg}, nil} {
		want := Evaluate(regs, cands, Options{})
		got := EvaluateInto(buf, regs, cands, Options{})
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("EvaluateInto = %+v, want %+v", got, want)
		}
		if &got.Verdicts[0] != &buf[0] {
			t.Error("EvaluateInto did not write into the buffer")
		}
	}
}

func TestEvaluate(t *testing.T) {
	jp := Host{Name: "a", Country: "JP", Organizations: []string{"CompanyA"}}
	jpShared := Host{Name: "b", Country: "JP", Organizations: []string{"CompanyA", "CompanyX"}}
	de := Host{Name: "c", Country: "DE", Organizations: []string{"CompanyA"}}
	cases := []struct {
		name    string
		regs    []string // regulation bodies; subjects vm then project
		opts    Options
		host    Host
		allowed bool
		reason  Reason
	}{
		{"unregulated passes", nil, Options{}, de, true, ReasonNone},
		{"unregulated denied by option", nil, Options{DenyUnregulated: true}, de, false, VMUnregulated},
		{"exact rule", []string{`{"allow":[{"country":"JP","organization":"CompanyA"}]}`}, Options{}, jp, true, ReasonNone},
		{"country wildcard", []string{`{"allow":["All.CompanyA"]}`}, Options{}, de, true, ReasonNone},
		{"organization wildcard", []string{`{"allow":["DE.All"]}`}, Options{}, de, true, ReasonNone},
		{"both wildcards", []string{`{"allow":["*.*"]}`}, Options{}, de, true, ReasonNone},
		{"country not allowed", []string{`{"allow":["JP.*"]}`}, Options{}, de, false, CountryNotAllowed},
		{"every organisation must be allowed", []string{`{"allow":["JP.CompanyA"]}`}, Options{}, jpShared, false, OrganizationNotAllowed},
		{"organisation allowed through wildcard country", []string{`{"allow":["JP.CompanyA","*.CompanyX"]}`}, Options{}, jpShared, true, ReasonNone},
		{"country named but organisation only elsewhere", []string{`{"allow":["JP.CompanyB","DE.CompanyA"]}`}, Options{}, jp, false, OrganizationNotAllowed},
		{"regulations intersect: project narrows vm", []string{`{"allow":["*.CompanyA"]}`, `{"allow":["JP.*"]}`}, Options{}, de, false, CountryNotAllowed},
		{"regulations intersect: both allow", []string{`{"allow":["*.CompanyA"]}`, `{"allow":["JP.*"]}`}, Options{}, jp, true, ReasonNone},
		{"no regulation can widen another", []string{`{"allow":["*.*"]}`, `{"allow":["JP.CompanyB"]}`}, Options{}, jp, false, OrganizationNotAllowed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var regs []Regulation
			for i, body := range tc.regs {
				s := VMSubject(vm1)
				if i == 1 {
					s = ProjectSubject("p1")
				}
				regs = append(regs, Regulation{Subject: s, Allow: mustRules(t, body)})
			}
			h := tc.host
			res := Evaluate(regs, []Candidate{{Name: h.Name, Host: &h}}, tc.opts)
			v := res.Verdicts[0]
			if v.Allowed != tc.allowed || v.Reason != tc.reason {
				t.Fatalf("verdict %+v, want allowed=%v reason=%q", v, tc.allowed, tc.reason)
			}
			if res.Regulated != (len(regs) > 0) {
				t.Errorf("Regulated = %v with %d regulations", res.Regulated, len(regs))
			}
		})
	}
}

// Evaluate must agree with the rules as DESIGN.md states them, read
// literally, over random regulations small and large (lists and hashed
// sets alike) and random hosts.
func TestEvaluateAgreesWithTheRules(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	countries := []string{"JP", "GB", "DE", "FR", "US", "CA", "IT", "ES", "NL", "BE", "AT", "CH", "SE", Any}
	orgs := []string{"A", "B", "C", "D", "E", "F", "G", "H", "I", "J", "K", "L", Any}
	pick := func(list []string) string { return list[r.IntN(len(list))] }
	// allows: some rule of reg speaks of the country; every organisation
	// is allowed there by some rule.
	speaks := func(reg Regulation, country string) bool {
		for _, rule := range reg.Allow {
			if rule.Country == country || rule.Country == Any {
				return true
			}
		}
		return false
	}
	allows := func(reg Regulation, country, org string) bool {
		for _, rule := range reg.Allow {
			if (rule.Country == country || rule.Country == Any) && (rule.Organization == org || rule.Organization == Any) {
				return true
			}
		}
		return false
	}
	for round := range 2000 {
		regs := make([]Regulation, 1+r.IntN(2))
		for i := range regs {
			regs[i].Subject = ProjectSubject("p" + strconv.Itoa(i))
			// Few countries with many organisations, or many countries.
			few := countries[:1+r.IntN(len(countries))]
			for range 1 + r.IntN(80) {
				regs[i].Allow = append(regs[i].Allow, Rule{Country: pick(few), Organization: pick(orgs)})
			}
		}
		hosts := make([]Host, 20)
		cands := make([]Candidate, len(hosts)+1)
		for i := range hosts {
			hosts[i] = Host{Name: "h" + strconv.Itoa(i), Country: pick(countries[:len(countries)-1])}
			for range 1 + r.IntN(3) {
				hosts[i].Organizations = append(hosts[i].Organizations, pick(orgs[:len(orgs)-1]))
			}
			cands[i] = Candidate{Name: hosts[i].Name, Host: &hosts[i]}
		}
		cands[len(hosts)] = Candidate{Name: "unregistered"}
		res := Evaluate(regs, cands, Options{})
		for i, v := range res.Verdicts {
			want := Verdict{Host: cands[i].Name, Allowed: true}
			if i == len(hosts) {
				want = Verdict{Host: "unregistered", Reason: HostUnregistered}
			} else {
			regs:
				for _, reg := range regs {
					h := hosts[i]
					if !speaks(reg, h.Country) {
						want = Verdict{Host: h.Name, Reason: CountryNotAllowed, Subject: reg.Subject, Country: h.Country}
						break
					}
					for _, o := range h.Organizations {
						if !allows(reg, h.Country, o) {
							want = Verdict{Host: h.Name, Reason: OrganizationNotAllowed, Subject: reg.Subject, Country: h.Country, Organization: o}
							break regs
						}
					}
				}
			}
			if v != want {
				t.Fatalf("round %d, host %+v, regulations %+v:\nverdict %+v\nwant    %+v", round, cands[i].Host, regs, v, want)
			}
		}
	}
}

func TestUnavailableFailsClosed(t *testing.T) {
	res := Unavailable(candidates(seedHosts()))
	if res.Allowed != 0 || res.Denied(LedgerUnavailable) != 5 {
		t.Fatalf("Unavailable: allowed %d, ledger_unavailable %d; want 0 and 5", res.Allowed, res.Denied(LedgerUnavailable))
	}
	if got := res.Summary(); got != "0/5 hosts eligible: 5 ledger_unavailable" {
		t.Errorf("Summary() = %q", got)
	}
}

func TestSummaryCountsEveryReason(t *testing.T) {
	// 2/7 hosts eligible: 2 country_not_allowed, 2 organization_not_allowed, 1 host_unregistered
	hosts := []Host{
		{Name: "ok1", Country: "JP", Organizations: []string{"A"}},
		{Name: "ok2", Country: "GB", Organizations: []string{"A"}},
		{Name: "c1", Country: "DE", Organizations: []string{"A"}},
		{Name: "c2", Country: "FR", Organizations: []string{"A"}},
		{Name: "o1", Country: "JP", Organizations: []string{"B"}},
		{Name: "o2", Country: "GB", Organizations: []string{"A", "C"}},
	}
	reg := Regulation{Subject: VMSubject(vm1), Allow: mustRules(t, `{"countries":["JP","GB"],"organizations":["A"]}`)}
	res := Evaluate([]Regulation{reg}, candidates(hosts, "gone"), Options{})
	if got, want := res.Summary(), "2/7 hosts eligible: 2 country_not_allowed, 2 organization_not_allowed, 1 host_unregistered"; got != want {
		t.Fatalf("Summary() = %q, want %q", got, want)
	}
}

func TestParseRulesForms(t *testing.T) {
	want := []Rule{{"GB", "CompanyA"}, {"GB", "CompanyB"}, {"JP", "CompanyA"}, {"JP", "CompanyB"}}
	forms := map[string]string{
		"objects": `{"allow":[{"country":"JP","organization":"CompanyA"},{"country":"jp","organization":"CompanyB"},
			{"country":"GB","organization":"CompanyA"},{"country":"GB","organization":"CompanyB"}]}`,
		"lists":       `{"countries":["JP","GB"],"organizations":["CompanyA","CompanyB"]}`,
		"identifiers": `{"allow":["JP.CompanyA","JP.CompanyB","GB.CompanyA","GB.CompanyB","GB.CompanyB"]}`,
		"stored record sent back": `{"subject":"vm:x","owner":"o","version":3,"allow":[{"country":"GB","organization":"CompanyA"},
			{"country":"GB","organization":"CompanyB"},{"country":"JP","organization":"CompanyA"},{"country":"JP","organization":"CompanyB"}]}`,
	}
	for name, body := range forms {
		t.Run(name, func(t *testing.T) {
			got := mustRules(t, body)
			if !slices.Equal(got, want) {
				t.Fatalf("rules %v, want %v", got, want)
			}
		})
	}
	t.Run("All is the wildcard", func(t *testing.T) {
		got := mustRules(t, `{"allow":["All.CompanyA","GB.All","all.ALL"]}`)
		w := []Rule{{"*", "*"}, {"*", "CompanyA"}, {"GB", "*"}}
		if !slices.Equal(got, w) {
			t.Fatalf("rules %v, want %v", got, w)
		}
	})
}

func TestParseRulesRejects(t *testing.T) {
	cases := map[string]string{
		"not json":               `{"allow":`,
		"not an object":          `["JP.CompanyA"]`,
		"empty object":           `{}`,
		"empty allow":            `{"allow":[]}`,
		"both forms":             `{"allow":["JP.A"],"countries":["JP"],"organizations":["A"]}`,
		"countries only":         `{"countries":["JP"]}`,
		"empty organizations":    `{"countries":["JP"],"organizations":[]}`,
		"unknown field":          `{"allow":["JP.A"],"deny":["DE.A"]}`,
		"unknown rule field":     `{"allow":[{"country":"JP","organization":"A","region":"r"}]}`,
		"invalid country":        `{"allow":["XX.CompanyA"]}`,
		"three-letter country":   `{"countries":["JPN"],"organizations":["A"]}`,
		"reserved code":          `{"allow":["UK.CompanyA"]}`,
		"identifier without dot": `{"allow":["JPCompanyA"]}`,
		"organisation charset":   `{"allow":["JP.Company A"]}`,
		"organisation too long":  `{"allow":["JP.` + strings.Repeat("a", 65) + `"]}`,
		"empty organisation":     `{"allow":[{"country":"JP","organization":""}]}`,
		"number as rule":         `{"allow":[42]}`,
		"allow not a list":       `{"allow":"JP.A"}`,
		"trailing data":          `{"allow":["JP.A"]} {}`,
		"too many countries":     `{"countries":[` + strings.Repeat(`"JP",`, MaxListLen) + `"GB"],"organizations":["A"]}`,
	}
	for name, body := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := parseRules([]byte(body))
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("parseRules(%.60s) error = %v, want a *ValidationError", body, err)
			}
		})
	}
}

func TestNormalizeHost(t *testing.T) {
	got, err := NormalizeHost(Host{Name: "compute-1.example", Country: "jp", Organizations: []string{"B", "A", "B"}, Region: "r1"})
	if err != nil {
		t.Fatal(err)
	}
	want := Host{Name: "compute-1.example", Country: "JP", Organizations: []string{"A", "B"}, Region: "r1"}
	if !got.Equal(want) {
		t.Fatalf("NormalizeHost = %+v, want %+v", got, want)
	}
	bad := map[string]Host{
		"empty name":       {Country: "JP", Organizations: []string{"A"}},
		"name charset":     {Name: "a b", Country: "JP", Organizations: []string{"A"}},
		"name too long":    {Name: strings.Repeat("h", MaxHostNameLen+1), Country: "JP", Organizations: []string{"A"}},
		"unknown country":  {Name: "h", Country: "ZZ", Organizations: []string{"A"}},
		"wildcard country": {Name: "h", Country: "*", Organizations: []string{"A"}},
		"no organisation":  {Name: "h", Country: "JP"},
		"wildcard org":     {Name: "h", Country: "JP", Organizations: []string{"All"}},
		"bad organisation": {Name: "h", Country: "JP", Organizations: []string{"A/B"}},
		"bad region":       {Name: "h", Country: "JP", Organizations: []string{"A"}, Region: "r 1"},
		"too many orgs":    {Name: "h", Country: "JP", Organizations: manyOrgs(MaxHostOrganizations + 1)},
	}
	for name, h := range bad {
		t.Run(name, func(t *testing.T) {
			if _, err := NormalizeHost(h); err == nil {
				t.Fatalf("NormalizeHost(%+v) accepted bad input", h)
			}
		})
	}
}

func manyOrgs(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("org%d", i)
	}
	return out
}

func TestParseSubject(t *testing.T) {
	good := map[string]Subject{
		"vm:0B3E1C52-7A4E-4B8E-9F3A-3D2C1B0A9E8F":  VMSubject(vm1),
		"project:8f2c3e1d4b5a4c6d9e7f0a1b2c3d4e5f": ProjectSubject("8f2c3e1d4b5a4c6d9e7f0a1b2c3d4e5f"),
	}
	for in, want := range good {
		got, err := ParseSubject(in)
		if err != nil || got != want {
			t.Errorf("ParseSubject(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if s := VMSubject(vm1); s.Kind() != KindVM || s.ID() != vm1 {
		t.Errorf("Kind/ID of %q = %q/%q", s, s.Kind(), s.ID())
	}
	for _, in := range []string{"", "vm", "vm:", "vm:not-a-uuid", "vm:0b3e1c52x7a4e-4b8e-9f3a-3d2c1b0a9e8f", "host:hm1", "project:", "project:a b", "domain:x"} {
		if _, err := ParseSubject(in); err == nil {
			t.Errorf("ParseSubject(%q) accepted bad input", in)
		}
	}
}

func TestISOCountries(t *testing.T) {
	if n := (len(isoCodes) + 1) / 3; n != 249 {
		t.Fatalf("the list holds %d codes; ISO 3166-1 assigns 249", n)
	}
	for _, c := range []string{"JP", "GB", "DE", "US", "SS", "BQ", "AX"} {
		if !isCountry(c) {
			t.Errorf("%s should be a country", c)
		}
	}
	for _, c := range []string{"UK", "EU", "XK", "ZZ", "D ", " D", "D", "JPN", "jp", "E D"} {
		if isCountry(c) {
			t.Errorf("%q should not be a country", c)
		}
	}
	// The list is sorted and without duplicates.
	codes := strings.Fields(isoCodes)
	if !slices.IsSorted(codes) || len(slices.Compact(slices.Clone(codes))) != len(codes) {
		t.Error("isoCodes is not sorted and unique")
	}
}

func FuzzParseRules(f *testing.F) {
	for _, s := range []string{
		`{"allow":[{"country":"JP","organization":"CompanyA"}]}`,
		`{"countries":["JP","GB"],"organizations":["CompanyA","CompanyB"]}`,
		`{"allow":["JP.CompanyA","GB.All"]}`,
		`{"allow":["*.*"]}`, `{}`, `null`, `{"allow":[1,{"country":null}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		rules, err := parseRules(data)
		if err != nil {
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("error %v is not a *ValidationError", err)
			}
			return
		}
		if len(rules) == 0 || len(rules) > MaxRules {
			t.Fatalf("accepted %d rules", len(rules))
		}
		// Output is canonical: normalising again changes nothing.
		again, err := NormalizeRules(rules)
		if err != nil || !slices.Equal(again, rules) {
			t.Fatalf("rules %v not canonical: %v, %v", rules, again, err)
		}
		for _, r := range rules {
			if r.Country != Any && !isCountry(r.Country) {
				t.Fatalf("accepted country %q", r.Country)
			}
		}
	})
}

func TestClipKeepsCharacters(t *testing.T) {
	long := strings.Repeat("é", ClipLen) // two bytes each
	got := Clip(long)
	if !utf8.ValidString(got) || len(got) > ClipLen+3 || !strings.HasSuffix(got, "...") {
		t.Errorf("Clip cut a character or kept too much: %d bytes, valid %v", len(got), utf8.ValidString(got))
	}
	if Clip("short") != "short" {
		t.Error("Clip changed a short text")
	}
}

func TestProjectIDForms(t *testing.T) {
	for in, want := range map[string]string{
		"11112222-3333-4444-5555-666677778888": "11112222333344445555666677778888",
		"11112222333344445555666677778888":     "11112222333344445555666677778888",
		"A1B2C3D4E5F60718293A4B5C6D7E8F90":     "a1b2c3d4e5f60718293a4b5c6d7e8f90",
		" p1 ":                                 "p1",
		"Team-Alpha":                           "Team-Alpha",
	} {
		if got, err := NormalizeProjectID(in); err != nil || got != want {
			t.Errorf("NormalizeProjectID(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func parseRules(data []byte) ([]Rule, error) {
	t, err := ParseTerms(data)
	return t.Allow, err
}
