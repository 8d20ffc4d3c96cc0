package recorder_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/ledgerfence/ledgerfence/pkg/recorder"
	"github.com/ledgerfence/ledgerfence/pkg/recorder/rabbittest"
)

// TestWrongPassword: a refused login is retried with backoff and logged at
// error level, and neither the wrong password nor the right one is ever
// logged.
func TestWrongPassword(t *testing.T) {
	node := rabbittest.Start(t)
	const wrong = "Wrong-Secret-4711"
	url := strings.Replace(node.URL, ":"+node.Password+"@", ":"+wrong+"@", 1)
	core, logs := observer.New(zap.DebugLevel)
	reg := prometheus.NewRegistry()
	rec, err := recorder.New(recorder.Config{URL: url, ReconnectMin: 50 * time.Millisecond, ReconnectMax: 200 * time.Millisecond},
		newSink(), recorder.WithLogger(zap.New(core)), recorder.WithRegisterer(reg))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{rec: rec, reg: reg, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- rec.Run(ctx) }()
	waitFor(t, 30*time.Second, "three refused logins", func() bool {
		return r.metric("ledgerfence_recorder_reconnects_total", "") >= 3
	})
	r.stop(t)
	errorLines := 0
	for _, e := range logs.All() {
		line := e.Message
		for k, v := range e.ContextMap() {
			line += fmt.Sprintf(" %s=%v", k, v)
		}
		if strings.Contains(line, wrong) || strings.Contains(line, node.Password) {
			t.Fatalf("a log line repeats a password: %s", line)
		}
		if e.Level == zapcore.ErrorLevel && strings.Contains(line, "403") {
			errorLines++
		}
	}
	if errorLines < 3 {
		t.Errorf("%d error lines naming the refusal (403), want at least 3", errorLines)
	}
}
