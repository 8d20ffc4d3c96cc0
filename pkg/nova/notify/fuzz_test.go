package notify_test

import (
	"errors"
	"testing"

	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/nova/notify"
)

// FuzzParse: Parse never panics; it returns exactly one of a Move, a Skip
// and an error wrapping ErrMalformed or ErrTooLarge; an error's text is
// bounded; a Move's identifiers are canonical and its hosts valid.
func FuzzParse(f *testing.F) {
	for _, fx := range fixtures(f) {
		f.Add([]byte(fx.Body))
	}
	f.Add([]byte(`{"oslo.version":"2.0","oslo.message":"{\"event_type\":\"instance.evacuate\"}"}`))
	f.Add([]byte(`{"event_type":"instance.delete.end","message_id":"m","timestamp":"2026-12-04 10:00:00","payload":{"nova_object.namespace":"nova","nova_object.version":"1.8","nova_object.data":{"uuid":"6f1c0d3e8b2a4c1d9e7f0a1b2c3d4e5f","tenant_id":"p"}}}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{"oslo.message":null}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := notify.Parse(body)
		if err != nil {
			if !errors.Is(err, notify.ErrMalformed) && !errors.Is(err, notify.ErrTooLarge) {
				t.Fatalf("error %v wraps neither ErrMalformed nor ErrTooLarge", err)
			}
			if n := len(err.Error()); n > 6*filter.ClipLen {
				t.Fatalf("error of %d bytes", n)
			}
			if r.Move != nil || r.Skip != nil {
				t.Fatalf("a result with an error: %+v", r)
			}
			return
		}
		if (r.Move == nil) == (r.Skip == nil) {
			t.Fatalf("want exactly one of Move and Skip: %+v", r)
		}
		if r.Skip != nil {
			if r.Skip.EventType == "" || r.Skip.MessageID == "" {
				t.Fatalf("skip without identifiers: %+v", *r.Skip)
			}
			return
		}
		m := r.Move
		if u, err := filter.NormalizeUUID(m.VM); err != nil || u != m.VM {
			t.Fatalf("VM %q not canonical", m.VM)
		}
		if p, err := filter.NormalizeProjectID(m.Project); err != nil || p != m.Project {
			t.Fatalf("project %q not canonical", m.Project)
		}
		switch m.State {
		case notify.StateOnHost:
			if err := filter.ValidateHostName(m.Host); err != nil {
				t.Fatalf("host: %v", err)
			}
		case notify.StateLeft:
			if m.Host != "" || filter.ValidateHostName(m.HostBefore) != nil {
				t.Fatalf("left: host %q before %q", m.Host, m.HostBefore)
			}
		case notify.StateNoHost:
			if m.Host != "" {
				t.Fatalf("no host: host %q", m.Host)
			}
		default:
			t.Fatalf("state %q", m.State)
		}
		if m.HostBefore != "" && filter.ValidateHostName(m.HostBefore) != nil {
			t.Fatalf("host before %q", m.HostBefore)
		}
		if m.Time.IsZero() || m.MessageID == "" || m.EventType == "" {
			t.Fatalf("move without time or identifiers: %+v", *m)
		}
	})
}
