package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/ledgerfence/ledgerfence/pkg/cloud"
	"github.com/ledgerfence/ledgerfence/pkg/config"
	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/hostagent"
)

// run wires the agent's parts and runs it until it is done (--once) or ctx ends.
func run(ctx context.Context, cfg hostagent.Config, getenv func(string) string) error {
	log, err := config.Logger(cfg.LogLevel, cfg.LogFormat)
	if err != nil {
		return fmt.Errorf("%w: %v", hostagent.ErrUsage, err)
	}
	defer log.Sync() //nolint:errcheck

	name, source, err := hostagent.DiscoverName(hostagent.NameSources{
		Flag: cfg.Host, NovaConfs: cfg.NovaConfs, Required: cfg.NovaConfsSet,
		Open:     func(p string) (io.ReadCloser, error) { return os.Open(p) },
		Hostname: os.Hostname,
	})
	if err != nil {
		return fmt.Errorf("%w: %v", hostagent.ErrUsage, err)
	}
	host, err := filter.NormalizeHost(filter.Host{Name: name, Country: cfg.Country, Organizations: cfg.Organizations, Region: cfg.Region})
	if err != nil {
		return fmt.Errorf("%w: host %s: %v", hostagent.ErrUsage, name, err)
	}
	log.Info("hostagent starting", zap.String("host", host.Name), zap.String("name_source", source), zap.String("country", host.Country),
		zap.Strings("organizations", host.Organizations), zap.String("region", host.Region),
		zap.String("ledger", ledgerName(cfg.Ledger)), zap.Bool("once", cfg.Once))

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := hostagent.NewMetrics(reg)

	l, err := openLedger(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer l.Close()
	heads, err := newHeadWitness(cfg, l, log)
	if err != nil {
		return err
	}

	var nova *cloud.Lazy
	if cloud.HasCredentials(getenv) {
		cr, err := cloud.CredentialsFromEnv(getenv)
		if err != nil {
			log.Warn("OpenStack credentials are incomplete: no name check and no sweep", zap.Error(err))
		} else {
			nova = cloud.NewLazy(cr, cloud.WithTimeout(cfg.AttemptTimeout))
		}
	}

	clock := hostagent.SystemClock{}
	agent := &hostagent.Agent{
		Host: host,
		Registrar: &hostagent.Registrar{
			Ledger: l, Backoff: hostagent.DefaultBackoff(rand.Float64), Clock: clock,
			AttemptTimeout: cfg.AttemptTimeout, Log: log, Metrics: metrics,
		},
		Once: cfg.Once, Interval: cfg.Interval, Deadline: cfg.Deadline, Clock: clock, Log: log,
	}
	if heads != nil {
		agent.Registrar.Heads = heads
	}
	if nova != nil {
		agent.Services = nova
	}
	if !cfg.Once {
		if cfg.NATS != "" && (nova == nil || cfg.NoSweep) {
			log.Warn("--nats is set but there is no sweep (no OpenStack credentials, or --no-sweep): nothing will be published")
		}
		if nova != nil && !cfg.NoSweep {
			agent.Sweeper = &hostagent.Sweeper{
				Host: host.Name, Servers: nova, Ledger: l, Options: filter.Options{DenyUnregulated: cfg.DenyUnregulated},
				Clock: clock, Log: log, Metrics: metrics,
			}
			// The host agent is the second witness of where VMs run,
			// where the ledger keeps placements.
			if !cfg.NoWitness {
				agent.Sweeper.Witness = &hostagent.Witness{Host: host.Name, Recorder: l, Clock: clock, Log: log, Metrics: metrics}
			}
			if cfg.NATS != "" {
				pub, err := newPublisher(cfg.NATS, log, reg)
				if err != nil {
					return err
				}
				defer pub.Close()
				agent.Sweeper.Publisher = pub
			}
		}
		if cfg.MetricsListen != "" {
			stopMetrics, err := serveMetrics(cfg.MetricsListen, reg, log)
			if err != nil {
				return err
			}
			defer stopMetrics()
		}
	}
	return agent.Run(ctx)
}

func ledgerName(l string) string {
	if l == "fabric" {
		return l
	}
	return "filterd " + l
}

// serveMetrics serves /metrics and /healthz until the returned stop is called.
func serveMetrics(addr string, reg *prometheus.Registry, log *zap.Logger) (func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%w: --metrics-listen %s: %v", hostagent.ErrUsage, addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) }) //nolint:errcheck
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server stopped", zap.Error(err))
		}
	}()
	log.Info("serving /metrics", zap.String("listen", ln.Addr().String()))
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(ctx) //nolint:errcheck
	}, nil
}
