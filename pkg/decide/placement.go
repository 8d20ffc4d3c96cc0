package decide

import (
	"context"

	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
)

// PlacementVerdict is the one decision for a placement's host, from facts
// read for it (the regulations of the VM and its project, the host's
// record; PlacementSubjects says which): what the ledger records with the
// placement. A placement on no host has none (nil).
func PlacementVerdict(facts ledger.Lookup, p ledger.Placement, opts filter.Options) (*ledger.PlacementVerdict, error) {
	if p.Host == "" {
		return nil, nil
	}
	subjects, err := PlacementSubjects(p)
	if err != nil {
		return nil, err
	}
	candidates := []filter.Candidate{{Name: p.Host}}
	d, err := DecideSubjects(context.Background(), Facts(facts), nil, subjects, nil, candidates, opts)
	if err != nil {
		return nil, err
	}
	v := d.Verdicts[0]
	out := &ledger.PlacementVerdict{Allowed: v.Allowed, Reason: v.Reason, Regulation: v.Subject, Regulations: []ledger.RegulationVersion{}}
	if !v.Allowed {
		out.Detail = v.Detail()
	}
	for _, s := range d.Regulations {
		out.Regulations = append(out.Regulations, ledger.RegulationVersion{Subject: s, Version: facts.Regulations[s].Version})
	}
	if h := candidates[0].Host; h != nil {
		out.Country, out.Organizations, out.Attested = h.Country, h.Organizations, candidates[0].Attested
	}
	return out, nil
}

// PlacementSubjects are the subjects whose regulations apply to a
// placement's VM: its own, then its project's.
func PlacementSubjects(p ledger.Placement) ([]filter.Subject, error) {
	s, err := Subjects(p.VM, p.Project)
	if err != nil {
		return nil, ledger.Errorf(ledger.ErrInvalid, err, err.Error())
	}
	return s, nil
}
