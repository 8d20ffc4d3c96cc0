package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/ledgerfence/ledgerfence/pkg/api"
	"github.com/ledgerfence/ledgerfence/pkg/cache"
	"github.com/ledgerfence/ledgerfence/pkg/decisionlog"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/backend"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/head"
	"github.com/ledgerfence/ledgerfence/pkg/notify"
	"github.com/ledgerfence/ledgerfence/pkg/residency"
)

// Ledger backends, the values of --ledger.
const (
	backendEmbedded = backend.Embedded
	backendFabric   = backend.Fabric
)

// ledgerBackend is an open ledger, whether filterd writes to it for REST
// clients, and the cache settings it needs.
type ledgerBackend struct {
	ledger.Ledger
	name     string
	writable bool
	cache    cache.Config
	// publish, when set, sends the ledger's signed heads out (NATS).
	publish func(head.Signed)
	// writers, when set, authenticates the writer tokens of REST writes
	// (the embedded ledger's tokens file).
	writers api.Writers
}

// openLedger opens the backend named by cfg.Ledger through
// pkg/ledger/backend, as every command does, with what filterd adds: the
// head signer of the embedded ledger, the cache settings and the event
// checkpoint of Fabric.
func openLedger(cfg config, log *zap.Logger) (*ledgerBackend, error) {
	switch cfg.Kind() {
	case backendEmbedded:
		return openEmbedded(cfg, log)
	case backendFabric:
		return openFabric(cfg, log)
	}
	return nil, cfg.Settings.Validate(backendEmbedded, backendFabric)
}

// run serves until ctx ends, then shuts down gracefully. onListen, when set,
// is told the address being served (tests listen on port 0).
func run(ctx context.Context, cfg config, log *zap.Logger, onListen func(net.Addr)) (err error) {
	reg := prometheus.NewRegistry()
	if err := registerAll(reg,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	); err != nil {
		return err
	}

	tlsConfig, err := serverTLS(cfg)
	if err != nil {
		return err
	}

	led, err := openLedger(cfg, log)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := led.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("closing the ledger: %w", cerr)
		}
	}()

	apiCfg := api.Config{
		DenyUnregulated:  cfg.DenyUnregulated,
		AdminToken:       cfg.AdminToken,
		ReadToken:        cfg.ReadToken,
		WebhookToken:     cfg.WebhookToken,
		Backend:          led.name,
		Writable:         led.writable,
		MaxBodyBytes:     cfg.MaxBody,
		MaxBuffered:      cfg.MaxBuffered,
		MaxInFlight:      cfg.MaxInFlight,
		MaxLargeInFlight: cfg.MaxLargeInFlight,
		MaxRESTInFlight:  cfg.MaxRESTInFlight,
		ReadTimeout:      cfg.ReadTimeout,
		MaxStreams:       cfg.MaxStreams,
		Decisions:        cfg.Decisions,
		DecisionBytes:    cfg.DecisionBytes,
		DecisionTimeout:  cfg.DecisionTimeout,
	}
	if led.writers != nil {
		apiCfg.Writers = led.writers
	}
	cacheCfg := led.cache
	// Placements one witness recorded and the other did not confirm in
	// time: counted, logged, and published when NATS is configured.
	discrepancies := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ledgerfence_placement_discrepancies_total",
		Help: "Placements one witness recorded and the other did not confirm within the bound, by kind (not_confirmed: Nova's word alone; host_agent_only).",
	}, []string{"kind"})
	for _, k := range []string{residency.KindNotConfirmed, residency.KindHostAgentOnly} {
		discrepancies.WithLabelValues(k)
	}
	if err := reg.Register(discrepancies); err != nil {
		return err
	}
	var publishDiscrepancy func(residency.Discrepancy)
	tracker := &residency.Tracker{Bound: cfg.WitnessBound, Emit: func(d residency.Discrepancy) {
		discrepancies.WithLabelValues(d.Label()).Inc()
		log.Warn("placement discrepancy: "+d.Kind, zap.String("instance_uuid", d.Placement.VM), zap.String("host", d.Placement.Host),
			zap.String("witness", d.Placement.Witness), zap.Time("at", d.Placement.At), zap.String("tx_id", d.Placement.TxID))
		if publishDiscrepancy != nil {
			publishDiscrepancy(d)
		}
	}}
	cacheCfg.OnEvent = tracker.Observe
	cacheCfg.MaxAbsentHosts = cfg.MaxAbsentHosts
	cacheCfg.MaxRegulations = cfg.MaxRegulations
	cacheCfg.MaxStaleness = cfg.MaxStaleness
	if cfg.NATS != "" {
		pub, err := notify.Connect(cfg.NATS, notify.WithName("filterd"), notify.WithLogger(log.Named("notify")), notify.WithRegisterer(reg))
		if err != nil {
			return fmt.Errorf("NATS: %w", err)
		}
		defer func() {
			ctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
			defer cancel()
			if err := pub.Close(ctx); err != nil {
				log.Warn("closing the NATS publisher", zap.Error(err))
			}
		}()
		apiCfg.Publisher = pub
		cacheCfg.OnEvent = func(ev ledger.Event) {
			tracker.Observe(ev)
			pub.Publish(notify.NewLedgerChanged(ev))
		}
		publishDiscrepancy = func(d residency.Discrepancy) { pub.Publish(notify.NewPlacementDiscrepancy(d)) }
		led.publish = func(s head.Signed) { pub.Publish(notify.NewLedgerHead(s)) }
	}
	if cfg.DecisionLog != "" {
		f, err := decisionlog.Open(decisionlog.Config{Path: cfg.DecisionLog})
		if err != nil {
			return fmt.Errorf("decision log: %w", err)
		}
		defer func() {
			if err := f.Close(); err != nil {
				log.Warn("closing the decision log", zap.Error(err))
			}
		}()
		apiCfg.DecisionLog = zap.New(zapcore.NewTee(log.Core(), decisionlog.NewCore(f, zapcore.InfoLevel)))
	}

	c, err := cache.New(led, log.Named("cache"), reg, cacheCfg)
	if err != nil {
		return err
	}
	srv, err := api.New(led, damageGuard{c, led.Damaged}, log.Named("api"), reg, reg, apiCfg)
	if err != nil {
		return err
	}

	ln, err := api.Listen(ctx, cfg.Listen, cfg.ReceiveBuffer)
	if err != nil {
		return err
	}
	if tlsConfig != nil {
		ln = tls.NewListener(ln, tlsConfig)
	}
	hs := &http.Server{
		Handler:           srv,
		ReadHeaderTimeout: 5 * time.Second,
		// The webhook bounds its body by --read-timeout itself; the REST
		// API by this, and the event stream lifts it.
		ReadTimeout:    60 * time.Second,
		WriteTimeout:   60 * time.Second, // the event stream sets its own per write
		IdleTimeout:    30 * time.Second,
		MaxHeaderBytes: cfg.MaxHeaderBytes,
		ErrorLog:       zap.NewStdLog(log.Named("http")),
		TLSConfig:      tlsConfig,
	}
	hs.ConnState = srv.ConnState(cfg.MaxConnections)
	hs.RegisterOnShutdown(srv.Close)

	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = c.Run(runCtx) // returns when runCtx ends
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		led.publishHeads(runCtx, log.Named("head"), headEvery)
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(max(time.Second, cfg.WitnessBound/15))
		defer t.Stop()
		for {
			select {
			case <-runCtx.Done():
				return
			case now := <-t.C:
				tracker.Expire(now)
			}
		}
	}()
	serveErr := make(chan error, 1)
	go func() { serveErr <- hs.Serve(ln) }()
	log.Info("filterd serving", zap.String("addr", ln.Addr().String()), zap.Bool("tls", tlsConfig != nil),
		zap.Bool("tls_client_certs", cfg.TLSClientCA != ""),
		zap.String("ledger", led.name), zap.Bool("writes", led.writable && (cfg.AdminToken != "" || led.writers != nil)),
		zap.Bool("deny_unregulated", cfg.DenyUnregulated), zap.Bool("nats", cfg.NATS != ""))
	if onListen != nil {
		onListen(ln.Addr())
	}

	select {
	case err = <-serveErr:
		err = fmt.Errorf("serving: %w", err)
	case <-ctx.Done():
		log.Info("shutting down")
		sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
		if serr := hs.Shutdown(sctx); serr != nil {
			log.Warn("requests still running at the shutdown deadline", zap.Error(serr))
			_ = hs.Close()
		}
		cancel()
		<-serveErr // http.ErrServerClosed
	}
	stop()
	wg.Wait()
	return err
}

// serverTLS is the TLS configuration of the listener: nil without
// --tls-cert; with --tls-client-ca every client must present a certificate
// that chains to one of its CAs, or the handshake fails.
func serverTLS(cfg config) (*tls.Config, error) {
	if cfg.TLSCert == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
	if err != nil {
		return nil, fmt.Errorf("TLS: %w", err)
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	if cfg.TLSClientCA != "" {
		pem, err := os.ReadFile(cfg.TLSClientCA)
		if err != nil {
			return nil, fmt.Errorf("TLS client CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("TLS client CA: no PEM certificate in %s", cfg.TLSClientCA)
		}
		c.ClientCAs = pool
		c.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return c, nil
}

func registerAll(reg prometheus.Registerer, cs ...prometheus.Collector) error {
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
