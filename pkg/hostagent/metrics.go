package hostagent

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ledgerfence/ledgerfence/pkg/filter"
)

// Metrics are the host agent's, on the registry main makes. Labels hold only
// bounded values: reasons and outcomes, never host names or VM ids.
type Metrics struct {
	violations     *prometheus.GaugeVec
	servers        prometheus.Gauge
	sweeps         *prometheus.CounterVec
	sweepDuration  prometheus.Histogram
	lastSweep      prometheus.Gauge
	registrations  *prometheus.CounterVec
	registered     prometheus.Gauge
	ledgerUp       prometheus.Gauge
	publishFailure prometheus.Counter
	placements     *prometheus.CounterVec
}

// NewMetrics registers the host agent's metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		placements: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ledgerfence_hostagent_placements_total",
			Help: "Placements this host agent recorded as a witness, by op (observed, gone) and outcome (written, unchanged, error).",
		}, []string{"op", "outcome"}),
		violations: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ledgerfence_hostagent_violations",
			Help: "VMs on this host whose regulation the host breaks, by reason, as of the last sweep.",
		}, []string{"reason"}),
		servers: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ledgerfence_hostagent_servers",
			Help: "Servers on this host in the last sweep.",
		}),
		sweeps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ledgerfence_hostagent_sweeps_total",
			Help: "Compliance sweeps, by outcome (ok, error).",
		}, []string{"outcome"}),
		sweepDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "ledgerfence_hostagent_sweep_duration_seconds",
			Help:    "Duration of a compliance sweep.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2.5, 10),
		}),
		lastSweep: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ledgerfence_hostagent_last_sweep_timestamp_seconds",
			Help: "Unix time of the last successful sweep.",
		}),
		registrations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ledgerfence_hostagent_registration_attempts_total",
			Help: "Registration attempts, by outcome (written, unchanged, unavailable, error).",
		}, []string{"outcome"}),
		registered: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ledgerfence_hostagent_registered",
			Help: "1 when the ledger holds this host's current facts.",
		}),
		ledgerUp: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ledgerfence_hostagent_ledger_up",
			Help: "1 when the ledger answered the last call.",
		}),
		publishFailure: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ledgerfence_hostagent_violation_publish_failures_total",
			Help: "Violations that could not be published.",
		}),
	}
	for _, r := range filter.Reasons() {
		m.violations.WithLabelValues(string(r))
	}
	for _, o := range []string{"ok", "error"} {
		m.sweeps.WithLabelValues(o)
	}
	for _, o := range []string{"written", "unchanged", "unavailable", "error"} {
		m.registrations.WithLabelValues(o)
	}
	reg.MustRegister(m.violations, m.servers, m.sweeps, m.sweepDuration, m.lastSweep,
		m.registrations, m.registered, m.ledgerUp, m.publishFailure, m.placements)
	return m
}

func (m *Metrics) registration(outcome string) {
	if m == nil {
		return
	}
	m.registrations.WithLabelValues(outcome).Inc()
	switch outcome {
	case "written", "unchanged":
		m.registered.Set(1)
		m.ledgerUp.Set(1)
	case "unavailable":
		m.ledgerUp.Set(0)
	}
}
