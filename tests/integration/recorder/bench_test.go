package recorder_test

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/ledgerfence/ledgerfence/pkg/nova/notify"
	"github.com/ledgerfence/ledgerfence/pkg/recorder"
	"github.com/ledgerfence/ledgerfence/pkg/recorder/rabbittest"
)

var (
	benchOnce sync.Once
	benchNode *rabbittest.Node
	benchErr  error
	benchDir  string
)

// TestMain stops the node the benchmarks share.
func TestMain(m *testing.M) {
	code := m.Run()
	if benchNode != nil {
		_ = benchNode.Stop()
	}
	if benchDir != "" {
		os.RemoveAll(benchDir)
	}
	os.Exit(code)
}

// sharedNode is one node for every benchmark of the run.
func sharedNode(b *testing.B) *rabbittest.Node {
	rabbittest.Require(b)
	benchOnce.Do(func() {
		benchDir, benchErr = os.MkdirTemp("", "ledgerfence-rabbit-bench-")
		if benchErr == nil {
			benchNode, benchErr = rabbittest.StartNode(benchDir)
		}
	})
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	return benchNode
}

// declare declares queue and binds it as the recorder would, so that
// messages can be queued before it starts.
func declare(b *testing.B, url, queue string) {
	c, err := amqp.Dial(url)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	ch, err := c.Channel()
	if err != nil {
		b.Fatal(err)
	}
	if err := ch.ExchangeDeclare("nova", "topic", false, false, false, false, nil); err != nil {
		b.Fatal(err)
	}
	if _, err := ch.QueueDeclare(queue, true, false, false, false, nil); err != nil {
		b.Fatal(err)
	}
	if _, err := ch.QueuePurge(queue, false); err != nil {
		b.Fatal(err)
	}
	if err := ch.QueueBind(queue, "versioned_notifications.info", "nova", false, nil); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkConsume: messages already queued on a real node (Nova's moves,
// 3 KB each), consumed, parsed and handed to a sink that does nothing, then
// acked; one op is one message. Reports messages/s and the recorder's peak
// heap.
func BenchmarkConsume(b *testing.B) {
	node := sharedNode(b)
	for _, prefetch := range []int{1, 32, 256} {
		b.Run(fmt.Sprintf("prefetch=%d", prefetch), func(b *testing.B) {
			queue := fmt.Sprintf("bench-%d", prefetch)
			declare(b, node.URL, queue)
			publish(b, node.URL, moveBodies(b, b.N))
			var n atomic.Int64
			done := make(chan struct{})
			sink := recorder.SinkFunc(func(context.Context, notify.Move) error {
				if n.Add(1) == int64(b.N) {
					close(done)
				}
				return nil
			})
			runtime.GC()
			var peak atomic.Uint64
			stopSampling := sampleHeap(&peak)
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			r := run(b, node, sink, func(c *recorder.Config) { c.Queue = queue; c.Prefetch = prefetch })
			select {
			case <-done:
			case <-time.After(5 * time.Minute):
				b.Fatalf("%d of %d consumed in 5 minutes", n.Load(), b.N)
			}
			elapsed := time.Since(start)
			b.StopTimer()
			stopSampling()
			r.stop(b)
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
			b.ReportMetric(float64(peak.Load())/(1<<20), "peak-heap-MB")
		})
	}
}

// sampleHeap records the peak of the heap in use every 10 ms until the
// returned function is called.
func sampleHeap(peak *atomic.Uint64) func() {
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	return func() { close(stop); wg.Wait() }
}
