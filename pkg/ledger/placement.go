package ledger

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ledgerfence/ledgerfence/pkg/filter"
)

// Residency evidence: where VMs ran, as witnesses saw it. A placement is a
// witness's word that a VM ran on a host from a moment on (or, with no host,
// that it ran nowhere: deleted, or shelved and offloaded). The ledger records
// with each the verdict of the one decision at the moment it was recorded,
// with the versions of the regulations in force, so that a placement that
// broke the rules is recorded as such. Package residency turns placements
// into a VM's intervals and a report.

// KindPlacement is the kind of placement records and events; their key is
// PlacementKey's.
const KindPlacement Kind = "placement"

// Witnesses.
const (
	// WitnessNova: Nova's own versioned notifications, read by the recorder.
	WitnessNova = "nova"
	// WitnessHostAgent: the host agent of the host, which saw the VM there.
	WitnessHostAgent = "hostagent"
)

// Operations that place a VM. A witness that cannot tell (the host agent)
// records OpObserved.
const (
	OpBoot          = "boot"
	OpLiveMigration = "live_migration"
	OpColdMigration = "cold_migration"
	OpResize        = "resize"
	OpResizeRevert  = "resize_revert"
	OpEvacuate      = "evacuate"
	OpRebuild       = "rebuild"
	OpUnshelve      = "unshelve"
	OpShelveOffload = "shelve_offload"
	OpDeleteVM      = "delete"
	OpObserved      = "observed"
	OpGone          = "gone" // the host agent no longer sees the VM on its host
)

// PlacementOps lists every operation a placement may name.
func PlacementOps() []string {
	return []string{OpBoot, OpLiveMigration, OpColdMigration, OpResize, OpResizeRevert, OpEvacuate, OpRebuild,
		OpUnshelve, OpShelveOffload, OpDeleteVM, OpObserved, OpGone}
}

// Placement is what a witness says.
type Placement struct {
	// VM is the instance's UUID (canonical: filter.NormalizeUUID).
	VM string `json:"vm"`
	// Project is the VM's project (canonical: filter.NormalizeProjectID).
	Project string `json:"project,omitempty"`
	// Host is where the VM runs from At on; empty: it runs nowhere (deleted,
	// shelved and offloaded) or, for OpGone, no longer on the witness's host.
	Host string `json:"host,omitempty"`
	// From is the host it left, when the witness says.
	From string `json:"from,omitempty"`
	// Op is one of PlacementOps.
	Op string `json:"op"`
	// At is when it happened, by the witness's clock (Nova's event time).
	At time.Time `json:"at"`
	// RequestID is Nova's request id, when known.
	RequestID string `json:"request_id,omitempty"`
	// DecisionID is filterd's decision for the move, when there was one.
	DecisionID string `json:"decision_id,omitempty"`
	// Witness is WitnessNova or WitnessHostAgent.
	Witness string `json:"witness"`
	// Ref identifies the witness's evidence (Nova's message id, the host
	// agent's sweep): a placement recorded again with the same witness and
	// Ref changes nothing.
	Ref string `json:"ref"`
}

// RegulationVersion names a regulation as it was: its subject and version.
type RegulationVersion struct {
	Subject filter.Subject `json:"subject"`
	Version uint64         `json:"version"`
}

// PlacementVerdict is the one decision for a placement's host at the moment
// it was recorded.
type PlacementVerdict struct {
	Allowed bool          `json:"allowed"`
	Reason  filter.Reason `json:"reason,omitempty"`
	Detail  string        `json:"detail,omitempty"`
	// Regulation is the regulation that denied the host.
	Regulation filter.Subject `json:"regulation,omitempty"`
	// Regulations are the regulations in force, with their versions.
	Regulations []RegulationVersion `json:"regulations"`
	// The host's facts then.
	Country       string   `json:"country,omitempty"`
	Organizations []string `json:"organizations,omitempty"`
	Attested      bool     `json:"attested,omitempty"`
}

// PlacementRecord is a placement as stored.
type PlacementRecord struct {
	Placement
	// Verdict is nil for a placement on no host.
	Verdict    *PlacementVerdict `json:"verdict,omitempty"`
	Writer     Writer            `json:"writer"`
	TxID       string            `json:"tx_id"`
	RecordedAt time.Time         `json:"recorded_at"`
}

// Residency is what a ledger offers of placements. Every backend implements
// it.
type Residency interface {
	// RecordPlacement records p with the verdict of the one decision now.
	// A placement recorded before (same VM, witness and Ref) is not recorded
	// again: changed is false and the stored record is returned.
	RecordPlacement(ctx context.Context, p Placement) (rec PlacementRecord, changed bool, err error)
	// Placements returns the placements of a VM (vm set) or of the VMs of a
	// project (project set) whose At is in [from, to), ordered by VM, then
	// At, then witness, at most limit of them (0: MaxPlacements).
	Placements(ctx context.Context, q PlacementQuery) ([]PlacementRecord, error)
}

// PlacementQuery selects placements.
type PlacementQuery struct {
	VM      string
	Project string
	From    time.Time
	To      time.Time
	Limit   int
}

// MaxPlacements bounds the placements one query returns.
const MaxPlacements = 100_000

// Bounds of a placement's text fields.
const (
	maxRefLen       = 256
	maxRequestIDLen = 256
)

// NormalizePlacement validates p and returns it in canonical form: the VM's
// UUID and the project id as filter normalises them, At in UTC.
func NormalizePlacement(p Placement) (Placement, error) {
	bad := func(format string, args ...any) (Placement, error) {
		return Placement{}, Errorf(ErrInvalid, nil, fmt.Sprintf("placement: "+format, args...))
	}
	vm, err := filter.NormalizeUUID(p.VM)
	if err != nil {
		return bad("vm: %v", err)
	}
	p.VM = vm
	if p.Project != "" {
		if p.Project, err = filter.NormalizeProjectID(p.Project); err != nil {
			return bad("project: %v", err)
		}
	}
	for _, h := range []*string{&p.Host, &p.From} {
		if *h != "" {
			if err := filter.ValidateHostName(*h); err != nil {
				return bad("%v", err)
			}
		}
	}
	if !slices.Contains(PlacementOps(), p.Op) {
		return bad("op %q: want one of %s", filter.Clip(p.Op), strings.Join(PlacementOps(), ", "))
	}
	switch p.Op {
	case OpDeleteVM, OpShelveOffload, OpGone:
		if p.Host != "" {
			return bad("%s places the VM on no host; host %s given", p.Op, p.Host)
		}
	default:
		if p.Host == "" {
			return bad("%s needs the host the VM runs on", p.Op)
		}
	}
	if p.Witness != WitnessNova && p.Witness != WitnessHostAgent {
		return bad("witness %q: want %s or %s", filter.Clip(p.Witness), WitnessNova, WitnessHostAgent)
	}
	if p.At.IsZero() || p.At.Year() < 2000 || p.At.Year() > 9999 {
		return bad("at: a time between the years 2000 and 9999 is needed")
	}
	p.At = p.At.UTC()
	if p.Ref == "" || len(p.Ref) > maxRefLen || !printable(p.Ref) {
		return bad("ref: 1 to %d printable characters are needed", maxRefLen)
	}
	for _, f := range []struct{ name, v string }{{"request_id", p.RequestID}, {"decision_id", p.DecisionID}} {
		if len(f.v) > maxRequestIDLen || !printable(f.v) {
			return bad("%s: at most %d printable characters", f.name, maxRequestIDLen)
		}
	}
	return p, nil
}

func printable(s string) bool {
	for _, c := range s {
		if c < 0x20 || c == 0x7f || c == utf8.RuneError {
			return false
		}
	}
	return true
}
