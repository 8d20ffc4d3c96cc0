package decide_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/ledgerfence/ledgerfence/pkg/decide"
	"github.com/ledgerfence/ledgerfence/pkg/decide/decidetest"
	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
)

func TestSubjectsOrderAndForm(t *testing.T) {
	got, err := decide.Subjects("6F1C0D3E-8B2A-4C1D-9E7F-0A1B2C3D4E5F", " A1B2C3D4E5F60718293A4B5C6D7E8F90 ")
	if err != nil {
		t.Fatal(err)
	}
	want := []filter.Subject{"vm:6f1c0d3e-8b2a-4c1d-9e7f-0a1b2c3d4e5f", "project:a1b2c3d4e5f60718293a4b5c6d7e8f90"}
	if !slices.Equal(got, want) {
		t.Errorf("subjects %v, want %v (the VM's, then its project's, canonical)", got, want)
	}
	for _, bad := range [][2]string{{"vm1", ""}, {"", "p 1"}} {
		if _, err := decide.Subjects(bad[0], bad[1]); err == nil {
			t.Errorf("Subjects(%q, %q): no error", bad[0], bad[1])
		}
	}
}

// The shared table, through the two resolvers every entry point uses
// besides filterd's cache: a ledger lookup and facts already read.
func TestCases(t *testing.T) {
	facts := decidetest.Facts()
	for _, tc := range decidetest.Cases() {
		t.Run(tc.Name, func(t *testing.T) {
			for name, r := range map[string]decide.Resolver{"facts": decide.Facts(facts), "ledger": decide.Ledger(looker(facts))} {
				cands := decide.Candidates(tc.Hosts)
				d, err := decide.Decide(context.Background(), r, nil, tc.VM, tc.Project, cands, tc.Options)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				rep := d.Report(cands)
				if err := tc.Check(rep); err != nil {
					t.Errorf("%s: %v", name, err)
				}
			}
		})
	}
}

type looker ledger.Lookup

func (l looker) Lookup(_ context.Context, subjects []filter.Subject, hosts []string) (ledger.Lookup, error) {
	out := ledger.Lookup{Height: l.Height, Regulations: map[filter.Subject]ledger.RegulationRecord{}, Hosts: map[string]ledger.HostRecord{}}
	for _, s := range subjects {
		if r, ok := l.Regulations[s]; ok {
			out.Regulations[s] = r
		}
	}
	for _, h := range hosts {
		if r, ok := l.Hosts[h]; ok {
			out.Hosts[h] = r
		}
	}
	return out, nil
}

type failing struct{}

func (failing) Resolve(context.Context, []filter.Subject, []filter.Candidate, []filter.Regulation) ([]filter.Regulation, decide.Basis, error) {
	return nil, decide.Basis{}, ledger.Errorf(ledger.ErrUnavailable, nil, "down")
}

// A resolver that cannot answer denies every host (fail closed).
func TestResolverFailureFailsClosed(t *testing.T) {
	cands := decide.Candidates([]string{"jp-a", "gb-b"})
	d, err := decide.Decide(context.Background(), failing{}, nil, decidetest.VM, "", cands, filter.Options{})
	if !errors.Is(err, ledger.ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
	if d.Allowed != 0 || len(d.Verdicts) != 2 || d.Verdicts[0].Reason != filter.LedgerUnavailable {
		t.Errorf("decision %+v, want every host ledger_unavailable", d.Result)
	}
	if _, err := decide.Decide(context.Background(), failing{}, nil, "not-a-uuid", "", cands, filter.Options{}); !errors.Is(err, ledger.ErrInvalid) {
		t.Errorf("invalid VM id: err = %v, want ErrInvalid", err)
	}
}
