package decide

import "github.com/ledgerfence/ledgerfence/pkg/filter"

// Report is a decision as every what-if answer shows it, on the wire and in
// `ledgerctl check -o json`: POST /v1/check, the chaincode's Check, ledgerctl
// check and migrate.
type Report struct {
	InstanceUUID string `json:"instance_uuid,omitempty"`
	ProjectID    string `json:"project_id,omitempty"`
	// Regulations are the subjects whose regulations applied, in the order
	// they were applied (the VM's own, then its project's).
	Regulations []filter.Subject `json:"regulations"`
	// Regulated is false when no regulation applied.
	Regulated bool `json:"regulated"`
	// RequireAttested: hosts' facts had to be attested (a regulation or the
	// registry asked for it).
	RequireAttested bool   `json:"require_attested,omitempty"`
	LedgerHeight    uint64 `json:"ledger_height"`
	// Summary reads like "2/7 hosts eligible: 2 country_not_allowed, ...".
	Summary string `json:"summary"`
	// Allowed are the hosts that pass, in the order asked.
	Allowed []string `json:"allowed"`
	// Verdicts, one per host asked, in the order asked.
	Verdicts []Verdict `json:"verdicts"`
}

// Verdict is one host's verdict with its reason in words, and, when the
// host has a record, its facts.
type Verdict struct {
	Host    string        `json:"host"`
	Allowed bool          `json:"allowed"`
	Reason  filter.Reason `json:"reason,omitempty"`
	Detail  string        `json:"detail,omitempty"`
	// Regulation is the subject of the regulation that denied the host.
	Regulation    filter.Subject `json:"regulation,omitempty"`
	Country       string         `json:"country,omitempty"`
	Organizations []string       `json:"organizations,omitempty"`
	// Facts is "attested" when a second organisation attested the host's
	// country and organisations, "claimed" when none did (empty: no record
	// was read).
	Facts string `json:"facts,omitempty"`
}

// Facts values.
const (
	FactsAttested = "attested"
	FactsClaimed  = "claimed"
)

// View is v as Verdict shows it, without the host's facts.
func View(v filter.Verdict) Verdict {
	out := Verdict{Host: v.Host, Allowed: v.Allowed, Reason: v.Reason, Regulation: v.Subject}
	if !v.Allowed {
		out.Detail = v.Detail()
	}
	return out
}

// Report shows d, decided over candidates (with the records the resolver
// set), for the VM and project of its subjects.
func (d *Decision) Report(candidates []filter.Candidate) Report {
	r := Report{
		Regulations:     d.Regulations,
		Regulated:       d.Regulated,
		RequireAttested: d.RequireAttested,
		LedgerHeight:    d.Height,
		Summary:         d.Summary(),
		Allowed:         make([]string, 0, d.Allowed),
		Verdicts:        make([]Verdict, len(d.Verdicts)),
	}
	if r.Regulations == nil {
		r.Regulations = []filter.Subject{}
	}
	for _, s := range d.Subjects {
		switch s.Kind() {
		case filter.KindVM:
			r.InstanceUUID = s.ID()
		case filter.KindProject:
			r.ProjectID = s.ID()
		}
	}
	for i, v := range d.Verdicts {
		r.Verdicts[i] = View(v)
		if v.Allowed {
			r.Allowed = append(r.Allowed, v.Host)
		}
		if i < len(candidates) && candidates[i].Host != nil {
			r.Verdicts[i].Country = candidates[i].Host.Country
			r.Verdicts[i].Organizations = candidates[i].Host.Organizations
			r.Verdicts[i].Facts = FactsClaimed
			if candidates[i].Attested {
				r.Verdicts[i].Facts = FactsAttested
			}
		}
	}
	return r
}

// Denied returns the verdicts that denied their host.
func (r *Report) Denied() []Verdict {
	var out []Verdict
	for _, v := range r.Verdicts {
		if !v.Allowed {
			out = append(out, v)
		}
	}
	return out
}
