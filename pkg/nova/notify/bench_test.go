package notify_test

import (
	"testing"

	"github.com/ledgerfence/ledgerfence/pkg/nova/notify"
)

// BenchmarkParse reads Nova's messages as oslo.messaging sends them: a
// placement (a live migration's destination, 3 KB in its envelope) and a
// skipped event type.
func BenchmarkParse(b *testing.B) {
	for _, name := range []string{"live_migration_post_dest", "power_off"} {
		body := fixtureBody(b, name)
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := notify.Parse(body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
