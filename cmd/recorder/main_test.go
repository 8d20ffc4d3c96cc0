package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestLoad(t *testing.T) {
	env := map[string]string{"LEDGERFENCE_AMQP_URL": "amqp://nova:s3cret@127.0.0.1:5672/", "LEDGERFENCE_LEDGER": "http://127.0.0.1:8080"}
	s, err := load([]string{"--queue", "q1"}, func(k string) string { return env[k] }, &bytes.Buffer{})
	if err != nil || s.AMQP.URL != env["LEDGERFENCE_AMQP_URL"] || s.AMQP.Queue != "q1" || s.Ledger.Ledger != "http://127.0.0.1:8080" {
		t.Fatalf("load = %+v, %v", s, err)
	}
	// The embedded ledger's file belongs to filterd: a recorder writes
	// through it or to Fabric.
	if _, err := load([]string{"--ledger", "embedded", "--data", t.TempDir()}, func(string) string { return "" }, &bytes.Buffer{}); err == nil {
		t.Error("--ledger embedded accepted")
	}
	if _, err := load([]string{"extra"}, func(k string) string { return env[k] }, &bytes.Buffer{}); err == nil {
		t.Error("an argument accepted")
	}
}

// A bad AMQP URL is refused without its password in the words.
func TestRunRefusesABadURLWithoutItsPassword(t *testing.T) {
	s := settings{LogLevel: "error", LogFormat: "json"}
	s.AMQP.URL = "http://nova:s3cret@127.0.0.1/"
	s.Ledger.Ledger = "http://127.0.0.1:1"
	err := run(context.Background(), s)
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("run = %v; want an error without the password", err)
	}
}
