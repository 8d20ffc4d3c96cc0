// Command recorder is the first witness of residency evidence: it reads
// Nova's versioned notifications from RabbitMQ (pkg/recorder) and records
// each VM move as a placement on ledgerfence's ledger (witness nova), with
// the credential of role recorder: a writer token of filterd's embedded
// ledger, or a Fabric identity with ledgerfence.role=recorder. A message is
// acknowledged only once its placement is committed; run two for
// availability: they share the queue, and a message recorded twice is
// recorded once (its Nova message id is the placement's reference).
//
// Configuration: flags, LEDGERFENCE_* variables and an optional YAML file
// (--config), flags first. Run with --help for the flags. The AMQP URL
// carries the broker's password: give it in the environment
// (LEDGERFENCE_AMQP_URL) or the file rather than on the command line. It is
// never logged.
//
// Exit codes: 0 stopped by a signal; 1 error; 2 usage or invalid
// configuration.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/ledgerfence/ledgerfence/pkg/config"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/backend"
	"github.com/ledgerfence/ledgerfence/pkg/recorder"
)

type settings struct {
	ConfigFile    string
	AMQP          recorder.Config
	Ledger        backend.Settings
	MetricsListen string
	LogLevel      string
	LogFormat     string
}

func load(args []string, getenv func(string) string, out io.Writer) (settings, error) {
	s := settings{LogLevel: "info", LogFormat: "json"}
	fs := flag.NewFlagSet("recorder", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&s.ConfigFile, config.FileFlag, "", "YAML configuration file (keys are the flag names)")
	fs.StringVar(&s.AMQP.URL, "amqp-url", "", "RabbitMQ of Nova's notifications, amqp://user:password@host:5672/vhost (as nova.conf's transport_url); prefer LEDGERFENCE_AMQP_URL")
	fs.StringVar(&s.AMQP.Exchange, "exchange", recorder.DefaultExchange, "Nova's notification exchange (oslo.messaging's control_exchange)")
	fs.StringVar(&s.AMQP.Queue, "queue", recorder.DefaultQueue, "the recorders' shared durable queue")
	fs.StringVar(&s.AMQP.QueueType, "queue-type", "", "classic or quorum (default: the broker's)")
	fs.IntVar(&s.AMQP.Prefetch, "prefetch", recorder.DefaultPrefetch, "deliveries the broker sends ahead of acknowledgements")
	s.Ledger.Flags(fs, "", backend.Remote, backend.Fabric)
	fs.StringVar(&s.MetricsListen, "metrics-listen", "", "address for /metrics and /healthz, e.g. 127.0.0.1:9466; empty: none")
	fs.StringVar(&s.LogLevel, "log-level", s.LogLevel, "debug, info, warn or error")
	fs.StringVar(&s.LogFormat, "log-format", s.LogFormat, "json or console")
	fs.Usage = func() { config.Usage(fs, out, "usage: recorder [flags]\n\n") }
	if _, err := config.Load(fs, args, getenv, config.Options{ReadFile: os.ReadFile}); err != nil {
		return s, err
	}
	if fs.NArg() > 0 {
		return s, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if err := s.Ledger.Validate(backend.Remote, backend.Fabric); err != nil {
		return s, err
	}
	return s, nil
}

func main() {
	s, err := load(os.Args[1:], os.Getenv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "recorder:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err = run(ctx, s)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "recorder:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, s settings) error {
	log, err := config.Logger(s.LogLevel, s.LogFormat)
	if err != nil {
		return err
	}
	defer log.Sync() //nolint:errcheck
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	l, err := backend.Open(ctx, s.Ledger, backend.Options{})
	if err != nil {
		return err
	}
	defer l.Close()
	r, err := recorder.New(s.AMQP, recorder.Ledger{L: l}, recorder.WithLogger(log), recorder.WithRegisterer(reg))
	if err != nil {
		return err
	}
	if s.MetricsListen != "" {
		ln, err := net.Listen("tcp", s.MetricsListen)
		if err != nil {
			return fmt.Errorf("--metrics-listen %s: %w", s.MetricsListen, err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
		mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) }) //nolint:errcheck
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go srv.Serve(ln) //nolint:errcheck
		defer srv.Close()
		log.Info("serving /metrics", zap.String("listen", ln.Addr().String()))
	}
	log.Info("recorder starting", zap.String("amqp", recorder.RedactURL(s.AMQP.URL)), zap.String("queue", s.AMQP.Queue),
		zap.String("ledger", s.Ledger.Ledger))
	return r.Run(ctx)
}
