package api

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Limits, the closed set of the limit label of
// ledgerfence_limit_exceeded_total: each bound filterd puts on what a
// client can make it hold.
const (
	// LimitMaxBody: a webhook body over --max-body.
	LimitMaxBody = "max_body"
	// LimitBuffered: webhook bodies held at once over --max-buffered.
	LimitBuffered = "max_buffered"
	// LimitInFlight: webhook requests being decided at once over
	// --max-in-flight.
	LimitInFlight = "max_in_flight"
	// LimitLargeInFlight: a large webhook body that waited longer than
	// --decision-timeout for its turn (--max-large-in-flight).
	LimitLargeInFlight = "max_large_in_flight"
	// LimitReadTimeout: a webhook body not received within --read-timeout.
	LimitReadTimeout = "read_timeout"
	// LimitRESTInFlight: a heavy REST read over --max-rest-in-flight.
	LimitRESTInFlight = "max_rest_in_flight"
	// LimitConnections: a connection closed to keep them within
	// --max-connections.
	LimitConnections = "max_connections"
	// LimitStreams: event streams over --max-streams.
	LimitStreams = "max_streams"
	// LimitDecisionBytes: decisions evicted early to keep the store under
	// --decision-bytes.
	LimitDecisionBytes = "decision_bytes"
)

// Limits lists every limit label.
func Limits() []string {
	return []string{LimitMaxBody, LimitBuffered, LimitInFlight, LimitLargeInFlight, LimitReadTimeout, LimitRESTInFlight, LimitConnections, LimitStreams, LimitDecisionBytes}
}

// admission bounds the webhook's work: the bytes of request bodies held in
// memory, and the requests being decided.
//
// Bodies are charged as their bytes arrive, never from the length a client
// declares, so that a client that declares much and sends little holds
// nothing. A body larger than largeBody may use only half of the budget: the
// other half is kept for the requests of ordinary size, which Nova sends,
// so that large bodies, however many, cannot starve them.
type admission struct {
	maxBuffered int64
	largeBody   int64
	maxInFlight int64
	// large holds a token per large body being decided; draining one per
	// body being read and discarded.
	large    chan struct{}
	draining chan struct{}

	mu       sync.Mutex
	buffered int64

	inFlight atomic.Int64
}

func newAdmission(maxBuffered, largeBody int64, maxInFlight, maxLarge int) *admission {
	return &admission{maxBuffered: maxBuffered, largeBody: largeBody, maxInFlight: int64(maxInFlight),
		large: make(chan struct{}, maxLarge), draining: make(chan struct{}, maxDraining)}
}

// register exports the admission's state.
func (a *admission) register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "ledgerfence_webhook_buffered_bytes",
			Help: "Bytes of webhook bodies held in memory (bounded by --max-buffered).",
		}, func() float64 {
			a.mu.Lock()
			defer a.mu.Unlock()
			return float64(a.buffered)
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "ledgerfence_webhook_in_flight",
			Help: "Webhook requests being decided (bounded by --max-in-flight).",
		}, func() float64 { return float64(a.inFlight.Load()) }),
	} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// charge takes n more bytes of the budget for a body; a large one (over
// largeBody, or of unknown length) may only use half of it. false when the
// budget cannot hold them.
func (a *admission) charge(n int64, large bool) bool {
	limit := a.maxBuffered
	if large {
		limit = a.maxBuffered / 2
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.buffered+n > limit {
		return false
	}
	a.buffered += n
	return true
}

// release gives back n bytes.
func (a *admission) release(n int64) {
	if n == 0 {
		return
	}
	a.mu.Lock()
	a.buffered -= n
	a.mu.Unlock()
}

// enter admits a request to be decided; false when too many are.
func (a *admission) enter() bool {
	if a.inFlight.Add(1) > a.maxInFlight {
		a.inFlight.Add(-1)
		return false
	}
	return true
}

// ticket is what one webhook request holds of the admission: the bytes its
// body took, its place among the requests being decided, and the large
// requests' turn.
type ticket struct {
	a              *admission
	held           int64
	entered, large bool
}

// release gives back all the ticket holds; a second call does nothing.
func (t *ticket) release() {
	if t.large {
		<-t.a.large
		t.large = false
	}
	if t.entered {
		t.a.inFlight.Add(-1)
		t.entered = false
	}
	t.a.release(t.held)
	t.held = 0
}

// readChunk is how much of a body is read (and charged) at a time, at most;
// firstRead what is set aside before any byte arrived.
const (
	readChunk = 64 << 10
	firstRead = 1 << 10
)

// errOverBudget, errTooLarge: why readBody stopped.
var (
	errOverBudget = errors.New("webhook bodies held in memory are at their bound")
	errTooLarge   = errors.New("body too large")
)

// readBody reads a body of the declared length (-1: unknown) into buf,
// charging the admission budget as the bytes arrive; held is what was
// charged, to be released by the caller. A body is large from its first
// byte when it declares more than largeBody, or nothing; one that declares
// less cannot send more. Past limit bytes it stops with errTooLarge; when
// the budget cannot hold the next chunk, with errOverBudget.
func (a *admission) readBody(body io.Reader, declared, limit int64, buf *bytes.Buffer) (held int64, err error) {
	buf.Reset()
	large := declared < 0 || declared > a.largeBody
	for {
		// Memory grows with what arrived, from a small first read, never
		// with what is declared.
		buf.Grow(min(readChunk, max(firstRead, buf.Len())))
		b := buf.AvailableBuffer()
		b = b[:min(cap(b), readChunk)]
		n, rerr := body.Read(b)
		if n > 0 {
			total := int64(buf.Len() + n)
			if total > limit {
				return held, errTooLarge
			}
			if !a.charge(int64(n), large || total > a.largeBody) {
				return held, errOverBudget
			}
			held += int64(n)
			buf.Write(b[:n])
		}
		if rerr == io.EOF {
			return held, nil
		}
		if rerr != nil {
			return held, rerr
		}
	}
}

// drainLimit bounds what is read and discarded of a body filterd does not
// decide on, so that the client, which sends its whole body before it
// reads, gets the answer instead of a reset connection.
const drainLimit = 256 << 20

// maxDraining bounds the bodies read and discarded at once: each one that
// is still arriving keeps a goroutine runnable, and a hundred of them would
// make the goroutine of an ordinary request wait for its turn on a core.
const maxDraining = 4

// drain reads and discards what is left of r's body, up to drainLimit or
// the request's read deadline, maxDraining at a time; the others wait for
// their turn (no longer than the read deadline's length, d).
func (a *admission) drain(r *http.Request, d time.Duration) {
	var probe [1]byte
	n, err := r.Body.Read(probe[:])
	if n == 0 && err != nil {
		return // nothing left: no turn needed
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case a.draining <- struct{}{}:
		defer func() { <-a.draining }()
	case <-t.C:
	}
	_, _ = io.CopyN(io.Discard, r.Body, drainLimit)
}

// isTimeout reports whether err is a read deadline passing.
func isTimeout(err error) bool {
	var ne interface{ Timeout() bool }
	return errors.As(err, &ne) && ne.Timeout()
}

// setReadDeadline bounds the time to receive a webhook request's body.
func setReadDeadline(w http.ResponseWriter, start time.Time, d time.Duration) {
	_ = http.NewResponseController(w).SetReadDeadline(start.Add(d))
}

// setWriteDeadline bounds the time for the answer to leave: a client that
// does not read it holds only its connection, for that long.
func setWriteDeadline(w http.ResponseWriter, d time.Duration) {
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(d))
}

func formatBytes(n int64) string { return strconv.FormatInt(n, 10) + " bytes" }
