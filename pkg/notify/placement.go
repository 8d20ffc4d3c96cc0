package notify

import (
	"time"

	"github.com/ledgerfence/ledgerfence/pkg/residency"
)

// SubjectPlacementDiscrepancy carries placements that one witness recorded
// and the other did not confirm in time.
const SubjectPlacementDiscrepancy = "ledgerfence.placement.discrepancy"

var _ Event = PlacementDiscrepancy{}

// PlacementDiscrepancy is the payload of ledgerfence.placement.discrepancy:
// a placement on a host that Nova's notifications recorded and the host's
// agent did not confirm within the bound (kind not_confirmed), or that the
// host agent saw where Nova never placed the VM (kind host_agent_only).
type PlacementDiscrepancy struct {
	V        int       `json:"v"`
	Kind     string    `json:"kind"`
	Detail   string    `json:"detail"`
	Instance string    `json:"instance_uuid"`
	Project  string    `json:"project_id,omitempty"`
	Host     string    `json:"host"`
	Op       string    `json:"op"`
	Witness  string    `json:"witness"`
	At       time.Time `json:"at"`
	TxID     string    `json:"tx_id"`
	Ref      string    `json:"ref"`
}

// Subject implements Event.
func (PlacementDiscrepancy) Subject() string { return SubjectPlacementDiscrepancy }

// MsgID implements Event: the placement's transaction.
func (d PlacementDiscrepancy) MsgID() string { return "discrepancy:" + d.TxID + ":" + d.Ref }

// NewPlacementDiscrepancy builds the event of a discrepancy.
func NewPlacementDiscrepancy(d residency.Discrepancy) PlacementDiscrepancy {
	p := d.Placement
	return PlacementDiscrepancy{
		V: Version, Kind: d.Label(), Detail: d.Kind, Instance: p.VM, Project: p.Project, Host: p.Host,
		Op: p.Op, Witness: p.Witness, At: p.At, TxID: p.TxID, Ref: p.Ref,
	}
}
