package notify

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/ledgerfence/ledgerfence/pkg/filter"
)

// MaxBodyLen bounds the message body Parse reads. Nova's instance
// notifications are a few kilobytes; metadata, addresses and block devices
// at Nova's own limits stay well under it.
const MaxBodyLen = 1 << 20

// maxIDLen bounds message ids, request ids and event types.
const maxIDLen = 128

var (
	// ErrMalformed: the body is not a Nova notification Parse can trust.
	ErrMalformed = errors.New("notify: malformed notification")
	// ErrTooLarge: the body is longer than MaxBodyLen.
	ErrTooLarge = errors.New("notify: message body too large")
)

// Op is the Nova operation a Move belongs to.
type Op string

// Operations. A cold migration is OpResize: Nova's notifications do not tell
// it from a resize.
const (
	OpBoot          Op = "boot"
	OpLiveMigration Op = "live_migration"
	OpResize        Op = "resize"
	OpResizeRevert  Op = "resize_revert"
	OpEvacuate      Op = "evacuate"
	OpRebuild       Op = "rebuild"
	OpUnshelve      Op = "unshelve"
	OpShelveOffload Op = "shelve_offload"
	OpDelete        Op = "delete"
)

// Ops lists every operation, in a fixed order.
func Ops() []Op {
	return []Op{OpBoot, OpLiveMigration, OpResize, OpResizeRevert, OpEvacuate, OpRebuild,
		OpUnshelve, OpShelveOffload, OpDelete}
}

// State says what a Move tells of the VM's host after the event.
type State string

const (
	// StateOnHost: the VM runs on Host.
	StateOnHost State = "on_host"
	// StateLeft: the VM has left HostBefore; another notification names the
	// host it runs on, and may have come first (a live migration's source
	// reports after its destination).
	StateLeft State = "left"
	// StateNoHost: the VM runs on no host: deleted, or shelved and offloaded.
	StateNoHost State = "no_host"
)

// Move is one notification that tells where a VM runs.
type Move struct {
	VM      string // instance uuid, canonical (8-4-4-4-12, lower case)
	Project string // project id, canonical
	Op      Op
	State   State
	// Host is the host the VM runs on after the event; set only when State
	// is StateOnHost.
	Host string
	// HostBefore is the host the VM left or ran on before, where the
	// notification says it; it may be empty, and may equal Host (a resize on
	// one host).
	HostBefore string

	RequestID       string    // Nova's request id (req-<uuid>), "" when none was sent
	GlobalRequestID string    // the caller's request id across services, "" when none
	Time            time.Time // when oslo.messaging sent the notification (UTC)
	UpdatedAt       time.Time // the instance record's updated_at, zero when absent

	MessageID string // oslo.messaging's message_id: the same for a redelivery
	EventType string // e.g. "instance.live_migration_post_dest.end"
	Publisher string // publisher_id, e.g. "nova-compute:hm2"
}

// SkipReason says why a well-formed notification places no VM. The set is
// closed, fit for metric labels.
type SkipReason string

const (
	// SkipEventType: an event type that does not say where a VM runs.
	SkipEventType SkipReason = "event_type"
	// SkipUnversioned: a legacy (unversioned) notification; Nova must send
	// versioned ones ([notifications] notification_format).
	SkipUnversioned SkipReason = "unversioned"
)

// Skip is a well-formed notification that places no VM.
type Skip struct {
	Reason    SkipReason
	EventType string
	MessageID string
}

// Result is what Parse read: exactly one of Move and Skip is set.
type Result struct {
	Move *Move
	Skip *Skip
}

// message is oslo.messaging's notification, possibly inside its envelope.
type message struct {
	OsloVersion *string `json:"oslo.version"`
	OsloMessage *string `json:"oslo.message"`

	MessageID       string          `json:"message_id"`
	PublisherID     string          `json:"publisher_id"`
	EventType       string          `json:"event_type"`
	Timestamp       string          `json:"timestamp"`
	Payload         json.RawMessage `json:"payload"`
	RequestID       string          `json:"_context_request_id"`
	GlobalRequestID string          `json:"_context_global_request_id"`
}

// payload is a Nova versioned object holding an instance.
type payload struct {
	Namespace string    `json:"nova_object.namespace"`
	Version   string    `json:"nova_object.version"`
	Data      *instance `json:"nova_object.data"`
}

type instance struct {
	UUID      string  `json:"uuid"`
	TenantID  string  `json:"tenant_id"`
	Host      *string `json:"host"`
	RequestID string  `json:"request_id"`
	UpdatedAt string  `json:"updated_at"`
}

// hostFrom says where a rule finds a host.
type hostFrom uint8

const (
	fromNone      hostFrom = iota
	fromPayload            // the instance's host
	fromPublisher          // the nova-compute that sent the notification
)

type rule struct {
	op     Op
	state  State
	host   hostFrom
	before hostFrom
}

// rules maps each event type read to what it says (the table in the package
// comment).
var rules = map[string]rule{
	"instance.create.end":                   {OpBoot, StateOnHost, fromPayload, fromNone},
	"instance.live_migration_post_dest.end": {OpLiveMigration, StateOnHost, fromPayload, fromNone},
	"instance.live_migration_post.end":      {OpLiveMigration, StateLeft, fromNone, fromPayload},
	"instance.resize_finish.end":            {OpResize, StateOnHost, fromPayload, fromNone},
	"instance.resize_confirm.end":           {OpResize, StateOnHost, fromPayload, fromPublisher},
	"instance.resize_revert.end":            {OpResizeRevert, StateOnHost, fromPayload, fromNone},
	"instance.evacuate":                     {OpEvacuate, StateLeft, fromNone, fromPayload},
	"instance.rebuild.end":                  {OpRebuild, StateOnHost, fromPayload, fromNone},
	"instance.unshelve.end":                 {OpUnshelve, StateOnHost, fromPayload, fromNone},
	"instance.shelve_offload.end":           {OpShelveOffload, StateNoHost, fromNone, fromPublisher},
	"instance.delete.end":                   {OpDelete, StateNoHost, fromNone, fromPayload},
}

// EventTypes lists the event types Parse reads as moves, sorted.
func EventTypes() []string {
	return slices.Sorted(maps.Keys(rules))
}

// Parse reads one AMQP message body as oslo.messaging publishes it. It
// returns a Result holding a Move, or a Skip for a well-formed notification
// that places no VM. The error wraps ErrTooLarge for a body over
// MaxBodyLen and ErrMalformed for anything else it cannot read; its text
// repeats at most filter.ClipLen bytes of any value from the body.
func Parse(body []byte) (Result, error) {
	if len(body) > MaxBodyLen {
		return Result{}, fmt.Errorf("%w: %d bytes, more than %d", ErrTooLarge, len(body), MaxBodyLen)
	}
	var m message
	if err := json.Unmarshal(body, &m); err != nil {
		return Result{}, malformed("body: %s", filter.Clip(err.Error()))
	}
	if m.OsloVersion != nil || m.OsloMessage != nil {
		if m.OsloVersion == nil || *m.OsloVersion != "2.0" {
			return Result{}, malformed("oslo envelope: version %q, want \"2.0\"", clipPtr(m.OsloVersion))
		}
		if m.OsloMessage == nil {
			return Result{}, malformed("oslo envelope without oslo.message")
		}
		inner := []byte(*m.OsloMessage)
		m = message{}
		if err := json.Unmarshal(inner, &m); err != nil {
			return Result{}, malformed("oslo.message: %s", filter.Clip(err.Error()))
		}
		if m.OsloVersion != nil || m.OsloMessage != nil {
			return Result{}, malformed("oslo envelope inside an oslo envelope")
		}
	}
	return m.read()
}

func (m *message) read() (Result, error) {
	if err := checkID("event_type", m.EventType); err != nil {
		return Result{}, err
	}
	if err := checkID("message_id", m.MessageID); err != nil {
		return Result{}, err
	}
	r, ok := rules[m.EventType]
	if !ok {
		reason := SkipEventType
		if strings.HasPrefix(m.EventType, "compute.instance.") {
			reason = SkipUnversioned
		}
		return Result{Skip: &Skip{Reason: reason, EventType: m.EventType, MessageID: m.MessageID}}, nil
	}
	mv := &Move{Op: r.op, State: r.state, MessageID: m.MessageID, EventType: m.EventType}
	t, err := parseTime(m.Timestamp)
	if err != nil {
		return Result{}, malformed("timestamp: %v", err)
	}
	mv.Time = t
	if len(m.PublisherID) > maxIDLen {
		return Result{}, malformed("publisher_id %q: longer than %d", filter.Clip(m.PublisherID), maxIDLen)
	}
	mv.Publisher = m.PublisherID
	if len(m.Payload) == 0 || bytes.Equal(m.Payload, []byte("null")) {
		return Result{}, malformed("%s without a payload", m.EventType)
	}
	var p payload
	if err := json.Unmarshal(m.Payload, &p); err != nil {
		return Result{}, malformed("payload: %s", filter.Clip(err.Error()))
	}
	if p.Data == nil {
		return Result{}, malformed("%s: payload is not a Nova versioned object (no nova_object.data)", m.EventType)
	}
	if p.Namespace != "nova" {
		return Result{}, malformed("payload namespace %q, want \"nova\"", filter.Clip(p.Namespace))
	}
	if major, _, _ := strings.Cut(p.Version, "."); major != "1" {
		return Result{}, malformed("payload version %q: only 1.x is read", filter.Clip(p.Version))
	}
	d := p.Data
	if mv.VM, err = filter.NormalizeUUID(d.UUID); err != nil {
		return Result{}, malformed("instance uuid: %v", err)
	}
	if mv.Project, err = filter.NormalizeProjectID(d.TenantID); err != nil {
		return Result{}, malformed("tenant_id: %s", filter.Clip(err.Error()))
	}
	if d.UpdatedAt != "" {
		if mv.UpdatedAt, err = parseTime(d.UpdatedAt); err != nil {
			return Result{}, malformed("updated_at: %v", err)
		}
	}
	mv.RequestID = m.RequestID
	if mv.RequestID == "" {
		mv.RequestID = d.RequestID
	}
	if mv.RequestID != "" {
		if err := checkID("request_id", mv.RequestID); err != nil {
			return Result{}, err
		}
	}
	if m.GlobalRequestID != "" {
		if err := checkID("global_request_id", m.GlobalRequestID); err != nil {
			return Result{}, err
		}
		mv.GlobalRequestID = m.GlobalRequestID
	}
	payloadHost := ""
	if d.Host != nil {
		payloadHost = *d.Host
	}
	if mv.Host, err = hostOf(r.host, payloadHost, m.PublisherID); err != nil {
		return Result{}, err
	}
	if mv.HostBefore, err = hostOf(r.before, payloadHost, m.PublisherID); err != nil {
		return Result{}, err
	}
	switch {
	case r.state == StateOnHost && mv.Host == "":
		return Result{}, malformed("%s names no host", m.EventType)
	case r.state == StateLeft && mv.HostBefore == "":
		return Result{}, malformed("%s names no host the VM left", m.EventType)
	}
	return Result{Move: mv}, nil
}

// hostOf returns the host a rule reads: the payload's, or the publisher's
// when a nova-compute sent it; "" when there is none.
func hostOf(from hostFrom, payloadHost, publisher string) (string, error) {
	var h string
	switch from {
	case fromPayload:
		h = payloadHost
	case fromPublisher:
		service, host, ok := strings.Cut(publisher, ":")
		if !ok || service != "nova-compute" {
			return "", nil
		}
		h = host
	}
	if h == "" {
		return "", nil
	}
	if err := filter.ValidateHostName(h); err != nil {
		return "", malformed("%s", filter.Clip(err.Error()))
	}
	return h, nil
}

// checkID checks an identifier Nova or oslo.messaging made: 1 to maxIDLen
// bytes of [A-Za-z0-9._:-].
func checkID(field, s string) error {
	if s == "" {
		return malformed("no %s", field)
	}
	if len(s) > maxIDLen {
		return malformed("%s %q: longer than %d", field, filter.Clip(s), maxIDLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '.' || c == '_' || c == '-' || c == ':') {
			return malformed("%s %q: a character outside [A-Za-z0-9._:-]", field, filter.Clip(s))
		}
	}
	return nil
}

// timeLayouts are the forms of oslo.messaging's timestamp (Python's
// str(datetime), UTC without a zone) and of Nova's DateTimeField (ISO 8601
// with a zone).
var timeLayouts = []string{
	"2006-01-02 15:04:05.999999999",
	time.RFC3339Nano,
	"2006-01-02T15:04:05.999999999",
	"2006-01-02 15:04:05.999999999Z07:00",
}

// parseTime reads a time in one of timeLayouts; one without a zone is UTC.
func parseTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, errors.New("absent")
	}
	if len(s) > 64 {
		return time.Time{}, fmt.Errorf("%q is not a time", filter.Clip(s))
	}
	for _, l := range timeLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not a time", s)
}

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
}

func clipPtr(s *string) string {
	if s == nil {
		return ""
	}
	return filter.Clip(*s)
}
