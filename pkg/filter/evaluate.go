package filter

import (
	"strconv"
	"strings"
)

// Reason says why a host was denied. The set is closed and fit for metric labels.
type Reason string

// The reasons. Details (which country, which rule) go to logs and events only.
const (
	ReasonNone             Reason = ""
	CountryNotAllowed      Reason = "country_not_allowed"
	OrganizationNotAllowed Reason = "organization_not_allowed"
	HostUnregistered       Reason = "host_unregistered"
	LedgerUnavailable      Reason = "ledger_unavailable"
	// VMUnregulated denies every host for a VM with no regulation, only when
	// Options.DenyUnregulated is set.
	VMUnregulated Reason = "vm_unregulated"
	// HostUnattested denies a host that the rules allow but whose facts no
	// second organisation has attested, when the regulation (or the cloud,
	// Options.RequireAttested) asks for attested facts.
	HostUnattested Reason = "host_unattested"
)

// Reasons lists every deny reason, in a fixed order (for metrics and summaries).
func Reasons() []Reason {
	return []Reason{CountryNotAllowed, OrganizationNotAllowed, HostUnregistered, LedgerUnavailable, VMUnregulated, HostUnattested}
}

func (r Reason) index() int {
	switch r {
	case CountryNotAllowed:
		return 0
	case OrganizationNotAllowed:
		return 1
	case HostUnregistered:
		return 2
	case LedgerUnavailable:
		return 3
	case VMUnregulated:
		return 4
	case HostUnattested:
		return 5
	}
	return -1
}

// Candidate is a host to decide on. Host is nil when the ledger has no record
// of it. Attested is true when its record's country and organisations are
// attested by a second organisation (ledger.HostRecord.Attested).
type Candidate struct {
	Name     string
	Host     *Host
	Attested bool
}

// Verdict is the decision for one candidate host.
type Verdict struct {
	Host    string `json:"host"`
	Allowed bool   `json:"allowed"`
	Reason  Reason `json:"reason,omitempty"`
	// Subject is the regulation that denied the host.
	Subject Subject `json:"subject,omitempty"`
	// Country and Organization are the host's facts that no rule allowed.
	Country      string `json:"country,omitempty"`
	Organization string `json:"organization,omitempty"`
}

// Detail explains a deny in words, for logs and events.
func (v Verdict) Detail() string {
	switch v.Reason {
	case ReasonNone:
		return "allowed"
	case CountryNotAllowed:
		return "country " + v.Country + " is not allowed by " + string(v.Subject)
	case OrganizationNotAllowed:
		return "organization " + v.Organization + " in " + v.Country + " is not allowed by " + string(v.Subject)
	case HostUnregistered:
		return "host has no record in the ledger"
	case LedgerUnavailable:
		return "the ledger could not answer"
	case VMUnregulated:
		return "VM has no regulation and unregulated VMs are denied"
	case HostUnattested:
		if v.Subject == "" {
			return "host's facts are not attested and the cloud requires attested facts"
		}
		return "host's facts are not attested and " + string(v.Subject) + " requires attested facts"
	}
	return string(v.Reason)
}

// Options tune a decision.
type Options struct {
	// DenyUnregulated denies every host to a VM that no regulation applies to.
	DenyUnregulated bool
	// RequireAttested denies, to a VM that a regulation applies to, every
	// host whose facts are not attested, as if each regulation required it
	// (the registry's cloud-wide setting).
	RequireAttested bool
}

// Result is the decision for a VM over a list of candidate hosts.
type Result struct {
	// Verdicts, one per candidate, in the candidates' order.
	Verdicts []Verdict `json:"verdicts"`
	// Regulated is false when no regulation applied.
	Regulated bool `json:"regulated"`
	Allowed   int  `json:"allowed"`
	denied    [6]int
}

// Denied returns how many hosts were denied for reason r.
func (r *Result) Denied(reason Reason) int {
	if i := reason.index(); i >= 0 {
		return r.denied[i]
	}
	return 0
}

// Summary reads like "2/7 hosts eligible: 2 country_not_allowed, 2
// organization_not_allowed, 1 host_unregistered".
func (r *Result) Summary() string {
	var b strings.Builder
	b.WriteString(strconv.Itoa(r.Allowed))
	b.WriteByte('/')
	b.WriteString(strconv.Itoa(len(r.Verdicts)))
	b.WriteString(" hosts eligible")
	sep := ": "
	for _, reason := range Reasons() {
		if n := r.Denied(reason); n > 0 {
			b.WriteString(sep)
			b.WriteString(strconv.Itoa(n))
			b.WriteByte(' ')
			b.WriteString(string(reason))
			sep = ", "
		}
	}
	return b.String()
}

func (r *Result) add(v Verdict) {
	r.Verdicts = append(r.Verdicts, v)
	r.count(&v)
}

// count counts v, the last of r.Verdicts, in r's totals.
func (r *Result) count(v *Verdict) {
	if v.Allowed {
		r.Allowed++
	} else if i := v.Reason.index(); i >= 0 {
		r.denied[i]++
	}
}

// Evaluate decides, for a VM to which regs apply (its project's and its own
// regulation; several intersect), which candidates it may go to. A host passes
// only if it is registered and, for every regulation, every organisation
// operating it is allowed in its country by some rule. With no regulation
// every host passes, unless opts.DenyUnregulated.
func Evaluate(regs []Regulation, candidates []Candidate, opts Options) Result {
	return EvaluateInto(make([]Verdict, 0, len(candidates)), regs, candidates, opts)
}

// EvaluateInto is Evaluate writing the verdicts into buf's memory (from
// buf[:0]), for a caller that reuses it from one decision to the next.
func EvaluateInto(buf []Verdict, regs []Regulation, candidates []Candidate, opts Options) Result {
	res := Result{Verdicts: buf[:0], Regulated: len(regs) > 0}
	if len(regs) == 0 {
		for _, c := range candidates {
			if opts.DenyUnregulated {
				res.add(Verdict{Host: c.Name, Reason: VMUnregulated})
			} else {
				res.add(Verdict{Host: c.Name, Allowed: true})
			}
		}
		return res
	}
	policies := make([]policy, len(regs))
	for i := range regs {
		policies[i] = compile(&regs[i], opts.RequireAttested)
	}
	for i := range candidates {
		res.Verdicts = append(res.Verdicts, Verdict{})
		v := &res.Verdicts[len(res.Verdicts)-1]
		decide(policies, candidates[i], v)
		res.count(v)
	}
	return res
}

// Unavailable is the decision when the ledger cannot answer for the VM: every
// candidate is denied with LedgerUnavailable (fail closed).
func Unavailable(candidates []Candidate) Result {
	res := Result{Verdicts: make([]Verdict, 0, len(candidates)), Regulated: true}
	for _, c := range candidates {
		res.add(Verdict{Host: c.Name, Reason: LedgerUnavailable})
	}
	return res
}

// decide writes c's verdict into v.
func decide(policies []policy, c Candidate, v *Verdict) {
	*v = Verdict{Host: c.Name}
	if c.Host == nil {
		v.Reason = HostUnregistered
		return
	}
	h := c.Host
	for i := range policies {
		p := &policies[i]
		orgs, countryKnown := p.orgsIn(h.Country)
		if !countryKnown {
			v.Reason, v.Subject, v.Country = CountryNotAllowed, p.subject, h.Country
			return
		}
		for _, o := range h.Organizations {
			if !orgs.allows(o) && !p.anyCountry.allows(o) {
				v.Reason, v.Subject, v.Country, v.Organization = OrganizationNotAllowed, p.subject, h.Country, o
				return
			}
		}
	}
	if !c.Attested {
		for i := range policies {
			if policies[i].attested {
				v.Reason, v.Subject = HostUnattested, policies[i].subject
				if policies[i].cloud {
					v.Subject = ""
				}
				return
			}
		}
	}
	v.Allowed = true
}

// smallSet is the size up to which sets of countries and organisations are
// searched in a list: faster than hashing their short names.
const smallSet = 8

// orgSet is the organisations a rule set allows; all is true for Any.
type orgSet struct {
	all  bool
	list []string            // up to smallSet organisations
	orgs map[string]struct{} // beyond that: all of them
}

func (s *orgSet) allows(o string) bool {
	if s == nil {
		return false
	}
	if s.all {
		return true
	}
	if s.orgs != nil {
		_, ok := s.orgs[o]
		return ok
	}
	for _, x := range s.list {
		if x == o {
			return true
		}
	}
	return false
}

func (s *orgSet) add(o string) {
	switch {
	case o == Any:
		s.all = true
	case s.orgs != nil:
		s.orgs[o] = struct{}{}
	case len(s.list) < smallSet:
		s.list = append(s.list, o)
	default:
		s.orgs = make(map[string]struct{}, 2*smallSet)
		for _, x := range s.list {
			s.orgs[x] = struct{}{}
		}
		s.orgs[o] = struct{}{}
	}
}

// policy is a regulation compiled for lookups by country.
type policy struct {
	subject Subject
	// attested: the host's facts must be attested; cloud: because the
	// cloud requires it, not the regulation.
	attested, cloud bool
	anyCountry      *orgSet // rules with country Any
	// Rules naming a country: up to smallSet countries in the lists, beyond
	// that in byCountry.
	countries []string
	sets      []*orgSet
	byCountry map[string]*orgSet
}

func compile(r *Regulation, cloudAttested bool) policy {
	p := policy{subject: r.Subject, attested: r.RequireAttested || cloudAttested, cloud: cloudAttested && !r.RequireAttested}
	for _, rule := range r.Allow {
		var s *orgSet
		if rule.Country == Any {
			if p.anyCountry == nil {
				p.anyCountry = &orgSet{}
			}
			s = p.anyCountry
		} else if s = p.set(rule.Country); s == nil {
			s = &orgSet{}
			p.addCountry(rule.Country, s)
		}
		s.add(rule.Organization)
	}
	return p
}

// set returns the organisations allowed by rules naming country, or nil.
func (p *policy) set(country string) *orgSet {
	if p.byCountry != nil {
		return p.byCountry[country]
	}
	for i, c := range p.countries {
		if c == country {
			return p.sets[i]
		}
	}
	return nil
}

func (p *policy) addCountry(country string, s *orgSet) {
	switch {
	case p.byCountry != nil:
		p.byCountry[country] = s
	case len(p.countries) < smallSet:
		p.countries = append(p.countries, country)
		p.sets = append(p.sets, s)
	default:
		p.byCountry = make(map[string]*orgSet, 2*smallSet)
		for i, c := range p.countries {
			p.byCountry[c] = p.sets[i]
		}
		p.byCountry[country] = s
	}
}

// orgsIn returns the organisations allowed by rules naming country, and
// whether any rule (naming it or Any) speaks of the country at all.
func (p *policy) orgsIn(country string) (*orgSet, bool) {
	s := p.set(country)
	return s, s != nil || p.anyCountry != nil
}
