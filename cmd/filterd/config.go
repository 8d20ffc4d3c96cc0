package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"go.uber.org/zap/zapcore"

	"github.com/ledgerfence/ledgerfence/pkg/api"
	"github.com/ledgerfence/ledgerfence/pkg/cache"
	conf "github.com/ledgerfence/ledgerfence/pkg/config"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/backend"
	"github.com/ledgerfence/ledgerfence/pkg/residency"
)

// config is filterd's configuration, from flags and the environment.
type config struct {
	Listen string
	backend.Settings
	AdminToken       string
	ReadToken        string
	WebhookToken     string
	TLSCert          string
	TLSKey           string
	TLSClientCA      string
	DenyUnregulated  bool
	NATS             string
	LogLevel         zapcore.Level
	LogFormat        string
	DecisionLog      string
	Decisions        int
	MaxBody          int64
	MaxBuffered      int64
	MaxInFlight      int
	MaxRESTInFlight  int
	MaxConnections   int
	MaxRegulations   int
	MaxLargeInFlight int
	ReadTimeout      time.Duration
	MaxHeaderBytes   int
	MaxStreams       int
	DecisionBytes    int
	MaxAbsentHosts   int
	MaxStaleness     time.Duration
	WitnessBound     time.Duration
	ReceiveBuffer    int
	DecisionTimeout  time.Duration
	ShutdownTimeout  time.Duration
	// FabricCheckpoint and FabricTimeout are filterd's own Fabric
	// settings: where it records its position in the event stream, and
	// its longest wait for one read.
	FabricCheckpoint string
	FabricTimeout    time.Duration
}

// parseConfig reads the settings from args, the environment and the
// --config file, with pkg/config's one precedence rule.
func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("filterd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.Listen, "listen", ":8787", "address to serve the webhook, the REST API, /metrics and health on")
	c.Data = "/var/lib/ledgerfence"
	c.Settings.Flags(fs, backend.Embedded, backend.Embedded, backend.Fabric)
	fs.StringVar(&c.AdminToken, "admin-token", "", "the operator's bearer token of REST writes, which no access rule checks (bootstrap, repairs); host agents and VM managers hold writer tokens of their own (ledgerctl token issue) (none: only writer tokens write)")
	fs.StringVar(&c.ReadToken, "read-token", "", "bearer token of REST reads (none: reads are open)")
	fs.StringVar(&c.WebhookToken, "webhook-token", "", "bearer token Nova must send to the webhook (none: open)")
	fs.StringVar(&c.TLSCert, "tls-cert", "", "PEM certificate (chain) file: serve HTTPS")
	fs.StringVar(&c.TLSKey, "tls-key", "", "PEM private key file of --tls-cert")
	fs.StringVar(&c.TLSClientCA, "tls-client-ca", "", "PEM file of the CA certificates that client certificates must chain to: every client must present one (mutual TLS; needs --tls-cert)")
	fs.BoolVar(&c.DenyUnregulated, "deny-unregulated", false, "deny every host to VMs that no regulation applies to")
	fs.StringVar(&c.NATS, "nats", "", "NATS URL to publish decisions and ledger changes on (none: no events)")
	fs.TextVar(&c.LogLevel, "log-level", zapcore.InfoLevel, "log level: debug (one line per denied host), info, warn, error")
	fs.StringVar(&c.LogFormat, "log-format", "json", "log format: json or console")
	fs.StringVar(&c.DecisionLog, "decision-log", "", "file to write one JSON line per decision to, rotated by size (none: decisions go to the log only)")
	fs.IntVar(&c.Decisions, "decisions", api.DefaultDecisions, "recent decisions kept for GET /v1/decisions/{id}")
	fs.Int64Var(&c.MaxBody, "max-body", api.DefaultMaxBodyBytes, "largest webhook request body, in bytes (larger: answered {\"hosts\": []})")
	fs.Int64Var(&c.MaxBuffered, "max-buffered", api.DefaultMaxBuffered, "webhook bodies held in memory at once, in bytes; bodies over 1 MiB may use half (past it: {\"hosts\": []}, outcome overloaded)")
	fs.IntVar(&c.MaxInFlight, "max-in-flight", api.DefaultMaxInFlight, "webhook requests being decided at once (past it: {\"hosts\": []} at once, outcome overloaded)")
	fs.IntVar(&c.MaxRESTInFlight, "max-rest-in-flight", api.DefaultMaxRESTInFlight, "heavy REST reads (checks, lookups, host listings, histories) answered at once (past it: 503)")
	fs.IntVar(&c.MaxConnections, "max-connections", 1024, "connections held open at once; past it the one idle longest is closed")
	fs.IntVar(&c.MaxRegulations, "max-regulations", cache.DefaultMaxRegulations, "regulation entries (a subject's regulation, or that it has none) cached; past it some are dropped and read again when needed")
	fs.IntVar(&c.MaxLargeInFlight, "max-large-in-flight", api.DefaultMaxLargeInFlight, "webhook requests with a body over 1 MiB (about 7,000 hosts) decided at once; the others wait up to --decision-timeout for their turn, then get {\"hosts\": []}")
	fs.DurationVar(&c.ReadTimeout, "read-timeout", api.DefaultReadTimeout, "longest time to receive a webhook request's body (past it: {\"hosts\": []}); keep it below Nova's timeout")
	fs.IntVar(&c.MaxHeaderBytes, "max-header-bytes", 64<<10, "largest request header, in bytes")
	fs.IntVar(&c.MaxStreams, "max-streams", api.DefaultMaxStreams, "event streams (GET /v1/events) served at once (past it: 503)")
	fs.IntVar(&c.DecisionBytes, "decision-bytes", api.DefaultDecisionBytes, "memory of the recent decisions kept, in bytes (the oldest go first)")
	fs.IntVar(&c.MaxAbsentHosts, "max-absent-hosts", cache.DefaultMaxAbsentHosts, "unknown host names remembered as such (the oldest are forgotten first)")
	fs.DurationVar(&c.WitnessBound, "witness-bound", residency.DefaultBound, "how long Nova's word and the host agent's on a VM's placement may be apart before it is a discrepancy (metric, log, NATS)")
	fs.DurationVar(&c.MaxStaleness, "max-staleness", cache.DefaultMaxStaleness, "how long cached entries are trusted after the ledger's event stream broke; past it every decision asks the ledger, fails closed if it does not answer, and /readyz says not ready")
	fs.IntVar(&c.ReceiveBuffer, "receive-buffer", api.DefaultReceiveBuffer, "socket receive buffer of each connection, in bytes, so that a large webhook request arrives in one go (0: the kernel's, grown as it sees fit)")
	fs.DurationVar(&c.DecisionTimeout, "decision-timeout", api.DefaultDecisionTimeout, "longest wait for the ledger in one decision; past it the webhook fails closed (keep it below Nova's timeout)")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 15*time.Second, "how long to let requests finish on SIGINT/SIGTERM")
	fabricFlags(&c, fs)
	var file string
	fs.StringVar(&file, conf.FileFlag, "", "YAML file of settings, keyed by flag name")
	fs.Usage = func() {
		conf.Usage(fs, fs.Output(), "usage: filterd [flags]\n\n")
	}
	if _, err := conf.Load(fs, args, getenv, conf.Options{ReadFile: os.ReadFile}); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	return c, c.validate()
}

func (c *config) validate() error {
	var errs []error
	if c.Listen == "" {
		errs = append(errs, errors.New("--listen is empty"))
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, errors.New("--tls-cert and --tls-key go together"))
	}
	if c.TLSClientCA != "" && c.TLSCert == "" {
		errs = append(errs, errors.New("--tls-client-ca needs --tls-cert and --tls-key"))
	}
	if c.Decisions < 1 {
		errs = append(errs, errors.New("--decisions must be at least 1"))
	}
	if c.MaxBody < 1024 {
		errs = append(errs, errors.New("--max-body must be at least 1024 bytes"))
	}
	if c.MaxBuffered < 2*c.MaxBody {
		errs = append(errs, errors.New("--max-buffered must be at least twice --max-body (large bodies may use half of it)"))
	}
	for _, b := range []struct {
		name string
		v    int
		min  int
	}{{"--max-in-flight", c.MaxInFlight, 1}, {"--max-large-in-flight", c.MaxLargeInFlight, 1}, {"--max-rest-in-flight", c.MaxRESTInFlight, 1},
		{"--max-connections", c.MaxConnections, 16}, {"--max-regulations", c.MaxRegulations, 1000}, {"--max-header-bytes", c.MaxHeaderBytes, 4096}, {"--max-streams", c.MaxStreams, 1},
		{"--decision-bytes", c.DecisionBytes, 1 << 20}, {"--max-absent-hosts", c.MaxAbsentHosts, 1000}} {
		if b.v < b.min {
			errs = append(errs, fmt.Errorf("%s must be at least %d", b.name, b.min))
		}
	}
	if c.ReadTimeout <= 0 || c.MaxStaleness <= 0 || c.WitnessBound <= 0 {
		errs = append(errs, errors.New("--read-timeout and --max-staleness must be positive"))
	}
	if c.ReceiveBuffer != 0 && (c.ReceiveBuffer < 4096 || c.ReceiveBuffer > api.MaxReceiveBuffer) {
		errs = append(errs, fmt.Errorf("--receive-buffer must be 0 or from 4096 to %d bytes", api.MaxReceiveBuffer))
	}
	if c.DecisionTimeout <= 0 {
		errs = append(errs, errors.New("--decision-timeout must be positive"))
	}
	if c.ShutdownTimeout <= 0 {
		errs = append(errs, errors.New("--shutdown-timeout must be positive"))
	}
	if c.LogFormat != "json" && c.LogFormat != "console" {
		errs = append(errs, errors.New("--log-format must be json or console"))
	}
	if c.ReadToken != "" && c.ReadToken == c.AdminToken {
		errs = append(errs, errors.New("--read-token must differ from --admin-token"))
	}
	errs = append(errs, c.Settings.Validate(backend.Embedded, backend.Fabric))
	if c.Kind() == backend.Fabric && c.FabricTimeout <= 0 {
		errs = append(errs, errors.New("--fabric-timeout must be positive"))
	}
	return errors.Join(errs...)
}
