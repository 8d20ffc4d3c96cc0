package notify

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nuid"

	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
)

// Version is the version of every payload this package writes, in the field "v".
const Version = 1

// The subjects.
const (
	SubjectDecisionDenied = "ledgerfence.decision.denied"
	SubjectLedgerChanged  = "ledgerfence.ledger.changed"
	SubjectViolation      = "ledgerfence.violation"
)

// Subjects lists every subject, in a fixed order (for metrics).
func Subjects() []string {
	return []string{SubjectDecisionDenied, SubjectLedgerChanged, SubjectViolation, SubjectLedgerHead, SubjectPlacementDiscrepancy}
}

// Event is a payload that can be published.
type Event interface {
	// Subject is the NATS subject the event is published on.
	Subject() string
	// MsgID identifies the event for JetStream's duplicate detection.
	MsgID() string
}

var (
	_ Event = DecisionDenied{}
	_ Event = LedgerChanged{}
	_ Event = Violation{}
)

// Decision is what filterd knows of a webhook request besides the verdicts.
type Decision struct {
	// ID is filterd's decision id (the X-Ledgerfence-Decision header).
	ID string
	// RequestID is Nova's request id.
	RequestID    string
	Instance     string
	Project      string
	Operation    string
	LedgerHeight uint64
	Time         time.Time
}

// DeniedHost is one host a decision removed.
type DeniedHost struct {
	Host   string        `json:"host"`
	Reason filter.Reason `json:"reason"`
	// Detail says why in words.
	Detail string `json:"detail"`
	// Regulation is the subject of the regulation that denied the host,
	// when one did.
	Regulation filter.Subject `json:"regulation,omitempty"`
}

// DecisionDenied is the payload of ledgerfence.decision.denied: a webhook
// decision that removed at least one candidate host.
type DecisionDenied struct {
	V          int    `json:"v"`
	DecisionID string `json:"decision_id"`
	RequestID  string `json:"request_id,omitempty"`
	Instance   string `json:"instance_uuid"`
	Project    string `json:"project_id,omitempty"`
	Operation  string `json:"operation"`
	// Candidates is how many hosts Nova asked about; Allowed how many passed.
	Candidates int          `json:"candidates"`
	Allowed    int          `json:"allowed"`
	Denied     []DeniedHost `json:"denied"`
	// Summary reads like "1/3 hosts eligible: 2 country_not_allowed".
	Summary      string    `json:"summary"`
	LedgerHeight uint64    `json:"ledger_height"`
	Time         time.Time `json:"time"`
	// Outcome and Error are set when filterd could not decide the request
	// at all (Denied is then empty): the webhook outcome (request_invalid,
	// overloaded, unauthorized) and why.
	Outcome string `json:"outcome,omitempty"`
	Error   string `json:"error,omitempty"`
}

// Subject implements Event.
func (DecisionDenied) Subject() string { return SubjectDecisionDenied }

// MsgID implements Event: the decision id.
func (d DecisionDenied) MsgID() string { return "decision:" + d.DecisionID }

// NewDecisionDenied builds the event for a decision. ok is false when the
// decision denied no host, and nothing should be published.
func NewDecisionDenied(d Decision, res *filter.Result) (ev DecisionDenied, ok bool) {
	ev = DecisionDenied{
		V:            Version,
		DecisionID:   d.ID,
		RequestID:    d.RequestID,
		Instance:     d.Instance,
		Project:      d.Project,
		Operation:    d.Operation,
		Candidates:   len(res.Verdicts),
		Allowed:      res.Allowed,
		Summary:      res.Summary(),
		LedgerHeight: d.LedgerHeight,
		Time:         d.Time.UTC(),
		Denied:       make([]DeniedHost, 0, len(res.Verdicts)-res.Allowed),
	}
	for _, v := range res.Verdicts {
		if v.Allowed {
			continue
		}
		ev.Denied = append(ev.Denied, DeniedHost{Host: v.Host, Reason: v.Reason, Detail: v.Detail(), Regulation: v.Subject})
	}
	return ev, len(ev.Denied) > 0
}

// NewDecisionFailed builds the event for a request filterd could not
// decide: none of its hosts (Candidates of them, when they could be read)
// passed, for the reason outcome says and why explains.
func NewDecisionFailed(d Decision, outcome, why string, candidates int) DecisionDenied {
	return DecisionDenied{
		V:            Version,
		DecisionID:   d.ID,
		RequestID:    d.RequestID,
		Instance:     d.Instance,
		Project:      d.Project,
		Operation:    d.Operation,
		Candidates:   candidates,
		Denied:       []DeniedHost{},
		Summary:      "0 hosts eligible: " + outcome,
		LedgerHeight: d.LedgerHeight,
		Time:         d.Time.UTC(),
		Outcome:      outcome,
		Error:        why,
	}
}

// LedgerChanged is the payload of ledgerfence.ledger.changed: one write to
// the ledger. Host or Regulation holds the value written (neither for a
// delete).
type LedgerChanged struct {
	V          int                `json:"v"`
	Kind       ledger.Kind        `json:"kind"`
	Key        string             `json:"key"`
	Op         ledger.Op          `json:"op"`
	TxID       string             `json:"tx_id"`
	Block      uint64             `json:"block"`
	Writer     ledger.Writer      `json:"writer"`
	Time       time.Time          `json:"time"`
	Host       *filter.Host       `json:"host,omitempty"`
	Regulation *filter.Regulation `json:"regulation,omitempty"`
}

// Subject implements Event.
func (LedgerChanged) Subject() string { return SubjectLedgerChanged }

// MsgID implements Event: the transaction id with what it changed, the same
// in every filterd replica that sees the change.
func (c LedgerChanged) MsgID() string {
	return "ledger:" + c.TxID + ":" + string(c.Kind) + ":" + c.Key
}

// NewLedgerChanged builds the event for a ledger event.
func NewLedgerChanged(e ledger.Event) LedgerChanged {
	c := LedgerChanged{
		V:      Version,
		Kind:   e.Kind,
		Key:    e.Key,
		Op:     e.Op,
		TxID:   e.TxID,
		Block:  e.Block,
		Writer: e.Writer,
		Time:   e.Time.UTC(),
	}
	if e.Host != nil {
		h := e.Host.Host
		c.Host = &h
	}
	if e.Regulation != nil {
		r := e.Regulation.Regulation
		c.Regulation = &r
	}
	return c
}

// Violation is the payload of ledgerfence.violation: a VM found by a host
// agent's sweep on a host that its regulations forbid.
type Violation struct {
	V int `json:"v"`
	// ID identifies this report; NewViolation makes a unique one.
	ID       string        `json:"id"`
	Host     string        `json:"host"`
	Instance string        `json:"instance_uuid"`
	Project  string        `json:"project_id,omitempty"`
	Reason   filter.Reason `json:"reason"`
	Detail   string        `json:"detail"`
	// Regulation is the subject of the regulation the host breaks.
	Regulation filter.Subject `json:"regulation,omitempty"`
	Time       time.Time      `json:"time"`
}

// Subject implements Event.
func (Violation) Subject() string { return SubjectViolation }

// MsgID implements Event: the report's id.
func (v Violation) MsgID() string { return "violation:" + v.ID }

// NewViolation builds the report that the VM instance of project runs on a
// host that verdict denies.
func NewViolation(instance, project string, verdict filter.Verdict, t time.Time) Violation {
	return Violation{
		V:          Version,
		ID:         nuid.Next(),
		Host:       verdict.Host,
		Instance:   instance,
		Project:    project,
		Reason:     verdict.Reason,
		Detail:     verdict.Detail(),
		Regulation: verdict.Subject,
		Time:       t.UTC(),
	}
}

// Errors of Decode.
var (
	ErrMalformed = errors.New("notify: malformed payload")
	ErrVersion   = errors.New("notify: unknown payload version")
)

// Decode reads a payload of type T (DecisionDenied, LedgerChanged or
// Violation). It refuses a version other than Version.
func Decode[T Event](data []byte) (T, error) {
	var ev T
	var head struct {
		V *int `json:"v"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return ev, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if head.V == nil {
		return ev, fmt.Errorf("%w: no \"v\" field", ErrMalformed)
	}
	if *head.V != Version {
		return ev, fmt.Errorf("%w: %d", ErrVersion, *head.V)
	}
	if err := json.Unmarshal(data, &ev); err != nil {
		return ev, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return ev, nil
}
