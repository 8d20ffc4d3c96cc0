// Command filterd answers Nova's external-scheduler webhook from ledgerfence's
// ledger: it removes every candidate host that would break the VM's
// regulation, and explains each removal in its logs, metrics, events and
// GET /v1/decisions/{id}. It also serves the REST API of the ledger, /metrics,
// /healthz and /readyz.
//
// Configuration is by flags or LEDGERFENCE_* environment variables; see
// filterd -h.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

func main() {
	cfg, err := parseConfig(os.Args[1:], os.Getenv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "filterd:", err)
		os.Exit(2)
	}
	log, err := newLogger(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "filterd:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err = run(ctx, cfg, log, nil)
	stop()
	if err != nil {
		log.Error("filterd stopped", zap.Error(err))
	}
	_ = log.Sync()
	if err != nil {
		os.Exit(1)
	}
}

func newLogger(cfg config) (*zap.Logger, error) {
	zc := zap.NewProductionConfig()
	if cfg.LogFormat == "console" {
		zc = zap.NewDevelopmentConfig()
		zc.EncoderConfig.EncodeLevel = zapcore.CapitalLevelEncoder
	}
	zc.Level = zap.NewAtomicLevelAt(cfg.LogLevel)
	zc.EncoderConfig.TimeKey = "ts"
	zc.EncoderConfig.EncodeTime = zapcore.RFC3339NanoTimeEncoder
	zc.Sampling = nil // every decision line counts
	zc.DisableStacktrace = true
	return zc.Build(zap.Fields(zap.String("service", "filterd")))
}
