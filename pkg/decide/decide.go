// Package decide is the one entry to ledgerfence's decision: which of some
// hosts a VM may go to, and why not the others. Nova's webhook, POST
// /v1/check, the chaincode's Check, the host agent's sweep, `ledgerctl
// check` and `ledgerctl migrate` all call Decide, so that they apply the
// same regulations, in the same order, with the same options, and answer in
// one shape (Report).
//
// Decide assembles the input (the VM's subjects, in Subjects' order: the
// VM's own regulation, then its project's), has a Resolver read the
// regulations and the hosts' records (filterd's cache, a ledger, or facts
// already read), and decides with pkg/filter's EvaluateInto, the pure core.
package decide

import (
	"context"
	"fmt"

	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
)

// Subjects returns the subjects whose regulations apply to a VM, in the one
// order every decision uses: the VM's own (vm:<uuid>), then its project's
// (project:<id>). An empty id adds none. The ids are validated and put in
// canonical form (filter.NormalizeUUID, filter.NormalizeProjectID).
func Subjects(instanceUUID, projectID string) ([]filter.Subject, error) {
	return AppendSubjects(nil, instanceUUID, projectID)
}

// AppendSubjects is Subjects appending to dst.
func AppendSubjects(dst []filter.Subject, instanceUUID, projectID string) ([]filter.Subject, error) {
	if instanceUUID != "" {
		u, err := filter.NormalizeUUID(instanceUUID)
		if err != nil {
			return dst, fmt.Errorf("instance_uuid: %w", err)
		}
		dst = append(dst, filter.VMSubject(u))
	}
	if projectID != "" {
		p, err := filter.NormalizeProjectID(projectID)
		if err != nil {
			return dst, fmt.Errorf("project_id: %w", err)
		}
		dst = append(dst, filter.ProjectSubject(p))
	}
	return dst, nil
}

// Resolver reads a decision's facts: the regulations of the subjects that
// have one, appended to regs in the subjects' order, and each candidate's
// record (Host set, nil for a host with none; Attested set as
// ledger.HostRecord.Attested says). It may leave the candidates alone when
// no regulation applies, since the decision then does not depend on them.
// An error means it cannot answer, and the decision fails closed; it should
// match ledger.ErrUnavailable or be ctx's.
type Resolver interface {
	Resolve(ctx context.Context, subjects []filter.Subject, candidates []filter.Candidate, regs []filter.Regulation) ([]filter.Regulation, Basis, error)
}

// Basis is what a Resolver read the facts at: the ledger's height, and the
// registry's cloud-wide setting then.
type Basis struct {
	Height uint64
	// RequireAttested: the registry requires attested host facts for every
	// regulated VM (filter.Options.RequireAttested).
	RequireAttested bool
}

// Decision is a decision with what it was made on.
type Decision struct {
	filter.Result
	// Subjects are the subjects looked up; Regulations those of them that
	// had a regulation, which applied.
	Subjects    []filter.Subject
	Regulations []filter.Subject
	// Height is the ledger height of the facts decided on.
	Height uint64
	// RequireAttested: attested host facts were required, by the caller's
	// options or the registry.
	RequireAttested bool
}

// Decide decides for the VM instanceUUID of project projectID (either may be
// empty; identifiers are normalised, and an invalid one is an error
// matching ledger.ErrInvalid) which of candidates it may go to. Verdicts
// are written into buf's memory (from buf[:0]; nil is fine), in the
// candidates' order; a repeated candidate gets one verdict each time. When r
// cannot answer, every candidate is denied with filter.LedgerUnavailable and
// r's error is returned with that decision: the caller fails closed.
func Decide(ctx context.Context, r Resolver, buf []filter.Verdict, instanceUUID, projectID string,
	candidates []filter.Candidate, opts filter.Options) (Decision, error) {
	subjects, err := Subjects(instanceUUID, projectID)
	if err != nil {
		return Decision{}, ledger.Errorf(ledger.ErrInvalid, err, err.Error())
	}
	return DecideSubjects(ctx, r, buf, subjects, nil, candidates, opts)
}

// DecideSubjects is Decide for subjects Subjects (or AppendSubjects) made,
// with regs as memory for the regulations read (from regs[:0]).
func DecideSubjects(ctx context.Context, r Resolver, buf []filter.Verdict, subjects []filter.Subject, regs []filter.Regulation,
	candidates []filter.Candidate, opts filter.Options) (Decision, error) {
	d := Decision{Subjects: subjects}
	if len(candidates) == 0 {
		d.Result = filter.EvaluateInto(buf, nil, nil, opts)
		return d, nil
	}
	regs, basis, err := r.Resolve(ctx, subjects, candidates, regs[:0])
	d.Height = basis.Height
	if err != nil {
		d.Result = filter.Unavailable(candidates)
		return d, err
	}
	for i := range regs {
		d.Regulations = append(d.Regulations, regs[i].Subject)
	}
	opts.RequireAttested = opts.RequireAttested || basis.RequireAttested
	d.RequireAttested = opts.RequireAttested
	d.Result = filter.EvaluateInto(buf, regs, candidates, opts)
	return d, nil
}

// Facts resolves from a ledger.Lookup already made (by the sweep, for many
// VMs at once, or by the chaincode from its state).
type Facts ledger.Lookup

// Resolve implements Resolver.
func (f Facts) Resolve(_ context.Context, subjects []filter.Subject, candidates []filter.Candidate, regs []filter.Regulation) ([]filter.Regulation, Basis, error) {
	for _, s := range subjects {
		if rec, ok := f.Regulations[s]; ok {
			regs = append(regs, rec.Regulation)
		}
	}
	for i := range candidates {
		candidates[i].Host, candidates[i].Attested = nil, false
		if rec, ok := f.Hosts[candidates[i].Name]; ok {
			h := rec.Host
			candidates[i].Host, candidates[i].Attested = &h, rec.Attested()
		}
	}
	return regs, Basis{Height: f.Height, RequireAttested: f.RequireAttested}, nil
}

// Looker is what Ledger needs of a ledger; every ledger.Ledger is one.
type Looker interface {
	Lookup(ctx context.Context, subjects []filter.Subject, hosts []string) (ledger.Lookup, error)
}

// Ledger resolves with one batched lookup of a ledger.
func Ledger(l Looker) Resolver { return ledgerResolver{l} }

type ledgerResolver struct{ l Looker }

func (lr ledgerResolver) Resolve(ctx context.Context, subjects []filter.Subject, candidates []filter.Candidate, regs []filter.Regulation) ([]filter.Regulation, Basis, error) {
	names := make([]string, len(candidates))
	for i := range candidates {
		names[i] = candidates[i].Name
	}
	lk, err := lr.l.Lookup(ctx, subjects, names)
	if err != nil {
		return regs, Basis{}, err
	}
	return Facts(lk).Resolve(ctx, subjects, candidates, regs)
}

// Candidates makes candidates of host names, each once, in the order
// first named.
func Candidates(names []string) []filter.Candidate {
	out := make([]filter.Candidate, 0, len(names))
	seen := make(map[string]bool, len(names))
	for _, n := range names {
		if !seen[n] {
			seen[n] = true
			out = append(out, filter.Candidate{Name: n})
		}
	}
	return out
}
