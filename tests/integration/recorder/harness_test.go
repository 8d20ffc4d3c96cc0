// Package recorder_test runs the recorder against a real RabbitMQ node
// (pkg/recorder/rabbittest: the Debian package's rabbitmq-server, a private
// node per test) and Nova's messages: published by oslo.messaging's own
// Notifier where python3-nova is installed, and otherwise replayed from the
// fixtures Nova's classes made (pkg/nova/notify/testdata).
//
// Tests skip, saying why, when rabbitmq-server is absent, unless
// LEDGERFENCE_REQUIRE_INTEGRATION=1, when they fail instead.
package recorder_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/ledgerfence/ledgerfence/pkg/nova/notify"
	"github.com/ledgerfence/ledgerfence/pkg/recorder"
	"github.com/ledgerfence/ledgerfence/pkg/recorder/rabbittest"
)

// repoRoot is the repository's top directory.
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..")
}

// absent skips the test, or fails it when integration is required.
func absent(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("LEDGERFENCE_REQUIRE_INTEGRATION") == "1" {
		t.Fatalf("required component absent: %s", msg)
	}
	t.Skipf("skipped: %s (set LEDGERFENCE_REQUIRE_INTEGRATION=1 to fail instead)", msg)
}

// fixture is one message of pkg/nova/notify/testdata/notifications.json.
type fixture struct {
	Name       string `json:"name"`
	RoutingKey string `json:"routing_key"`
	Body       string `json:"body"`
}

func fixtures(t testing.TB) []fixture {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot(), "pkg", "nova", "notify", "testdata", "notifications.json"))
	if err != nil {
		t.Fatal(err)
	}
	var fs []fixture
	if err := json.Unmarshal(data, &fs); err != nil {
		t.Fatal(err)
	}
	return fs
}

// moveBodies returns n bodies of moves, the fixtures' in turn, each with a
// message id of its own ("m-<i>"), enveloped as oslo's messagingv2 sends them.
func moveBodies(t testing.TB, n int) [][]byte {
	t.Helper()
	var moves []map[string]any
	for _, f := range fixtures(t) {
		r, err := notify.Parse([]byte(f.Body))
		if err != nil || r.Move == nil || f.RoutingKey != "versioned_notifications.info" {
			continue
		}
		var env map[string]any
		if err := json.Unmarshal([]byte(f.Body), &env); err != nil {
			t.Fatal(err)
		}
		s, ok := env["oslo.message"].(string)
		if !ok {
			continue
		}
		var msg map[string]any
		if err := json.Unmarshal([]byte(s), &msg); err != nil {
			t.Fatal(err)
		}
		moves = append(moves, msg)
	}
	out := make([][]byte, n)
	for i := range n {
		msg := moves[i%len(moves)]
		msg["message_id"] = fmt.Sprintf("m-%d", i)
		inner, err := json.Marshal(msg)
		if err != nil {
			t.Fatal(err)
		}
		body, err := json.Marshal(map[string]string{"oslo.version": "2.0", "oslo.message": string(inner)})
		if err != nil {
			t.Fatal(err)
		}
		out[i] = body
	}
	return out
}

// publish sends bodies to Nova's exchange with the routing key of versioned
// INFO notifications, persistent, and waits for the broker's confirms.
func publish(t testing.TB, url string, bodies [][]byte) {
	t.Helper()
	publishKey(t, url, "versioned_notifications.info", bodies)
}

// publishKey sends bodies to Nova's exchange with routing key key.
func publishKey(t testing.TB, url, key string, bodies [][]byte) {
	t.Helper()
	c, err := amqp.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ch, err := c.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var confs []*amqp.DeferredConfirmation
	for _, b := range bodies {
		dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, "nova", key, false, false,
			amqp.Publishing{ContentType: "application/json", ContentEncoding: "utf-8", DeliveryMode: amqp.Persistent, Body: b})
		if err != nil {
			t.Fatal(err)
		}
		confs = append(confs, dc)
	}
	for i, dc := range confs {
		ok, err := dc.WaitContext(ctx)
		if err != nil || !ok {
			t.Fatalf("message %d not confirmed: %v", i, err)
		}
	}
}

// sink records moves in memory, by message id, and can be told to fail.
type sink struct {
	mu     sync.Mutex
	counts map[string]int
	moves  []notify.Move
	fail   func(m notify.Move, n int) error // n: Record's calls for this message so far
	calls  map[string]int
	delay  time.Duration
}

func newSink() *sink { return &sink{counts: map[string]int{}, calls: map[string]int{}} }

func (s *sink) Record(ctx context.Context, m notify.Move) error {
	if s.delay > 0 {
		select {
		case <-time.After(s.delay):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls[m.MessageID]++
	if s.fail != nil {
		if err := s.fail(m, s.calls[m.MessageID]); err != nil {
			return err
		}
	}
	s.counts[m.MessageID]++
	s.moves = append(s.moves, m)
	return nil
}

// stats returns how many distinct messages were recorded, and how many
// records were duplicates.
func (s *sink) stats() (distinct, dups int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.counts {
		distinct++
		dups += c - 1
	}
	return distinct, dups
}

// running is a recorder started by run.
type running struct {
	rec    *recorder.Recorder
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

// run starts a recorder on node's queue "ledgerfence-recorder" and waits
// until it consumes; the test's end stops it.
func run(t testing.TB, node *rabbittest.Node, s recorder.Sink, mod func(*recorder.Config)) *running {
	t.Helper()
	cfg := recorder.Config{URL: node.URL, ReconnectMin: 100 * time.Millisecond, ReconnectMax: time.Second,
		RetryMin: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond, Heartbeat: 2 * time.Second}
	if mod != nil {
		mod(&cfg)
	}
	reg := prometheus.NewRegistry()
	var log *zap.Logger
	if testing.Verbose() {
		log = zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
	}
	rec, err := recorder.New(cfg, s, recorder.WithLogger(log), recorder.WithRegisterer(reg))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{rec: rec, reg: reg, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- rec.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	waitFor(t, 30*time.Second, "the recorder consumes", func() bool { return r.metric("ledgerfence_recorder_connected", "") == 1 })
	return r
}

// stop cancels the recorder and waits for Run to return.
func (r *running) stop(t testing.TB) {
	t.Helper()
	r.once.Do(func() {
		r.cancel()
		select {
		case err := <-r.done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("Run did not return within 30 s of its cancellation")
		}
	})
}

// metric returns a metric's value; result selects ledgerfence_recorder_messages_total's series.
func (r *running) metric(name, result string) float64 {
	mfs, err := r.reg.Gather()
	if err != nil {
		return -1
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if result != "" && !hasLabel(m, "result", result) {
				continue
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			}
		}
	}
	return 0
}

func hasLabel(m *dto.Metric, name, value string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == name && l.GetValue() == value {
			return true
		}
	}
	return false
}

// waitFor polls cond until it holds, or fails t after d.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
