package main

import (
	"context"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ledgerfence/ledgerfence/pkg/api"
	"github.com/ledgerfence/ledgerfence/pkg/nova"
)

func TestWire(t *testing.T) {
	body := requestBody(3)
	var conns atomic.Int32
	var status atomic.Int32
	status.Store(http.StatusOK)
	var decisionID, closing atomic.Bool
	decisionID.Store(true)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, err := io.ReadAll(r.Body)
		if r.Method != http.MethodPost || r.URL.Path != nova.Path || r.Header.Get("Content-Type") != "application/json" ||
			err != nil || string(got) != string(body) {
			t.Errorf("server got %s %s %q, a body of %d bytes (%v)", r.Method, r.URL.Path, r.Header.Get("Content-Type"), len(got), err)
		}
		if decisionID.Load() {
			w.Header().Set(api.HeaderDecision, "d")
		}
		if closing.Load() {
			w.Header().Set("Connection", "close")
		}
		w.WriteHeader(int(status.Load()))
		_, _ = io.WriteString(w, `{"hosts":[]}`)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()

	w, err := newWire(t.Context(), srv.URL+"/", body)
	if err != nil {
		t.Fatal(err)
	}
	defer w.close()
	for range 3 {
		if _, err := w.post(); err != nil {
			t.Fatal(err)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("3 posts took %d connections, want 1", n)
	}

	status.Store(http.StatusBadRequest)
	if _, err := w.post(); err == nil || !strings.Contains(err.Error(), "400") {
		t.Errorf("a 400 answer gives %v", err)
	}
	status.Store(http.StatusOK)
	decisionID.Store(false)
	if _, err := w.post(); err == nil || !strings.Contains(err.Error(), "decision id") {
		t.Errorf("an answer without a decision id gives %v", err)
	}
	decisionID.Store(true)

	// A server that closes the connection gets a new one on the next post.
	closing.Store(true)
	if _, err := w.post(); err != nil {
		t.Fatal(err)
	}
	closing.Store(false)
	if _, err := w.post(); err != nil {
		t.Fatal(err)
	}
	if n := conns.Load(); n != 2 {
		t.Errorf("after the server closed one, %d connections, want 2", n)
	}
}

func TestWireStopsWithItsContext(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		<-release
	}))
	defer srv.Close()
	defer close(release)
	ctx, cancel := context.WithCancel(t.Context())
	w, err := newWire(ctx, srv.URL, requestBody(1))
	if err != nil {
		t.Fatal(err)
	}
	defer w.close()
	done := make(chan error, 1)
	go func() { _, err := w.post(); done <- err }()
	time.Sleep(50 * time.Millisecond) // the post is waiting for its answer
	cancel()
	select {
	case err := <-done:
		if err == nil {
			t.Error("a post cut short by its context succeeded")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a post kept waiting after its context ended")
	}
}

func TestWireTLS(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set(api.HeaderDecision, "d")
		_, _ = io.WriteString(w, `{"hosts":[]}`)
	}))
	defer srv.Close()
	w, err := newWire(t.Context(), srv.URL, requestBody(1))
	if err != nil {
		t.Fatal(err)
	}
	defer w.close()
	if _, err := w.post(); err == nil {
		t.Fatal("a server whose certificate the system does not trust was posted to")
	}
	w.tls.RootCAs = x509.NewCertPool()
	w.tls.RootCAs.AddCert(srv.Certificate())
	w.tls.ServerName = "example.com" // httptest's certificate names it
	if _, err := w.post(); err != nil {
		t.Fatal(err)
	}
}

func TestWireRefusesOtherURLs(t *testing.T) {
	for _, u := range []string{"ftp://127.0.0.1:8787", "127.0.0.1:8787", "http://", "http://:8787", "http://[::1"} {
		if _, err := newWire(t.Context(), u, nil); err == nil {
			t.Errorf("newWire(%q) accepted it", u)
		}
	}
}
