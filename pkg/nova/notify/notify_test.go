package notify_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/nova/notify"
)

// fixture is one message of testdata/notifications.json, made by Nova's and
// oslo.messaging's own classes (testdata/notifications.py).
type fixture struct {
	Name       string `json:"name"`
	RoutingKey string `json:"routing_key"`
	Body       string `json:"body"`
}

func fixtures(t testing.TB) []fixture {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "notifications.json"))
	if err != nil {
		t.Fatal(err)
	}
	var fs []fixture
	if err := json.Unmarshal(data, &fs); err != nil {
		t.Fatal(err)
	}
	return fs
}

func fixtureBody(t testing.TB, name string) []byte {
	t.Helper()
	for _, f := range fixtures(t) {
		if f.Name == name {
			return []byte(f.Body)
		}
	}
	t.Fatalf("no fixture %q", name)
	return nil
}

const (
	vm      = "6f1c0d3e-8b2a-4c1d-9e7f-0a1b2c3d4e5f" // the fixtures' VM, sent in upper case
	project = "a1b2c3d4e5f60718293a4b5c6d7e8f90"     // its project, sent in upper case
)

// at is the fixtures' clock: 2026-12-04 10:00 plus minutes, with 123456 µs
// on odd minutes (oslo then writes the fraction, Python omits a zero one;
// Nova's updated_at keeps whole seconds).
func at(minutes int) time.Time {
	t := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC).Add(time.Duration(minutes) * time.Minute)
	if minutes%2 == 1 {
		t = t.Add(123456 * time.Microsecond)
	}
	return t
}

func TestParseNovaFixtures(t *testing.T) {
	mv := func(op notify.Op, state notify.State, host, before, req string, minutes int, eventType, publisher string) *notify.Move {
		return &notify.Move{VM: vm, Project: project, Op: op, State: state, Host: host, HostBefore: before,
			RequestID: req, Time: at(minutes), UpdatedAt: at(minutes).Truncate(time.Second), EventType: eventType, Publisher: publisher}
	}
	want := map[string]notify.Result{
		"boot": {Move: mv(notify.OpBoot, notify.StateOnHost, "hm1", "",
			"req-11111111-1111-4111-8111-111111111111", 1, "instance.create.end", "nova-compute:hm1")},
		"live_migration_post_dest": {Move: mv(notify.OpLiveMigration, notify.StateOnHost, "hm2", "",
			"req-22222222-2222-4222-8222-222222222222", 10, "instance.live_migration_post_dest.end", "nova-compute:hm2")},
		"live_migration_post": {Move: mv(notify.OpLiveMigration, notify.StateLeft, "", "hm1",
			"req-22222222-2222-4222-8222-222222222222", 11, "instance.live_migration_post.end", "nova-compute:hm1")},
		"resize_finish": {Move: mv(notify.OpResize, notify.StateOnHost, "hm3", "",
			"req-33333333-3333-4333-8333-333333333333", 20, "instance.resize_finish.end", "nova-compute:hm3")},
		"resize_confirm": {Move: mv(notify.OpResize, notify.StateOnHost, "hm3", "hm2",
			"req-44444444-4444-4444-8444-444444444444", 21, "instance.resize_confirm.end", "nova-compute:hm2")},
		"resize_finish_hm4": {Move: mv(notify.OpResize, notify.StateOnHost, "hm4", "",
			"req-55555555-5555-4555-8555-555555555555", 30, "instance.resize_finish.end", "nova-compute:hm4")},
		"resize_revert": {Move: mv(notify.OpResizeRevert, notify.StateOnHost, "hm3", "",
			"req-66666666-6666-4666-8666-666666666666", 31, "instance.resize_revert.end", "nova-compute:hm3")},
		"evacuate": {Move: mv(notify.OpEvacuate, notify.StateLeft, "", "hm3",
			"req-77777777-7777-4777-8777-777777777777", 40, "instance.evacuate", "nova-api:controller")},
		"rebuild_evacuated": {Move: mv(notify.OpRebuild, notify.StateOnHost, "hm5", "",
			"req-77777777-7777-4777-8777-777777777777", 41, "instance.rebuild.end", "nova-compute:hm5")},
		"rebuild": {Move: mv(notify.OpRebuild, notify.StateOnHost, "hm5", "",
			"req-88888888-8888-4888-8888-888888888888", 50, "instance.rebuild.end", "nova-compute:hm5")},
		"shelve_offload": {Move: mv(notify.OpShelveOffload, notify.StateNoHost, "", "hm5",
			"req-99999999-9999-4999-8999-999999999999", 60, "instance.shelve_offload.end", "nova-compute:hm5")},
		"unshelve": {Move: mv(notify.OpUnshelve, notify.StateOnHost, "hm1", "",
			"req-aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa", 70, "instance.unshelve.end", "nova-compute:hm1")},
		"delete": {Move: mv(notify.OpDelete, notify.StateNoHost, "", "hm1",
			"req-bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb", 80, "instance.delete.end", "nova-compute:hm1")},
		"power_off":    {Skip: &notify.Skip{Reason: notify.SkipEventType, EventType: "instance.power_off.end"}},
		"create_error": {Skip: &notify.Skip{Reason: notify.SkipEventType, EventType: "instance.create.error"}},
		"legacy":       {Skip: &notify.Skip{Reason: notify.SkipUnversioned, EventType: "compute.instance.create.end"}},
		"boot_unenveloped": {Move: &notify.Move{VM: vm, Project: project, Op: notify.OpBoot, State: notify.StateOnHost,
			Host: "hm2", RequestID: "req-dddddddd-dddd-4ddd-8ddd-dddddddddddd", Time: at(93), UpdatedAt: at(93).Truncate(time.Second),
			EventType: "instance.create.end", Publisher: "nova-compute:hm2"}},
		"delete_unscheduled": {Move: &notify.Move{VM: "1d2e3f40-5a6b-4c7d-8e9f-a0b1c2d3e4f5", Project: project,
			Op: notify.OpDelete, State: notify.StateNoHost, RequestID: "req-eeeeeeee-eeee-4eee-8eee-eeeeeeeeeeee",
			Time: at(94), UpdatedAt: at(94).Truncate(time.Second), EventType: "instance.delete.end", Publisher: "nova-api:controller"}},
		"boot_global_request": {Move: &notify.Move{VM: "2e3f4051-6b7c-4d8e-9fa0-b1c2d3e4f506", Project: project,
			Op: notify.OpBoot, State: notify.StateOnHost, Host: "hm4", RequestID: "req-ffffffff-ffff-4fff-8fff-ffffffffffff",
			GlobalRequestID: "req-0c4b5a69-1d2e-4f3a-9b8c-7d6e5f4a3b2c", Time: at(95), UpdatedAt: at(95).Truncate(time.Second),
			EventType: "instance.create.end", Publisher: "nova-compute:hm4"}},
	}
	fs := fixtures(t)
	if len(fs) != len(want) {
		t.Fatalf("%d fixtures, %d expectations", len(fs), len(want))
	}
	ids := map[string]bool{}
	for _, f := range fs {
		t.Run(f.Name, func(t *testing.T) {
			w, ok := want[f.Name]
			if !ok {
				t.Fatalf("no expectation for fixture %q", f.Name)
			}
			got, err := notify.Parse([]byte(f.Body))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if (got.Move == nil) == (got.Skip == nil) {
				t.Fatalf("want exactly one of Move and Skip, got %+v", got)
			}
			// message ids come from the fixture script's counter: unique, and a UUID.
			var id string
			if got.Move != nil {
				id = got.Move.MessageID
			} else {
				id = got.Skip.MessageID
			}
			if _, err := filter.NormalizeUUID(id); err != nil || ids[id] {
				t.Fatalf("message id %q: not a fresh UUID", id)
			}
			ids[id] = true
			switch {
			case w.Move != nil:
				if got.Move == nil {
					t.Fatalf("got skip %+v, want move", *got.Skip)
				}
				g := *got.Move
				g.MessageID = ""
				if g != *w.Move {
					t.Errorf("move\n got %+v\nwant %+v", g, *w.Move)
				}
			default:
				if got.Skip == nil {
					t.Fatalf("got move %+v, want skip", *got.Move)
				}
				g := *got.Skip
				g.MessageID = ""
				if g != *w.Skip {
					t.Errorf("skip: got %+v, want %+v", g, *w.Skip)
				}
			}
		})
	}
}

// TestParseEveryEventTypeHasAFixture keeps the fixtures in step with the rules.
func TestParseEveryEventTypeHasAFixture(t *testing.T) {
	seen := map[string]bool{}
	for _, f := range fixtures(t) {
		if r, err := notify.Parse([]byte(f.Body)); err == nil && r.Move != nil {
			seen[r.Move.EventType] = true
		}
	}
	for _, et := range notify.EventTypes() {
		if !seen[et] {
			t.Errorf("event type %s: no fixture made by Nova's classes", et)
		}
	}
}

// edit returns the fixture body with its inner message changed by f.
func edit(t testing.TB, name string, f func(msg map[string]any, data map[string]any)) []byte {
	t.Helper()
	var env map[string]any
	if err := json.Unmarshal(fixtureBody(t, name), &env); err != nil {
		t.Fatal(err)
	}
	var msg map[string]any
	if err := json.Unmarshal([]byte(env["oslo.message"].(string)), &msg); err != nil {
		t.Fatal(err)
	}
	var data map[string]any
	if p, ok := msg["payload"].(map[string]any); ok {
		data, _ = p["nova_object.data"].(map[string]any)
	}
	f(msg, data)
	inner, err := json.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	env["oslo.message"] = string(inner)
	out, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestParseVariants(t *testing.T) {
	tests := []struct {
		name string
		body func(t *testing.T) []byte
		want func(t *testing.T, m *notify.Move)
	}{
		{"request id from the payload when the context has none", func(t *testing.T) []byte {
			return edit(t, "boot", func(msg, data map[string]any) {
				delete(msg, "_context_request_id")
				data["request_id"] = "req-12121212-1212-4121-8121-121212121212"
			})
		}, func(t *testing.T, m *notify.Move) {
			if m.RequestID != "req-12121212-1212-4121-8121-121212121212" {
				t.Errorf("request id %q", m.RequestID)
			}
		}},
		{"no request id anywhere (a periodic task)", func(t *testing.T) []byte {
			return edit(t, "boot", func(msg, data map[string]any) {
				delete(msg, "_context_request_id")
				data["request_id"] = nil
			})
		}, func(t *testing.T, m *notify.Move) {
			if m.RequestID != "" {
				t.Errorf("request id %q", m.RequestID)
			}
		}},
		{"timestamp with a zone", func(t *testing.T) []byte {
			return edit(t, "boot", func(msg, data map[string]any) {
				msg["timestamp"] = "2026-12-04T11:01:00.5+01:00"
			})
		}, func(t *testing.T, m *notify.Move) {
			if want := time.Date(2026, 12, 4, 10, 1, 0, 5e8, time.UTC); !m.Time.Equal(want) || m.Time.Location() != time.UTC {
				t.Errorf("time %v, want %v", m.Time, want)
			}
		}},
		{"no updated_at", func(t *testing.T) []byte {
			return edit(t, "boot", func(msg, data map[string]any) { data["updated_at"] = nil })
		}, func(t *testing.T, m *notify.Move) {
			if !m.UpdatedAt.IsZero() {
				t.Errorf("updated_at %v", m.UpdatedAt)
			}
		}},
		{"project id as a dashed UUID", func(t *testing.T) []byte {
			return edit(t, "boot", func(msg, data map[string]any) {
				data["tenant_id"] = "A1B2C3D4-E5F6-0718-293A-4B5C6D7E8F90"
			})
		}, func(t *testing.T, m *notify.Move) {
			if m.Project != project {
				t.Errorf("project %q", m.Project)
			}
		}},
		{"resize confirmed by a conductor: no host before", func(t *testing.T) []byte {
			return edit(t, "resize_confirm", func(msg, data map[string]any) {
				msg["publisher_id"] = "nova-conductor:c1"
			})
		}, func(t *testing.T, m *notify.Move) {
			if m.Host != "hm3" || m.HostBefore != "" {
				t.Errorf("host %q before %q", m.Host, m.HostBefore)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := notify.Parse(tt.body(t))
			if err != nil {
				t.Fatal(err)
			}
			if r.Move == nil {
				t.Fatalf("skip %+v", r.Skip)
			}
			tt.want(t, r.Move)
		})
	}
}

func TestParseMalformed(t *testing.T) {
	long := strings.Repeat("x", 5000)
	tests := []struct {
		name    string
		body    func(t *testing.T) []byte
		want    error
		contain string
	}{
		{"empty", func(*testing.T) []byte { return nil }, notify.ErrMalformed, "body"},
		{"not JSON", func(*testing.T) []byte { return []byte("hello " + long) }, notify.ErrMalformed, "body"},
		{"JSON array", func(*testing.T) []byte { return []byte(`[1,2]`) }, notify.ErrMalformed, "body"},
		{"data after the value", func(t *testing.T) []byte { return append(fixtureBody(t, "boot"), " {}"...) }, notify.ErrMalformed, "body"},
		{"too large", func(*testing.T) []byte { return make([]byte, notify.MaxBodyLen+1) }, notify.ErrTooLarge, "bytes"},
		{"envelope version 3", func(*testing.T) []byte {
			return []byte(`{"oslo.version":"3.0","oslo.message":"{}"}`)
		}, notify.ErrMalformed, "version"},
		{"envelope without message", func(*testing.T) []byte {
			return []byte(`{"oslo.version":"2.0"}`)
		}, notify.ErrMalformed, "without oslo.message"},
		{"envelope message not JSON", func(*testing.T) []byte {
			return []byte(`{"oslo.version":"2.0","oslo.message":"{nope"}`)
		}, notify.ErrMalformed, "oslo.message"},
		{"envelope in an envelope", func(*testing.T) []byte {
			return []byte(`{"oslo.version":"2.0","oslo.message":"{\"oslo.version\":\"2.0\",\"oslo.message\":\"{}\"}"}`)
		}, notify.ErrMalformed, "inside"},
		{"no event type", func(t *testing.T) []byte {
			return edit(t, "boot", func(msg, _ map[string]any) { delete(msg, "event_type") })
		}, notify.ErrMalformed, "no event_type"},
		{"event type with a newline", func(t *testing.T) []byte {
			return edit(t, "boot", func(msg, _ map[string]any) { msg["event_type"] = "instance.create.end\nX" })
		}, notify.ErrMalformed, "event_type"},
		{"no message id", func(t *testing.T) []byte {
			return edit(t, "power_off", func(msg, _ map[string]any) { msg["message_id"] = "" })
		}, notify.ErrMalformed, "no message_id"},
		{"message id too long", func(t *testing.T) []byte {
			return edit(t, "boot", func(msg, _ map[string]any) { msg["message_id"] = long })
		}, notify.ErrMalformed, "longer than"},
		{"no timestamp", func(t *testing.T) []byte {
			return edit(t, "boot", func(msg, _ map[string]any) { delete(msg, "timestamp") })
		}, notify.ErrMalformed, "timestamp"},
		{"timestamp not a time", func(t *testing.T) []byte {
			return edit(t, "boot", func(msg, _ map[string]any) { msg["timestamp"] = "yesterday" })
		}, notify.ErrMalformed, "timestamp"},
		{"payload a string", func(t *testing.T) []byte {
			return edit(t, "boot", func(msg, _ map[string]any) { msg["payload"] = "x" })
		}, notify.ErrMalformed, "payload"},
		{"no payload", func(t *testing.T) []byte {
			return edit(t, "boot", func(msg, _ map[string]any) { delete(msg, "payload") })
		}, notify.ErrMalformed, "without a payload"},
		{"unversioned payload under a versioned event type", func(t *testing.T) []byte {
			return edit(t, "boot", func(msg, _ map[string]any) { msg["payload"] = map[string]any{"instance_id": vm} })
		}, notify.ErrMalformed, "nova_object.data"},
		{"payload of another namespace", func(t *testing.T) []byte {
			return edit(t, "boot", func(msg, _ map[string]any) {
				msg["payload"].(map[string]any)["nova_object.namespace"] = "cinder"
			})
		}, notify.ErrMalformed, "namespace"},
		{"payload version 2", func(t *testing.T) []byte {
			return edit(t, "boot", func(msg, _ map[string]any) {
				msg["payload"].(map[string]any)["nova_object.version"] = "2.0"
			})
		}, notify.ErrMalformed, "version"},
		{"uuid not a UUID", func(t *testing.T) []byte {
			return edit(t, "boot", func(_, data map[string]any) { data["uuid"] = long })
		}, notify.ErrMalformed, "instance uuid"},
		{"no tenant", func(t *testing.T) []byte {
			return edit(t, "boot", func(_, data map[string]any) { data["tenant_id"] = nil })
		}, notify.ErrMalformed, "tenant_id"},
		{"host with a space", func(t *testing.T) []byte {
			return edit(t, "boot", func(_, data map[string]any) { data["host"] = "hm 1" })
		}, notify.ErrMalformed, "host"},
		{"boot on no host", func(t *testing.T) []byte {
			return edit(t, "boot", func(_, data map[string]any) { data["host"] = nil })
		}, notify.ErrMalformed, "names no host"},
		{"evacuation of a VM on no host", func(t *testing.T) []byte {
			return edit(t, "evacuate", func(_, data map[string]any) { data["host"] = nil })
		}, notify.ErrMalformed, "no host the VM left"},
		{"publisher host too long", func(t *testing.T) []byte {
			return edit(t, "shelve_offload", func(msg, _ map[string]any) { msg["publisher_id"] = "nova-compute:" + long })
		}, notify.ErrMalformed, "publisher_id"},
		{"request id with a space", func(t *testing.T) []byte {
			return edit(t, "boot", func(msg, _ map[string]any) { msg["_context_request_id"] = "req 1" })
		}, notify.ErrMalformed, "request_id"},
		{"updated_at not a time", func(t *testing.T) []byte {
			return edit(t, "boot", func(_, data map[string]any) { data["updated_at"] = 5 })
		}, notify.ErrMalformed, "payload"},
		{"host a number", func(t *testing.T) []byte {
			return edit(t, "boot", func(_, data map[string]any) { data["host"] = 7 })
		}, notify.ErrMalformed, "payload"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := notify.Parse(tt.body(t))
			if err == nil {
				t.Fatalf("no error; got %+v", r)
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("error %v, want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.contain) {
				t.Errorf("error %q does not say %q", err, tt.contain)
			}
			if len(err.Error()) > 4*filter.ClipLen {
				t.Errorf("error is %d bytes long: %.200q...", len(err.Error()), err)
			}
			if r.Move != nil || r.Skip != nil {
				t.Errorf("a result with the error: %+v", r)
			}
		})
	}
}

func TestOpsAndEventTypes(t *testing.T) {
	ops := map[notify.Op]bool{}
	for _, op := range notify.Ops() {
		if ops[op] {
			t.Errorf("%s twice", op)
		}
		ops[op] = true
	}
	for _, f := range fixtures(t) {
		if r, err := notify.Parse([]byte(f.Body)); err == nil && r.Move != nil && !ops[r.Move.Op] {
			t.Errorf("%s: op %q not in Ops()", f.Name, r.Move.Op)
		}
	}
	if n := len(notify.EventTypes()); n != 11 {
		t.Errorf("%d event types", n)
	}
}
