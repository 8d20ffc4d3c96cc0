package notify_test

import (
	"fmt"

	"github.com/ledgerfence/ledgerfence/pkg/nova/notify"
)

func ExampleParse() {
	// A live migration's destination, un-enveloped and trimmed to what Parse reads.
	body := []byte(`{"message_id": "5bf99a36-0f8d-4f3d-bfd1-000000000005",
	 "publisher_id": "nova-compute:hm2", "event_type": "instance.live_migration_post_dest.end",
	 "priority": "INFO", "timestamp": "2026-12-04 10:10:00",
	 "_context_request_id": "req-22222222-2222-4222-8222-222222222222",
	 "payload": {"nova_object.name": "InstanceActionPayload", "nova_object.namespace": "nova",
	  "nova_object.version": "1.8", "nova_object.data": {"uuid": "6F1C0D3E-8B2A-4C1D-9E7F-0A1B2C3D4E5F",
	  "tenant_id": "a1b2c3d4e5f60718293a4b5c6d7e8f90", "host": "hm2"}}}`)
	r, err := notify.Parse(body)
	switch {
	case err != nil:
		fmt.Println("malformed:", err)
	case r.Skip != nil:
		fmt.Println("skipped:", r.Skip.Reason)
	default:
		m := r.Move
		fmt.Println(m.VM, m.Op, m.State, m.Host, m.RequestID, m.Time)
	}
	// Output: 6f1c0d3e-8b2a-4c1d-9e7f-0a1b2c3d4e5f live_migration on_host hm2 req-22222222-2222-4222-8222-222222222222 2026-12-04 10:10:00 +0000 UTC
}
