package filter

import (
	"fmt"
	"testing"
)

func benchHosts(n int) []Candidate {
	countries := []string{"JP", "GB", "DE", "FR", "US"}
	orgs := []string{"CompanyA", "CompanyB", "CompanyC"}
	hosts := make([]Host, n)
	cands := make([]Candidate, n)
	for i := range hosts {
		hosts[i] = Host{Name: fmt.Sprintf("compute-%05d", i), Country: countries[i%len(countries)], Organizations: []string{orgs[i%len(orgs)]}}
		cands[i] = Candidate{Name: hosts[i].Name, Host: &hosts[i]}
	}
	return cands
}

func BenchmarkEvaluate(b *testing.B) {
	regs := []Regulation{
		{Subject: VMSubject(vm1), Allow: mustRules(b, `{"countries":["JP","GB"],"organizations":["CompanyA","CompanyB"]}`)},
		{Subject: ProjectSubject("p1"), Allow: mustRules(b, `{"allow":["*.CompanyA","*.CompanyB","DE.*"]}`)},
	}
	for _, n := range []int{1000, 10000} {
		cands := benchHosts(n)
		b.Run(fmt.Sprintf("hosts=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				res := Evaluate(regs, cands, Options{})
				if res.Allowed == 0 {
					b.Fatal("no host allowed")
				}
			}
		})
		// As filterd calls it, into a buffer kept from the last decision.
		b.Run(fmt.Sprintf("into/hosts=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			var buf []Verdict
			for b.Loop() {
				res := EvaluateInto(buf, regs, cands, Options{})
				if res.Allowed == 0 {
					b.Fatal("no host allowed")
				}
				buf = res.Verdicts
			}
		})
	}
}
