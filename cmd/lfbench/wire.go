package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/ledgerfence/ledgerfence/pkg/api"
	"github.com/ledgerfence/ledgerfence/pkg/nova"
)

// wire is one load client's keep-alive HTTP/1.1 connection. It sends a
// prepared request in one write and reads the answer in the caller's
// goroutine, with net/http's parser. net/http's Transport would hand every
// request to two goroutines of its own; on a 2-core machine those hand-offs
// queue behind the server's work and would be measured as the server's
// latency.
type wire struct {
	ctx  context.Context
	addr string
	tls  *tls.Config // for https
	head []byte      // request line and headers
	body []byte
	conn net.Conn
	br   *bufio.Reader
	stop func() bool // unregisters the connection's close at ctx's end
	// stamp tells when the kernel received the answer (nil where it
	// cannot); TLS reads through it.
	stamp *stampConn
}

// newWire prepares webhook requests with body for the server at base
// (http or https, verified with the system's roots); it connects on the
// first post. When ctx ends, the connection closes, and a post under way
// fails at once.
func newWire(ctx context.Context, base string, body []byte) (*wire, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, err
	}
	w := &wire{ctx: ctx, body: body}
	port := "80"
	switch {
	case u.Host == "" || u.Hostname() == "":
		return nil, fmt.Errorf("%q: give http://host:port or https://host:port", base)
	case u.Scheme == "https":
		port = "443"
		w.tls = &tls.Config{ServerName: u.Hostname(), MinVersion: tls.VersionTLS12}
	case u.Scheme != "http":
		return nil, fmt.Errorf("%q: give http://host:port or https://host:port", base)
	}
	w.addr = u.Host
	if u.Port() == "" {
		w.addr = net.JoinHostPort(u.Hostname(), port)
	}
	head := "POST " + strings.TrimSuffix(u.EscapedPath(), "/") + nova.Path + " HTTP/1.1\r\n" +
		"Host: " + u.Host + "\r\n" +
		"Content-Type: application/json\r\n" +
		"Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n"
	w.head = []byte(head)
	return w, nil
}

// post sends the request and reads the whole answer, which must be a 200
// with a decision id. It returns when the kernel received the answer's last
// bytes, or the zero time where the socket cannot tell.
func (w *wire) post() (time.Time, error) {
	if w.conn == nil {
		raw, err := (&net.Dialer{}).DialContext(w.ctx, "tcp", w.addr)
		if err != nil {
			return time.Time{}, err
		}
		c, sc := stamp(raw)
		if w.tls != nil {
			tc := tls.Client(c, w.tls)
			if err := tc.HandshakeContext(w.ctx); err != nil {
				_ = raw.Close()
				return time.Time{}, err
			}
			c = tc
		}
		w.conn, w.br, w.stamp = c, bufio.NewReaderSize(c, 64<<10), sc
		w.stop = context.AfterFunc(w.ctx, func() { _ = raw.Close() })
	}
	if w.stamp != nil {
		w.stamp.reset()
	}
	bufs := net.Buffers{w.head, w.body}
	if _, err := bufs.WriteTo(w.conn); err != nil {
		w.close()
		return time.Time{}, err
	}
	resp, err := http.ReadResponse(w.br, nil)
	if err != nil {
		w.close()
		return time.Time{}, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	var arrived time.Time
	if w.stamp != nil {
		arrived = w.stamp.last
	}
	switch {
	case err != nil:
		w.close()
		return time.Time{}, err
	case resp.StatusCode != http.StatusOK:
		return time.Time{}, fmt.Errorf("status %d", resp.StatusCode)
	case resp.Header.Get(api.HeaderDecision) == "":
		return time.Time{}, errors.New("answer without a decision id")
	}
	if resp.Close {
		w.close()
	}
	return arrived, nil
}

func (w *wire) close() {
	if w.conn != nil {
		w.stop()
		_ = w.conn.Close()
		w.conn = nil
	}
}
