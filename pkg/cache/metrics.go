package cache

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Ledger calls, as label values of the query metrics.
const (
	callLookup = iota
	callListHosts
	callHeight
	callWatch
	numCalls
)

func callName(call int) string {
	return [numCalls]string{"lookup", "list_hosts", "height", "watch"}[call]
}

// queryBuckets are the buckets of the ledger query duration histogram, from
// an in-process read to a slow remote ledger.
func queryBuckets() []float64 {
	return []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}
}

type metrics struct {
	requests struct {
		hit, miss, stale prometheus.Counter
	}
	query         [numCalls]prometheus.Observer
	queryErrors   [numCalls]prometheus.Counter
	up            prometheus.Gauge
	streamUp      prometheus.Gauge
	streamBlock   prometheus.Gauge
	lag           prometheus.Gauge
	events        prometheus.Counter
	reconnects    prometheus.Counter
	evictions     prometheus.Counter
	absentDropped prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, c *Cache) (*metrics, error) {
	m := &metrics{}
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ledgerfence_cache_requests_total",
		Help: "Cache resolutions by result: hit (no ledger call), miss (one batched ledger lookup) or stale (the cache is not trusted: one lookup of everything).",
	}, []string{"result"})
	m.requests.hit = requests.WithLabelValues("hit")
	m.requests.miss = requests.WithLabelValues("miss")
	m.requests.stale = requests.WithLabelValues("stale")
	query := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "ledgerfence_ledger_query_duration_seconds",
		Help:    "Duration of the ledger calls the cache makes, by call.",
		Buckets: queryBuckets(),
	}, []string{"call"})
	queryErrors := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ledgerfence_ledger_query_errors_total",
		Help: "Ledger calls of the cache that failed, by call.",
	}, []string{"call"})
	for i := range numCalls {
		m.query[i] = query.WithLabelValues(callName(i))
		m.queryErrors[i] = queryErrors.WithLabelValues(callName(i))
	}
	m.up = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "ledgerfence_ledger_up",
		Help: "1 if the last ledger call answered, 0 if it failed.",
	})
	m.streamUp = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "ledgerfence_event_stream_up",
		Help: "1 while the ledger event stream is open.",
	})
	m.streamBlock = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "ledgerfence_event_stream_block",
		Help: "Block of the last ledger event applied to the cache.",
	})
	m.lag = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "ledgerfence_event_stream_lag_seconds",
		Help: "Time from the commit of the last ledger event applied to the cache to its application.",
	})
	m.events = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "ledgerfence_event_stream_events_total",
		Help: "Ledger events applied to the cache.",
	})
	m.reconnects = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "ledgerfence_event_stream_reconnects_total",
		Help: "Times the ledger event stream broke and was reopened.",
	})
	m.evictions = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "ledgerfence_cache_evictions_total",
		Help: "Times the regulation entries outgrew their bound and some were dropped.",
	})
	m.absentDropped = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "ledgerfence_cache_absent_hosts_dropped_total",
		Help: "Times the entries of unknown hosts met their bound (MaxAbsentHosts) and older ones were dropped.",
	})
	stale := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "ledgerfence_cache_stale",
		Help: "1 when the event stream has been down for longer than --max-staleness: cached entries are not trusted, every decision asks the ledger.",
	}, func() float64 {
		if c.Stale() {
			return 1
		}
		return 0
	})
	age := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "ledgerfence_cache_age_seconds",
		Help: "How stale the cache may be: 0 while the ledger event stream is open, else seconds since it closed (or since start before the first fill).",
	}, c.age)
	entries := &entriesCollector{c: c, desc: prometheus.NewDesc(
		"ledgerfence_cache_entries",
		"Entries in the cache by kind (host, regulation) and state (present: a record; absent: known to have none).",
		[]string{"kind", "state"}, nil),
		unattested: prometheus.NewDesc(
			"ledgerfence_hosts_unattested",
			"Registered hosts whose country and organisations no second organisation has attested (merely claimed), as the cache holds them.",
			nil, nil)}
	for _, col := range []prometheus.Collector{requests, query, queryErrors, m.up, m.streamUp, m.streamBlock,
		m.lag, m.events, m.reconnects, m.evictions, m.absentDropped, stale, age, entries} {
		if err := reg.Register(col); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// entriesCollector reports the cache's entry counts at scrape time.
type entriesCollector struct {
	c          *Cache
	desc       *prometheus.Desc
	unattested *prometheus.Desc
}

func (e *entriesCollector) Describe(ch chan<- *prometheus.Desc) { ch <- e.desc; ch <- e.unattested }

func (e *entriesCollector) Collect(ch chan<- prometheus.Metric) {
	n := e.c.sizes()
	ch <- prometheus.MustNewConstMetric(e.desc, prometheus.GaugeValue, float64(n[hostsPresent]), "host", "present")
	ch <- prometheus.MustNewConstMetric(e.desc, prometheus.GaugeValue, float64(n[hostsAbsent]), "host", "absent")
	ch <- prometheus.MustNewConstMetric(e.desc, prometheus.GaugeValue, float64(n[regsPresent]), "regulation", "present")
	ch <- prometheus.MustNewConstMetric(e.desc, prometheus.GaugeValue, float64(n[regsAbsent]), "regulation", "absent")
	ch <- prometheus.MustNewConstMetric(e.unattested, prometheus.GaugeValue, float64(n[hostsUnattested]))
}
