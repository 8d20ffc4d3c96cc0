package recorder_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ledgerfence/ledgerfence/pkg/nova/notify"
	"github.com/ledgerfence/ledgerfence/pkg/recorder"
	"github.com/ledgerfence/ledgerfence/pkg/recorder/rabbittest"
)

const python = "/usr/bin/python3"

// TestOsloNotifier: Nova's classes emit a VM's life through oslo.messaging's
// Notifier (rabbit driver, messagingv2 and messaging) to the node; the sink
// gets every move once, in order, and the two other versioned notifications
// are skipped. The legacy notification goes to another routing key, which
// the recorder does not bind. Without python3-nova, the same messages are
// replayed from the fixtures that Nova's classes made.
func TestOsloNotifier(t *testing.T) {
	node := rabbittest.Start(t)
	s := newSink()
	r := run(t, node, s, nil)
	if out, err := exec.Command(python, "-c", "import nova, oslo_messaging").CombinedOutput(); err != nil {
		t.Logf("python3-nova and oslo.messaging are not importable (%v: %s): replaying the fixtures instead",
			err, strings.TrimSpace(string(out)))
		for _, f := range fixtures(t) {
			publishKey(t, node.URL, f.RoutingKey, [][]byte{[]byte(f.Body)})
		}
	} else {
		script := filepath.Join(repoRoot(), "pkg", "nova", "notify", "testdata", "notifications.py")
		url := strings.Replace(node.URL, "amqp://", "rabbit://", 1)
		cmd := exec.Command(python, script, "--url", url)
		cmd.Env = append(os.Environ(), "PYTHONWARNINGS=ignore")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("oslo.messaging Notifier: %v\n%s", err, out)
		}
	}
	var want []string // the moves' event types, in the order sent
	skips := 0
	for _, f := range fixtures(t) {
		res, err := notify.Parse([]byte(f.Body))
		switch {
		case err != nil:
			t.Fatalf("fixture %s: %v", f.Name, err)
		case f.RoutingKey == "notifications.info":
		case res.Move != nil:
			want = append(want, res.Move.EventType+" "+res.Move.VM)
		default:
			skips++
		}
	}
	waitFor(t, 60*time.Second, "every move recorded and every skip counted", func() bool {
		d, _ := s.stats()
		return d == len(want) && r.metric("ledgerfence_recorder_messages_total", recorder.ResultSkipped) == float64(skips)
	})
	time.Sleep(300 * time.Millisecond) // nothing more comes
	distinct, dups := s.stats()
	if distinct != len(want) || dups != 0 {
		t.Fatalf("%d moves recorded (%d duplicates), want %d once each", distinct, dups, len(want))
	}
	s.mu.Lock()
	for i, m := range s.moves {
		if got := m.EventType + " " + m.VM; got != want[i] {
			t.Errorf("move %d: %s, want %s", i, got, want[i])
		}
	}
	s.mu.Unlock()
	if got := r.metric("ledgerfence_recorder_messages_total", recorder.ResultRecorded); got != float64(len(want)) {
		t.Errorf("recorded counter %v, want %d", got, len(want))
	}
	if got := r.metric("ledgerfence_recorder_messages_total", recorder.ResultMalformed); got != 0 {
		t.Errorf("malformed counter %v", got)
	}
	t.Logf("%d moves and %d other versioned notifications published: each move recorded once, in order", len(want), skips)
}

// TestEveryMessageOnce: with a sink that succeeds, each message is recorded
// exactly once and the queue is left empty; a malformed body is acked.
func TestEveryMessageOnce(t *testing.T) {
	node := rabbittest.Start(t)
	s := newSink()
	r := run(t, node, s, func(c *recorder.Config) { c.Prefetch = 50 })
	const n = 1000
	publish(t, node.URL, append(moveBodies(t, n), []byte(`{"oslo.version": "2.0", "oslo.message": "not json"}`)))
	waitFor(t, 60*time.Second, "every message recorded", func() bool {
		d, _ := s.stats()
		return d == n && r.metric("ledgerfence_recorder_messages_total", recorder.ResultMalformed) == 1
	})
	waitFor(t, 10*time.Second, "the queue empty", func() bool {
		ready, _, err := node.QueueDepth(context.Background(), recorder.DefaultQueue)
		return err == nil && ready == 0
	})
	r.stop(t)
	distinct, dups := s.stats()
	if distinct != n || dups != 0 {
		t.Fatalf("%d distinct, %d duplicates; want %d once each", distinct, dups, n)
	}
	ready, _, err := node.QueueDepth(context.Background(), recorder.DefaultQueue)
	if err != nil || ready != 0 {
		t.Fatalf("after stop: %d messages ready (%v), want 0: every one acked", ready, err)
	}
}

// TestFailingSink: a message whose Record fails is returned to the queue and
// delivered again until Record succeeds; one that always fails is never
// acked: it is still in the queue when the recorder stops. A permanent
// failure is acked.
func TestFailingSink(t *testing.T) {
	node := rabbittest.Start(t)
	s := newSink()
	bodies := moveBodies(t, 30)
	s.fail = func(m notify.Move, calls int) error {
		switch {
		case m.MessageID == "m-3" && calls <= 4: // fails four times, then succeeds
			return errors.New("ledger unavailable")
		case m.MessageID == "m-7": // always fails
			return errors.New("ledger unavailable")
		case m.MessageID == "m-9":
			return recorder.Permanent(errors.New("refused by the contract"))
		}
		return nil
	}
	r := run(t, node, s, nil)
	publish(t, node.URL, bodies)
	waitFor(t, 60*time.Second, "28 messages recorded, m-3 retried 4 times and m-7 5", func() bool {
		d, _ := s.stats()
		s.mu.Lock()
		calls := s.calls["m-7"]
		s.mu.Unlock()
		return d == 28 && calls >= 5 && r.metric("ledgerfence_recorder_messages_total", recorder.ResultRetried) >= 4+5
	})
	s.mu.Lock()
	if s.counts["m-3"] != 1 || s.calls["m-3"] != 5 {
		t.Errorf("m-3: recorded %d times after %d calls; want once after 5", s.counts["m-3"], s.calls["m-3"])
	}
	if s.counts["m-7"] != 0 || s.counts["m-9"] != 0 {
		t.Errorf("m-7 recorded %d, m-9 %d", s.counts["m-7"], s.counts["m-9"])
	}
	calls7 := s.calls["m-7"]
	s.mu.Unlock()
	if got := r.metric("ledgerfence_recorder_messages_total", recorder.ResultRejected); got != 1 {
		t.Errorf("rejected counter %v, want 1", got)
	}
	if got := r.metric("ledgerfence_recorder_messages_total", recorder.ResultRetried); got < 4+5 {
		t.Errorf("retried counter %v, want at least 9", got)
	}
	r.stop(t)
	ready, _, err := node.QueueDepth(context.Background(), recorder.DefaultQueue)
	if err != nil || ready != 1 {
		t.Fatalf("after stop: %d messages ready (%v); want 1, m-7, never acked", ready, err)
	}
	t.Logf("m-7 was delivered %d times before the recorder stopped, and is still queued", calls7)
}

// TestCancelAndRestart: the recorder is stopped mid-stream and started
// again; no message is lost, and the duplicates are counted.
func TestCancelAndRestart(t *testing.T) {
	node := rabbittest.Start(t)
	s := newSink()
	s.delay = time.Millisecond
	const n = 600
	r := run(t, node, s, func(c *recorder.Config) { c.Prefetch = 64 })
	publish(t, node.URL, moveBodies(t, n))
	waitFor(t, 60*time.Second, "a third recorded", func() bool { d, _ := s.stats(); return d >= n/3 })
	r.stop(t)
	first, _ := s.stats()
	if first >= n {
		t.Fatalf("all %d recorded before the stop: nothing tested", n)
	}
	r2 := run(t, node, s, func(c *recorder.Config) { c.Prefetch = 64 })
	waitFor(t, 60*time.Second, "every message recorded", func() bool { d, _ := s.stats(); return d == n })
	waitFor(t, 10*time.Second, "the queue empty", func() bool {
		ready, _, err := node.QueueDepth(context.Background(), recorder.DefaultQueue)
		return err == nil && ready == 0
	})
	r2.stop(t)
	distinct, dups := s.stats()
	t.Logf("stopped after %d of %d; after the restart all %d recorded, %d duplicates", first, n, distinct, dups)
	if distinct != n {
		t.Fatalf("%d of %d recorded", distinct, n)
	}
	if dups > 1 {
		// Only the message being recorded at the stop can be recorded twice,
		// if its ack did not reach the broker.
		t.Errorf("%d duplicates, want at most 1", dups)
	}
}

// TestNodeRestart: RabbitMQ restarts while the recorder holds unacked
// messages; the recorder reconnects, binds its queue again (Nova's
// exchange, not durable by default, is gone with its bindings), and records
// every message, those queued before the restart included.
func TestNodeRestart(t *testing.T) {
	node := rabbittest.Start(t)
	s := newSink()
	gate := make(chan struct{})
	blocking := recorder.SinkFunc(func(ctx context.Context, m notify.Move) error {
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
		return s.Record(ctx, m)
	})
	r := run(t, node, blocking, func(c *recorder.Config) { c.Prefetch = 10 })
	publish(t, node.URL, moveBodies(t, 100)[:50])
	waitFor(t, 10*time.Second, "a message in flight", func() bool {
		return r.metric("ledgerfence_recorder_in_flight", "") == 1
	})
	if err := node.Restart(); err != nil {
		t.Fatal(err)
	}
	close(gate)
	waitFor(t, 60*time.Second, "the recorder consumes again", func() bool {
		return r.metric("ledgerfence_recorder_reconnects_total", "") >= 1 && r.metric("ledgerfence_recorder_connected", "") == 1
	})
	publish(t, node.URL, moveBodies(t, 100)[50:])
	waitFor(t, 60*time.Second, "all 100 recorded", func() bool { d, _ := s.stats(); return d == 100 })
	distinct, dups := s.stats()
	t.Logf("after a node restart: %d recorded, %d duplicates, %v reconnections", distinct, dups,
		r.metric("ledgerfence_recorder_reconnects_total", ""))
	if dups > 1 {
		t.Errorf("%d duplicates, want at most 1 (the message in flight at the restart)", dups)
	}
}

// TestTwoConsumers: two recorders on one queue split the messages; each is
// recorded, and the duplicates are counted exactly.
func TestTwoConsumers(t *testing.T) {
	node := rabbittest.Start(t)
	s := newSink()
	var a, b int
	count := func(p *int) recorder.Sink {
		return recorder.SinkFunc(func(ctx context.Context, m notify.Move) error {
			err := s.Record(ctx, m)
			if err == nil {
				s.mu.Lock()
				*p++
				s.mu.Unlock()
			}
			return err
		})
	}
	ra := run(t, node, count(&a), func(c *recorder.Config) { c.Prefetch = 20 })
	rb := run(t, node, count(&b), func(c *recorder.Config) { c.Prefetch = 20 })
	const n = 2000
	publish(t, node.URL, moveBodies(t, n))
	waitFor(t, 60*time.Second, "every message recorded", func() bool { d, _ := s.stats(); return d == n })
	ra.stop(t)
	rb.stop(t)
	distinct, dups := s.stats()
	s.mu.Lock()
	defer s.mu.Unlock()
	t.Logf("two consumers: %d recorded by one, %d by the other; %d distinct, %d duplicates", a, b, distinct, dups)
	if a == 0 || b == 0 {
		t.Errorf("one consumer did all the work: %d and %d", a, b)
	}
	if dups != 0 {
		t.Errorf("%d duplicates with no failure: want 0", dups)
	}
}

// TestQuorumQueue: the recorder's queue as a quorum queue.
func TestQuorumQueue(t *testing.T) {
	node := rabbittest.Start(t)
	s := newSink()
	run(t, node, s, func(c *recorder.Config) { c.QueueType = "quorum"; c.Queue = "ledgerfence-recorder-quorum" })
	publish(t, node.URL, moveBodies(t, 200))
	waitFor(t, 60*time.Second, "every message recorded", func() bool { d, _ := s.stats(); return d == 200 })
}
