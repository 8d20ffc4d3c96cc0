// Package nova holds the wire types of Nova's external-scheduler webhook, the
// format of SAP's Nova fork and of cobaltcore-dev/cortex, which ledgerfence's
// Python filter for upstream Nova sends too.
//
// Decoding is tolerant where Nova is loose (scheduler hints as a string or a
// list, nulls, unknown fields) and strict where a mistake would be unsafe
// (the instance UUID, the host list). The weights Nova sends and each
// host's hypervisor_hostname, which ledgerfence does not read, are not
// decoded: as unknown fields, they are checked as JSON and nothing more.
package nova

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Path is where the webhook is served.
const Path = "/scheduler/nova/external"

// Operations, as sent in the scheduler hint _nova_check_type. OpCreate is
// used when the hint is absent (a boot).
const (
	OpCreate      = "create"
	OpLiveMigrate = "live_migrate"
	OpMigrate     = "migrate"
	OpResize      = "resize"
	OpEvacuate    = "evacuate"
	OpUnshelve    = "unshelve"
	OpRebuild     = "rebuild"
	OpOther       = "other"
)

// Operations lists every operation label, in a fixed order.
func Operations() []string {
	return []string{OpCreate, OpLiveMigrate, OpMigrate, OpResize, OpEvacuate, OpUnshelve, OpRebuild, OpOther}
}

// Host is one candidate host of a request.
type Host struct {
	Host string `json:"host"`
}

// Request is the body Nova posts.
type Request struct {
	Spec    Spec    `json:"spec"`
	Context Context `json:"context"`
	Hosts   []Host  `json:"hosts"`
	Rebuild bool    `json:"rebuild"`
	Resize  bool    `json:"resize"`
	Live    bool    `json:"live"`
	VMware  bool    `json:"vmware"`
}

// Spec is a RequestSpec as a nova_object primitive.
type Spec struct {
	Name string   `json:"nova_object.name"`
	Data SpecData `json:"nova_object.data"`
}

// SpecData is the part of a RequestSpec ledgerfence reads.
type SpecData struct {
	InstanceUUID     string `json:"instance_uuid"`
	ProjectID        string `json:"project_id"`
	UserID           string `json:"user_id"`
	AvailabilityZone string `json:"availability_zone"`
	NumInstances     int    `json:"num_instances"`
	SchedulerHints   Hints  `json:"scheduler_hints"`
}

// Context is the part of Nova's RequestContext ledgerfence reads.
type Context struct {
	RequestID       string `json:"request_id"`
	GlobalRequestID string `json:"global_request_id"`
	UserID          string `json:"user_id"`
	ProjectID       string `json:"project_id"`
}

// Hints are scheduler hints. Nova sends each value as a list; single strings
// and nulls are accepted too.
type Hints map[string][]string

// UnmarshalJSON accepts string, list (of strings or scalars) and null values.
func (h *Hints) UnmarshalJSON(b []byte) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	out := make(Hints, len(raw))
	for k, v := range raw {
		v = bytes.TrimSpace(v)
		switch {
		case len(v) == 0 || bytes.Equal(v, []byte("null")):
			continue
		case v[0] == '[':
			var items []json.RawMessage
			if err := json.Unmarshal(v, &items); err != nil {
				return err
			}
			for _, it := range items {
				if s, ok := scalar(it); ok {
					out[k] = append(out[k], s)
				}
			}
		default:
			if s, ok := scalar(v); ok {
				out[k] = []string{s}
			}
		}
	}
	*h = out
	return nil
}

func scalar(v json.RawMessage) (string, bool) {
	var s string
	if err := json.Unmarshal(v, &s); err == nil {
		return s, true
	}
	v = bytes.TrimSpace(v)
	if len(v) == 0 || v[0] == '{' || v[0] == '[' || bytes.Equal(v, []byte("null")) {
		return "", false
	}
	return string(v), true
}

// First returns the first value of a hint.
func (h Hints) First(key string) string {
	if v := h[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// Errors of Decode; their text is safe to show to Nova.
var (
	ErrMalformed       = errors.New("nova: malformed request")
	ErrMissingInstance = errors.New("nova: spec has no instance_uuid")
)

// Decode reads and validates a request body. The instance UUID is normalised
// to lower case; candidate hosts must each have a host name.
//
// Decode takes one pass over the body (fastDecode) that fills every field
// of Request, checks what it skips as encoding/json would, and answers only
// when it is sure to answer as encoding/json does. Anything unusual (a
// syntax or type error, a key that differs from a field name only in case,
// a repeated field, an escaped field name, deep nesting, a missing instance
// or host name) goes to decodeStd, Decode through encoding/json, so errors
// and edge cases are decodeStd's. FuzzDecodeNova checks that the two answer
// every body alike.
func Decode(body []byte) (Request, error) {
	var d Decoder
	return d.Decode(body)
}

// Decoder decodes requests as Decode does, keeping its memory from one
// request to the next: the list of hosts, and the host names it returned,
// so that decoding the hosts a cloud sends again and again allocates
// nothing for their names (it returns the same string for a name it
// returned before). It tells which hosts of a request repeat an earlier
// one (Repeated). The zero Decoder is ready for use; a Decoder is not safe
// for concurrent use.
type Decoder struct {
	hosts    []Host
	names    names
	repeated []bool
}

// MaxInterned and MaxInternedBytes bound the names a Decoder keeps from one
// request to the next: in number, and in bytes (names of any length can be
// sent).
const (
	MaxInterned      = 32_768
	MaxInternedBytes = 1 << 20
)

// Repeated reports whether host i of the request d decoded last has the
// name of a host before it.
func (d *Decoder) Repeated(i int) bool { return i < len(d.repeated) && d.repeated[i] }

// Capacity is how many hosts d's memory holds, for a caller that bounds
// what it keeps.
func (d *Decoder) Capacity() int { return cap(d.hosts) }

// Decode is the package's Decode, with d's memory. The Hosts slice of the
// Request it returns is d's memory, valid until d's next Decode; the strings
// in it stay valid.
func (d *Decoder) Decode(body []byte) (Request, error) {
	if r, ok := fastDecode(body, d); ok {
		return r, nil
	}
	d.repeated = d.repeated[:0]
	r, err := decodeStd(body)
	if err != nil {
		return Request{}, err
	}
	d.names.next() // the fast path may have seen some of the hosts
	for i := range r.Hosts {
		var rep bool
		r.Hosts[i].Host, rep = d.names.hostString(r.Hosts[i].Host)
		d.repeated = append(d.repeated, rep)
	}
	return r, nil
}

// decodeStd is Decode through encoding/json.
func decodeStd(body []byte) (Request, error) {
	var r Request
	if err := json.Unmarshal(body, &r); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return Request{}, fmt.Errorf("%w: field %q has the wrong type (got %s)", ErrMalformed, te.Field, te.Value)
		}
		return Request{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if r.Spec.Data.InstanceUUID == "" {
		return Request{}, ErrMissingInstance
	}
	r.Spec.Data.InstanceUUID = strings.ToLower(strings.TrimSpace(r.Spec.Data.InstanceUUID))
	for i, h := range r.Hosts {
		if h.Host == "" {
			return Request{}, fmt.Errorf("%w: hosts[%d] has no host name", ErrMalformed, i)
		}
	}
	return r, nil
}

// Operation returns the operation named by the _nova_check_type hint, one of
// the Op constants: OpCreate when absent, OpOther when unknown.
func (r *Request) Operation() string {
	op := strings.ToLower(r.Spec.Data.SchedulerHints.First("_nova_check_type"))
	switch op {
	case "":
		return OpCreate
	case OpLiveMigrate, OpMigrate, OpResize, OpEvacuate, OpUnshelve, OpRebuild, OpCreate:
		return op
	case "live-migration", "live_migration":
		return OpLiveMigrate
	}
	return OpOther
}

// RequestID returns Nova's request id (the global one when set).
func (r *Request) RequestID() string {
	if r.Context.GlobalRequestID != "" {
		return r.Context.GlobalRequestID
	}
	return r.Context.RequestID
}

// Response is exactly what Nova accepts back: the passing hosts in the order
// received. No other key may be added.
type Response struct {
	Hosts []string `json:"hosts"`
}

// MarshalJSON never writes null for an empty list.
func (r Response) MarshalJSON() ([]byte, error) {
	hosts := r.Hosts
	if hosts == nil {
		hosts = []string{}
	}
	return json.Marshal(struct {
		Hosts []string `json:"hosts"`
	}{hosts})
}
