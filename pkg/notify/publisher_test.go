package notify_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
	"github.com/ledgerfence/ledgerfence/pkg/notify"
	"github.com/ledgerfence/ledgerfence/pkg/residency"
)

// waitFor is how long a test waits for something that should happen at once.
// It is a bound against hanging, not a measurement.
const waitFor = 20 * time.Second

// natsServer is a real nats-server run in-process on a fixed port, so that it
// can be stopped and started again where clients expect it.
type natsServer struct {
	t     testing.TB
	port  int
	js    bool
	store string
	srv   *server.Server
}

func newNATSServer(t testing.TB, jetStream bool) *natsServer {
	t.Helper()
	s := &natsServer{t: t, port: freePort(t), js: jetStream, store: t.TempDir()}
	t.Cleanup(s.stop)
	return s
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func (s *natsServer) url() string { return "nats://127.0.0.1:" + strconv.Itoa(s.port) }

func (s *natsServer) start() {
	s.t.Helper()
	srv, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: s.port, NoLog: true, NoSigs: true,
		JetStream: s.js, StoreDir: s.store,
	})
	if err != nil {
		s.t.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(waitFor) {
		s.t.Fatal("nats-server did not start")
	}
	s.srv = srv
}

func (s *natsServer) stop() {
	if s.srv != nil {
		s.srv.Shutdown()
		s.srv.WaitForShutdown()
		s.srv = nil
	}
}

func connectPublisher(t testing.TB, url string, opts ...notify.Option) (*notify.Publisher, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	p, err := notify.Connect(url, append([]notify.Option{notify.WithRegisterer(reg), notify.WithName("test")}, opts...)...)
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		_ = p.Close(ctx)
	})
	return p, reg
}

func connectClient(t testing.TB, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// subscribe collects the events of type T on a channel.
func subscribe[T notify.Event](t testing.TB, nc *nats.Conn) <-chan T {
	t.Helper()
	ch := make(chan T, 1024)
	if _, err := notify.Subscribe(nc, func(ev T) { ch <- ev }, func(m *nats.Msg, err error) { t.Errorf("undecodable %s: %v", m.Data, err) }); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return ch
}

func receive[T any](t testing.TB, ch <-chan T) T {
	t.Helper()
	select {
	case ev := <-ch:
		return ev
	case <-time.After(waitFor):
		var zero T
		t.Fatalf("no %T arrived", zero)
		return zero
	}
}

// eventually polls cond until it holds; it fails the test past waitFor.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func counter(c *prometheus.Registry, name, subject string) float64 {
	mfs, err := c.Gather()
	if err != nil {
		panic(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "subject" && l.GetValue() == subject {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return -1
}

func changed(tx string) notify.LedgerChanged {
	return notify.NewLedgerChanged(ledger.Event{
		Kind: ledger.KindHost, Key: "hm1", Op: ledger.OpPut, TxID: tx, Block: 3,
		Writer: ledger.Writer{MSP: "Org1MSP", ID: "hostagent-hm1"}, Time: time.Now(),
		Host: &ledger.HostRecord{Host: filter.Host{Name: "hm1", Country: "JP", Organizations: []string{"CompanyA"}}},
	})
}

func TestPublishDeliversEvents(t *testing.T) {
	ns := newNATSServer(t, false)
	ns.start()
	p, reg := connectPublisher(t, ns.url())
	nc := connectClient(t, ns.url())
	decisions := subscribe[notify.DecisionDenied](t, nc)
	changes := subscribe[notify.LedgerChanged](t, nc)
	violations := subscribe[notify.Violation](t, nc)
	discrepancies := subscribe[notify.PlacementDiscrepancy](t, nc)

	res := table4(t)
	d, _ := notify.NewDecisionDenied(decision("d1"), &res)
	c := changed("tx1")
	v := notify.NewViolation(vm1, "p1", res.Verdicts[1], time.Now())
	h := notify.LedgerHead{V: notify.Version, Height: 7, Hash: "h7", Time: time.Now()}
	pd := notify.NewPlacementDiscrepancy(residency.Discrepancy{Kind: residency.NotConfirmed, Placement: ledger.PlacementRecord{
		Placement: ledger.Placement{VM: vm1, Host: "hm2", Op: ledger.OpLiveMigration, Witness: ledger.WitnessNova, Ref: "m1"}, TxID: "tx9"}})
	for _, ev := range []notify.Event{d, c, v, h, pd} {
		if !p.Publish(ev) {
			t.Fatalf("Publish(%s) = false", ev.Subject())
		}
	}

	gotD := receive(t, decisions)
	if gotD.DecisionID != "d1" || gotD.RequestID != "req-1" || gotD.Instance != vm1 || gotD.Operation != "live_migrate" ||
		gotD.LedgerHeight != 42 || len(gotD.Denied) != 3 ||
		gotD.Denied[0] != (notify.DeniedHost{Host: "hm3", Reason: filter.CountryNotAllowed, Detail: "country DE is not allowed by vm:" + vm1, Regulation: filter.VMSubject(vm1)}) ||
		gotD.Denied[2].Reason != filter.HostUnregistered {
		t.Errorf("decision = %+v", gotD)
	}
	gotC := receive(t, changes)
	if gotC.TxID != "tx1" || gotC.Kind != ledger.KindHost || gotC.Key != "hm1" || gotC.Op != ledger.OpPut || gotC.Block != 3 ||
		gotC.Writer.MSP != "Org1MSP" || gotC.Host == nil || gotC.Host.Country != "JP" {
		t.Errorf("ledger change = %+v", gotC)
	}
	if got := receive(t, discrepancies); got.Kind != residency.KindNotConfirmed || got.Host != "hm2" || got.Instance != vm1 || got.TxID != "tx9" {
		t.Errorf("discrepancy = %+v", got)
	}
	gotV := receive(t, violations)
	if gotV.ID != v.ID || gotV.Host != "hm3" || gotV.Reason != filter.CountryNotAllowed || gotV.Instance != vm1 || gotV.Detail != v.Detail {
		t.Errorf("violation = %+v, want %+v", gotV, v)
	}
	for _, s := range notify.Subjects() {
		if n := counter(reg, "ledgerfence_notify_published_total", s); n != 1 {
			t.Errorf("published{%s} = %v, want 1", s, n)
		}
		if n := counter(reg, "ledgerfence_notify_dropped_total", s); n != 0 {
			t.Errorf("dropped{%s} = %v, want 0", s, n)
		}
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP ledgerfence_notify_connected 1 while connected to a NATS server, else 0.
# TYPE ledgerfence_notify_connected gauge
ledgerfence_notify_connected 1
# HELP ledgerfence_notify_queue_length Events waiting to be sent to NATS.
# TYPE ledgerfence_notify_queue_length gauge
ledgerfence_notify_queue_length 0
`), "ledgerfence_notify_connected", "ledgerfence_notify_queue_length"); err != nil {
		t.Error(err)
	}
}

// TestNATSDownAtStart: the publisher starts while no server runs, and events
// published after the server comes up arrive.
func TestNATSDownAtStart(t *testing.T) {
	ns := newNATSServer(t, false)
	p, _ := connectPublisher(t, ns.url())
	if p.Connected() {
		t.Fatal("connected with no server")
	}
	if !p.Publish(changed("while-down")) {
		t.Fatal("Publish refused while NATS is down")
	}

	ns.start()
	eventually(t, "publisher connects", p.Connected)
	nc := connectClient(t, ns.url())
	changes := subscribe[notify.LedgerChanged](t, nc)
	p.Publish(changed("after-up"))
	for {
		got := receive(t, changes)
		if got.TxID == "after-up" {
			break
		}
		if got.TxID != "while-down" {
			t.Fatalf("unexpected event %+v", got)
		}
	}
}

// TestJetStreamDownAtStart: with JetStream, an event published while no
// server runs is stored once the server is up.
func TestJetStreamDownAtStart(t *testing.T) {
	ns := newNATSServer(t, true)
	p, reg := connectPublisher(t, ns.url(), notify.WithJetStream(notify.JetStream{}))
	if !p.Publish(changed("while-down")) {
		t.Fatal("Publish refused while NATS is down")
	}
	ns.start()
	eventually(t, "event stored", func() bool {
		return counter(reg, "ledgerfence_notify_published_total", notify.SubjectLedgerChanged) == 1
	})
	msgs := streamMessages(t, ns.url(), notify.DefaultStream)
	if len(msgs) != 1 || msgs[0].TxID != "while-down" {
		t.Fatalf("stream holds %+v", msgs)
	}
}

// TestServerRestart: publishing resumes after the server goes away and comes
// back, on core NATS and on JetStream (whose stream keeps every event).
func TestServerRestart(t *testing.T) {
	t.Run("core", func(t *testing.T) {
		ns := newNATSServer(t, false)
		ns.start()
		p, _ := connectPublisher(t, ns.url())
		nc := connectClient(t, ns.url())
		changes := subscribe[notify.LedgerChanged](t, nc)
		p.Publish(changed("before"))
		if got := receive(t, changes); got.TxID != "before" {
			t.Fatalf("got %+v", got)
		}

		ns.stop()
		eventually(t, "publisher notices", func() bool { return !p.Connected() })
		p.Publish(changed("during"))
		ns.start()
		eventually(t, "publisher reconnects", p.Connected)
		eventually(t, "subscriber reconnects", nc.IsConnected)
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
		p.Publish(changed("after"))
		for {
			got := receive(t, changes)
			if got.TxID == "after" {
				break
			}
			if got.TxID != "during" {
				t.Fatalf("unexpected event %+v", got)
			}
		}
	})
	t.Run("jetstream", func(t *testing.T) {
		ns := newNATSServer(t, true)
		ns.start()
		p, reg := connectPublisher(t, ns.url(), notify.WithJetStream(notify.JetStream{}))
		p.Publish(changed("before"))
		published := func(n float64) func() bool {
			return func() bool {
				return counter(reg, "ledgerfence_notify_published_total", notify.SubjectLedgerChanged) == n
			}
		}
		eventually(t, "first event stored", published(1))

		ns.stop()
		eventually(t, "publisher notices", func() bool { return !p.Connected() })
		p.Publish(changed("during"))
		ns.start()
		p.Publish(changed("after"))
		eventually(t, "all events stored", published(3))
		var txs []string
		for _, m := range streamMessages(t, ns.url(), notify.DefaultStream) {
			txs = append(txs, m.TxID)
		}
		if fmt.Sprint(txs) != "[before during after]" {
			t.Fatalf("stream holds %v", txs)
		}
	})
}

// TestJetStreamDedup: two filterd replicas publishing the same ledger change
// store it once.
func TestJetStreamDedup(t *testing.T) {
	ns := newNATSServer(t, true)
	ns.start()
	replica1, reg1 := connectPublisher(t, ns.url(), notify.WithJetStream(notify.JetStream{}))
	replica2, reg2 := connectPublisher(t, ns.url(), notify.WithJetStream(notify.JetStream{}))

	replica1.Publish(changed("tx1"))
	replica2.Publish(changed("tx1"))
	replica2.Publish(changed("tx2"))
	eventually(t, "replicas publish", func() bool {
		return counter(reg1, "ledgerfence_notify_published_total", notify.SubjectLedgerChanged) == 1 &&
			counter(reg2, "ledgerfence_notify_published_total", notify.SubjectLedgerChanged) == 2
	})
	var txs []string
	for _, m := range streamMessages(t, ns.url(), notify.DefaultStream) {
		txs = append(txs, m.TxID)
	}
	if fmt.Sprint(txs) != "[tx1 tx2]" {
		t.Fatalf("stream holds %v, want [tx1 tx2]", txs)
	}
}

// streamMessages reads every message of a stream.
func streamMessages(t testing.TB, url, stream string) []notify.LedgerChanged {
	t.Helper()
	nc := connectClient(t, url)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []notify.LedgerChanged
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		c, err := notify.Decode[notify.LedgerChanged](m.Data)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	return out
}

// TestQueueFullDrops: while the sender is stuck, Publish still returns at
// once; events past the queue's size are dropped and counted, and the queued
// ones are sent once the sender moves again.
func TestQueueFullDrops(t *testing.T) {
	ns := newNATSServer(t, false)
	ns.start()
	p, reg := connectPublisher(t, ns.url(), notify.WithQueueSize(4))
	nc := connectClient(t, ns.url())
	changes := subscribe[notify.LedgerChanged](t, nc)

	stuck, release := make(chan struct{}), make(chan struct{})
	first := true
	notify.SetBeforeSend(p, func(notify.Event) {
		if first {
			first = false
			close(stuck)
			<-release
		}
	})
	p.Publish(changed("0")) // taken by the sender, which then hangs
	<-stuck
	var queued, dropped int
	for i := 1; i <= 10; i++ {
		if p.Publish(changed(strconv.Itoa(i))) {
			queued++
		} else {
			dropped++
		}
	}
	if queued != 4 || dropped != 6 {
		t.Errorf("queued %d dropped %d, want 4 and 6", queued, dropped)
	}
	if n := counter(reg, "ledgerfence_notify_dropped_total", notify.SubjectLedgerChanged); n != 6 {
		t.Errorf("dropped_total = %v, want 6", n)
	}
	close(release)
	for _, want := range []string{"0", "1", "2", "3", "4"} {
		if got := receive(t, changes); got.TxID != want {
			t.Errorf("got tx %q, want %q", got.TxID, want)
		}
	}
}

// TestSlowSubscriberDoesNotBlockPublisher: a subscriber that never takes its
// messages neither blocks Publish nor stops other subscribers from getting
// events.
func TestSlowSubscriberDoesNotBlockPublisher(t *testing.T) {
	ns := newNATSServer(t, false)
	ns.start()
	p, reg := connectPublisher(t, ns.url())

	slow := connectClient(t, ns.url())
	hold := make(chan struct{})
	defer close(hold)
	sub, err := notify.Subscribe(slow, func(notify.LedgerChanged) { <-hold }, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := sub.SetPendingLimits(16, 1<<20); err != nil {
		t.Fatal(err)
	}
	if err := slow.Flush(); err != nil {
		t.Fatal(err)
	}
	last := make(chan struct{})
	if _, err := notify.Subscribe(connectClient(t, ns.url()), func(c notify.LedgerChanged) {
		if c.TxID == "last" {
			close(last)
		}
	}, nil); err != nil {
		t.Fatal(err)
	}

	const n = 5000
	for i := range n {
		p.Publish(changed(strconv.Itoa(i)))
	}
	lastQueued := p.Publish(changed("last"))
	eventually(t, "every event published or dropped", func() bool {
		return counter(reg, "ledgerfence_notify_published_total", notify.SubjectLedgerChanged)+
			counter(reg, "ledgerfence_notify_dropped_total", notify.SubjectLedgerChanged) == n+1
	})
	if lastQueued {
		// Another subscriber still gets events while the slow one holds up.
		receive(t, last)
	}
}

// TestCloseDrains: Close sends what is queued.
func TestCloseDrains(t *testing.T) {
	ns := newNATSServer(t, false)
	ns.start()
	p, err := notify.Connect(ns.url(), notify.WithQueueSize(100))
	if err != nil {
		t.Fatal(err)
	}
	changes := subscribe[notify.LedgerChanged](t, connectClient(t, ns.url()))
	release := make(chan struct{})
	notify.SetBeforeSend(p, func(notify.Event) { <-release })
	for i := range 50 {
		p.Publish(changed(strconv.Itoa(i)))
	}
	close(release)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := p.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for i := range 50 {
		if got := receive(t, changes); got.TxID != strconv.Itoa(i) {
			t.Fatalf("got tx %q, want %d", got.TxID, i)
		}
	}
	if p.Publish(changed("late")) {
		t.Error("Publish after Close = true")
	}
}

// TestCloseDeadline: Close gives up when its context ends and counts what it
// could not send.
func TestCloseDeadline(t *testing.T) {
	ns := newNATSServer(t, false)
	ns.start()
	reg := prometheus.NewRegistry()
	p, err := notify.Connect(ns.url(), notify.WithRegisterer(reg))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stuck := make(chan struct{})
	var once bool
	notify.SetBeforeSend(p, func(notify.Event) {
		if !once {
			once = true
			close(stuck)
			<-ctx.Done() // hang until Close gives up
		}
	})
	for i := range 10 {
		p.Publish(changed(strconv.Itoa(i)))
	}
	<-stuck
	cancel()
	err = p.Close(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Close = %v, want context.Canceled", err)
	}
	if n := counter(reg, "ledgerfence_notify_dropped_total", notify.SubjectLedgerChanged); n != 10 {
		t.Errorf("dropped = %v, want 10", n)
	}
}

func TestNilPublisher(t *testing.T) {
	var p *notify.Publisher
	if p.Publish(changed("x")) || p.Connected() {
		t.Error("nil publisher claims to publish")
	}
	if err := p.Close(context.Background()); err != nil {
		t.Error(err)
	}
}

func TestConnectInvalid(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := notify.Connect("nats://127.0.0.1:1", notify.WithQueueSize(0)); !errors.Is(err, notify.ErrInvalidConfig) {
		t.Errorf("queue size 0: %v", err)
	}
	p, err := notify.Connect("nats://127.0.0.1:1", notify.WithRegisterer(reg))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(context.Background())
	if _, err := notify.Connect("nats://127.0.0.1:1", notify.WithRegisterer(reg)); err == nil {
		t.Error("a second publisher registered the same metrics")
	}
}

// BenchmarkPublishSlowSubscriber measures what a Publish call costs the
// webhook while a subscriber takes one event per millisecond.
//
//	go test -run '^$' -bench 'Publish(Slow|No)Subscriber' -benchtime 200000x -count 3 ./pkg/notify/
func BenchmarkPublishSlowSubscriber(b *testing.B) {
	ns := newNATSServer(b, false)
	ns.start()
	p, reg := connectPublisher(b, ns.url())
	slow := connectClient(b, ns.url())
	hold := make(chan struct{})
	defer close(hold)
	if _, err := notify.Subscribe(slow, func(notify.DecisionDenied) {
		select {
		case <-hold:
		case <-time.After(time.Millisecond):
		}
	}, nil); err != nil {
		b.Fatal(err)
	}
	if err := slow.Flush(); err != nil {
		b.Fatal(err)
	}
	res := table4(b)
	ev, _ := notify.NewDecisionDenied(decision("d1"), &res)
	b.ReportAllocs()
	b.ResetTimer()
	var worst time.Duration
	for b.Loop() {
		start := time.Now()
		p.Publish(ev)
		if d := time.Since(start); d > worst {
			worst = d
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(worst.Nanoseconds()), "max-ns/publish")
	b.ReportMetric(counter(reg, "ledgerfence_notify_dropped_total", notify.SubjectDecisionDenied)/float64(b.N), "dropped/op")
}

// BenchmarkPublishNoSubscriber is the same loop with nobody listening, for
// comparison with BenchmarkPublishSlowSubscriber.
func BenchmarkPublishNoSubscriber(b *testing.B) {
	ns := newNATSServer(b, false)
	ns.start()
	p, reg := connectPublisher(b, ns.url())
	res := table4(b)
	ev, _ := notify.NewDecisionDenied(decision("d1"), &res)
	b.ReportAllocs()
	var worst time.Duration
	for b.Loop() {
		start := time.Now()
		p.Publish(ev)
		if d := time.Since(start); d > worst {
			worst = d
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(worst.Nanoseconds()), "max-ns/publish")
	b.ReportMetric(counter(reg, "ledgerfence_notify_dropped_total", notify.SubjectDecisionDenied)/float64(b.N), "dropped/op")
}
