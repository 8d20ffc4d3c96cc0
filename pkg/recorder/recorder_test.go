package recorder

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/ledgerfence/ledgerfence/pkg/nova/notify"
)

var nopSink = SinkFunc(func(context.Context, notify.Move) error { return nil })

func TestConfigDefaults(t *testing.T) {
	r, err := New(Config{URL: "amqp://nova:s3cret@mq.example:5672/"}, nopSink)
	if err != nil {
		t.Fatal(err)
	}
	c := r.cfg
	if c.Exchange != "nova" || c.Queue != DefaultQueue || c.Prefetch != DefaultPrefetch ||
		strings.Join(c.RoutingKeys, ",") != "versioned_notifications.info,versioned_notifications.error" ||
		c.ReconnectMin != DefaultReconnectMin || c.ReconnectMax != DefaultReconnectMax ||
		c.RetryMin != DefaultRetryMin || c.RetryMax != DefaultRetryMax || c.Heartbeat != DefaultHeartbeat {
		t.Errorf("defaults: %+v", c)
	}
}

func TestConfigRefused(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no URL", Config{}, "no AMQP URL"},
		{"not AMQP", Config{URL: "http://nova:s3cret@mq.example/"}, "not an amqp://"},
		{"bad port, password never repeated", Config{URL: "amqp://nova:s3cret@mq.example:port/"}, "not an amqp://"},
		{"queue type", Config{URL: "amqp://mq/", QueueType: "stream"}, "queue type"},
		{"prefetch", Config{URL: "amqp://mq/", Prefetch: -1}, "prefetch"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg, nopSink)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Fatalf("error repeats the password: %v", err)
			}
		})
	}
	if _, err := New(Config{URL: "amqp://mq/"}, nil); err == nil {
		t.Error("no sink accepted")
	}
}

func TestRedactURL(t *testing.T) {
	tests := map[string]string{
		"amqp://nova:s3cret@mq:5672/":      "amqp://nova:xxxxx@mq:5672/",
		"amqp://nova:s%2Fcr%40t@mq:5672/v": "amqp://nova:xxxxx@mq:5672/v",
		"amqp://mq/":                       "amqp://mq/",
		"amqp://nova:s3cret@mq:port/":      "(unparsable URL)",
	}
	for in, want := range tests {
		if got := RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
	r := newRedactor("amqp://nova:s%2Fcr%40t@mq:5672/")
	if got := r.err(errors.New("failed for s/cr@t and s%2Fcr%40t")).Error(); strings.Contains(got, "cr@t") || strings.Contains(got, "cr%40t") {
		t.Errorf("redacted error %q", got)
	}
}

func TestBackoff(t *testing.T) {
	min, max := 100*time.Millisecond, time.Second
	want := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for i, w := range want {
		if got := backoff(min, max, i, nil); got != w*time.Millisecond {
			t.Errorf("attempt %d: %v, want %v", i, got, w*time.Millisecond)
		}
	}
	for i := range 40 {
		for _, r := range []float64{0, 0.5, 0.999} {
			d := backoff(min, max, i, func() float64 { return r })
			if d < 80*time.Millisecond || d > max {
				t.Errorf("attempt %d, rand %v: %v out of bounds", i, r, d)
			}
		}
	}
}

func TestPermanent(t *testing.T) {
	base := errors.New("refused")
	err := Permanent(base)
	var p *PermanentError
	if !errors.As(err, &p) || !errors.Is(err, base) {
		t.Fatalf("Permanent(%v) = %v", base, err)
	}
	if Permanent(nil) != nil {
		t.Error("Permanent(nil) is not nil")
	}
}

// TestRunReconnectsAndStops: with no broker listening, Run retries with
// backoff, counts each attempt, never logs the password, and returns nil
// once its context is cancelled.
func TestRunReconnectsAndStops(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	core, logs := observer.New(zap.DebugLevel)
	reg := prometheus.NewRegistry()
	r, err := New(Config{URL: "amqp://nova:s3cret-pw@" + addr + "/", ReconnectMin: 10 * time.Millisecond,
		ReconnectMax: 40 * time.Millisecond}, nopSink, WithLogger(zap.New(core)), WithRegisterer(reg))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for testutil.ToFloat64(r.m.reconnects) < 3 {
		if time.Now().After(deadline) {
			t.Fatal("fewer than 3 reconnection attempts in 10 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if testutil.ToFloat64(r.m.connected) != 0 {
		t.Error("connected while no broker listens")
	}
	if n := logs.FilterMessage("AMQP connection lost; reconnecting").Len(); n < 3 {
		t.Errorf("%d reconnection lines", n)
	}
	for _, e := range logs.All() {
		line := e.Message
		for k, v := range e.ContextMap() {
			line += " " + k + "=" + fmt.Sprint(v)
		}
		if strings.Contains(line, "s3cret-pw") {
			t.Fatalf("a log line repeats the password: %s", line)
		}
		if !strings.Contains(line, "amqp://nova:xxxxx@") {
			t.Errorf("a log line without the redacted URL: %s", line)
		}
	}
	if n, err := testutil.GatherAndCount(reg, "ledgerfence_recorder_messages_total"); err != nil || n != len(Results()) {
		t.Errorf("messages_total series: %d, %v", n, err)
	}
}
