package api

import (
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/nova"
)

// Webhook outcomes, the closed set of the outcome label.
const (
	// OutcomeAllowedAll: every candidate passed.
	OutcomeAllowedAll = "allowed_all"
	// OutcomeAllowedSome: some passed, some were denied.
	OutcomeAllowedSome = "allowed_some"
	// OutcomeDeniedAll: the ledger answered and no candidate passed.
	OutcomeDeniedAll = "denied_all"
	// OutcomeNoHosts: Nova sent no candidate.
	OutcomeNoHosts = "no_hosts"
	// OutcomeFailClosed: the ledger could not answer in time; no host
	// passed.
	OutcomeFailClosed = "fail_closed"
	// Requests filterd could not decide, answered {"hosts": []}:
	// OutcomeRequestInvalid: a body it could not read, decode or use (too
	// large, too slow, malformed, invalid identifiers);
	// OutcomeOverloaded: past one of its bounds (--max-in-flight,
	// --max-buffered); OutcomeUnauthorized: no valid webhook token.
	OutcomeRequestInvalid = "request_invalid"
	OutcomeOverloaded     = "overloaded"
	OutcomeUnauthorized   = "unauthorized"
	// OutcomeMethodNotAllowed: not a POST, the one non-200 answer.
	OutcomeMethodNotAllowed = "method_not_allowed"
)

// Outcomes lists every outcome label.
func Outcomes() []string {
	return []string{OutcomeAllowedAll, OutcomeAllowedSome, OutcomeDeniedAll, OutcomeNoHosts, OutcomeFailClosed,
		OutcomeRequestInvalid, OutcomeOverloaded, OutcomeUnauthorized, OutcomeMethodNotAllowed}
}

// opUnknown labels requests whose operation could not be read.
const opUnknown = "unknown"

func operations() []string { return append(nova.Operations(), opUnknown) }

type metrics struct {
	// requests[operation][outcome], indexed as operations() and Outcomes().
	requests  map[string]map[string]prometheus.Counter
	denied    map[filter.Reason]prometheus.Counter
	duration  prometheus.Observer
	hosts     prometheus.Observer
	httpCount *prometheus.CounterVec
	limits    map[string]prometheus.Counter
	streams   prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ledgerfence_webhook_requests_total",
		Help: "Nova webhook requests by operation (_nova_check_type) and outcome.",
	}, []string{"operation", "outcome"})
	denied := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ledgerfence_hosts_denied_total",
		Help: "Candidate hosts removed from Nova's answers, by reason.",
	}, []string{"reason"})
	duration := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "ledgerfence_webhook_request_duration_seconds",
		Help:    "Time to answer a Nova webhook request, from the first byte read to the answer written.",
		Buckets: []float64{.0001, .00025, .0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1},
	})
	hosts := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "ledgerfence_webhook_candidate_hosts",
		Help:    "Distinct candidate hosts per Nova webhook request.",
		Buckets: []float64{1, 5, 10, 50, 100, 500, 1000, 5000, 10000},
	})
	httpCount := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ledgerfence_api_requests_total",
		Help: "REST API requests by route pattern, method and status code.",
	}, []string{"route", "method", "code"})
	limits := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ledgerfence_limit_exceeded_total",
		Help: "Requests (or stored decisions) that met one of filterd's bounds, by limit; a webhook request that meets one is answered {\"hosts\": []}.",
	}, []string{"limit"})
	streams := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "ledgerfence_event_streams",
		Help: "Event streams (GET /v1/events) being served.",
	})
	for _, c := range []prometheus.Collector{requests, denied, duration, hosts, httpCount, limits, streams} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	m := &metrics{
		requests:  make(map[string]map[string]prometheus.Counter),
		denied:    make(map[filter.Reason]prometheus.Counter),
		duration:  duration,
		hosts:     hosts,
		httpCount: httpCount,
		limits:    make(map[string]prometheus.Counter),
		streams:   streams,
	}
	for _, l := range Limits() {
		m.limits[l] = limits.WithLabelValues(l)
	}
	for _, op := range operations() {
		m.requests[op] = make(map[string]prometheus.Counter)
		for _, out := range Outcomes() {
			m.requests[op][out] = requests.WithLabelValues(op, out)
		}
	}
	for _, r := range filter.Reasons() {
		m.denied[r] = denied.WithLabelValues(string(r))
	}
	return m, nil
}

// request counts one webhook request; op is a nova.Op constant or opUnknown.
func (m *metrics) request(op, outcome string) {
	byOutcome, ok := m.requests[op]
	if !ok {
		byOutcome = m.requests[nova.OpOther]
	}
	byOutcome[outcome].Inc()
}

// limit counts a bound met.
func (m *metrics) limit(name string) { m.limits[name].Inc() }

// deniedHosts counts a result's denied hosts by reason.
func (m *metrics) deniedHosts(res *filter.Result) {
	if res.Allowed == len(res.Verdicts) {
		return
	}
	for r, c := range m.denied {
		if n := res.Denied(r); n > 0 {
			c.Add(float64(n))
		}
	}
}

// instrument counts the requests of a route; route is its pattern, never
// the request's path.
func (m *metrics) instrument(route string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		h.ServeHTTP(sw, r)
		method := r.Method
		switch method {
		case http.MethodGet, http.MethodPut, http.MethodPost, http.MethodDelete, http.MethodHead:
		default:
			method = "other"
		}
		m.httpCount.WithLabelValues(route, method, strconv.Itoa(sw.status)).Inc()
	})
}

// statusWriter remembers the status written.
type statusWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.status = code
		w.wrote = true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection (flushes and
// deadlines of the event stream).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
