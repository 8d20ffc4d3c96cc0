package main

import (
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/ledgerfence/ledgerfence/pkg/api"
)

// The time a stampConn tells is when the kernel received the data, not when
// the reader got to it.
func TestStampConnTellsReceipt(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	sent := make(chan time.Time, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		b := make([]byte, 1)
		for { // a byte asks for an answer
			if _, err := c.Read(b); err != nil {
				return
			}
			before := time.Now()
			_, _ = io.WriteString(c, "answer")
			sent <- before
		}
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c, sc := stamp(raw)
	if sc == nil {
		t.Fatal("a TCP connection on Linux does not tell receive times")
	}
	defer c.Close()
	buf := make([]byte, 16)
	// The kernel turns receive times on shortly after it is asked: the
	// first answers may come without one.
	for try := 0; ; try++ {
		sc.reset()
		if _, err := c.Write([]byte{1}); err != nil {
			t.Fatal(err)
		}
		before := <-sent
		time.Sleep(100 * time.Millisecond) // the answer waits in the socket
		n, err := c.Read(buf)
		read := time.Now()
		if err != nil || string(buf[:n]) != "answer" {
			t.Fatalf("read %q, %v", buf[:n], err)
		}
		if sc.last.IsZero() && try < 5 {
			continue
		}
		if sc.last.Before(before) || read.Sub(sc.last) < 90*time.Millisecond {
			t.Errorf("received at %v: want from the write (%v) and well before the read (%v)", sc.last, before, read)
		}
		break
	}
	sc.reset()
	if !sc.last.IsZero() {
		t.Error("reset kept the receive time")
	}
	_ = raw.(*net.TCPConn).CloseWrite()
	if n, err := c.Read(buf); n != 0 || err != io.EOF {
		t.Errorf("after the peer closed: %d, %v; want 0, EOF", n, err)
	}
}

// post tells when the answer reached the socket, over http and https: after
// the server wrote it, and within the post.
func TestWireTellsArrival(t *testing.T) {
	const delay = 30 * time.Millisecond
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		time.Sleep(delay) // the answer leaves this long after the request
		w.Header().Set(api.HeaderDecision, "d")
		_, _ = io.WriteString(w, `{"hosts":[]}`)
	})
	for _, tlsOn := range []bool{false, true} {
		srv := httptest.NewUnstartedServer(h)
		if tlsOn {
			srv.StartTLS()
		} else {
			srv.Start()
		}
		w, err := newWire(t.Context(), srv.URL, requestBody(2))
		if err != nil {
			t.Fatal(err)
		}
		if tlsOn {
			w.tls.RootCAs = x509.NewCertPool()
			w.tls.RootCAs.AddCert(srv.Certificate())
			w.tls.ServerName = "example.com"
		}
		// The first post connects, the others reuse the connection. The
		// kernel may tell no receive time for the first answers after the
		// process asked for them; it must for the last.
		for i := range 3 {
			t0 := time.Now()
			arrived, err := w.post()
			end := time.Now()
			if err != nil {
				t.Fatal(err)
			}
			if arrived.IsZero() && i < 2 {
				continue
			}
			if arrived.IsZero() || arrived.Sub(t0) < delay || arrived.After(end) {
				t.Errorf("tls %v: answer arrived at %v; want from %v after the post began (%v) to its end (%v)", tlsOn, arrived, delay, t0, end)
			}
		}
		w.close()
		srv.Close()
	}
}
