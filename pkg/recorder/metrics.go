package recorder

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the recorder's, on the registry main makes. Labels hold only
// bounded values.
type Metrics struct {
	messages       *prometheus.CounterVec
	reconnects     prometheus.Counter
	inFlight       prometheus.Gauge
	connected      prometheus.Gauge
	recordDuration prometheus.Histogram
}

// NewMetrics makes the recorder's metrics and registers them on reg, unless
// reg is nil.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ledgerfence_recorder_messages_total",
			Help: "Notifications consumed, by result (recorded, skipped, malformed, retried, rejected).",
		}, []string{"result"}),
		reconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ledgerfence_recorder_reconnects_total",
			Help: "Connections to RabbitMQ lost or refused, each followed by a new attempt.",
		}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ledgerfence_recorder_in_flight",
			Help: "Notifications being parsed and recorded, not yet acked or returned.",
		}),
		connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ledgerfence_recorder_connected",
			Help: "1 while the recorder consumes from RabbitMQ.",
		}),
		recordDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "ledgerfence_recorder_record_duration_seconds",
			Help:    "Duration of the sink's Record of one move.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12),
		}),
	}
	for _, r := range Results() {
		m.messages.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.messages, m.reconnects, m.inFlight, m.connected, m.recordDuration)
	}
	return m
}

func (m *Metrics) setConnected(up bool) {
	if up {
		m.connected.Set(1)
	} else {
		m.connected.Set(0)
	}
}
