// Package hostagent is the logic of ledgerfence's host agent: its
// configuration, working out the host's name as Nova knows it, registering
// the host's facts in the ledger with backoff, and the compliance sweep that
// finds the VMs whose regulation the host breaks.
package hostagent

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Defaults. One place for each.
const (
	DefaultInterval       = 5 * time.Minute
	DefaultDeadline       = 10 * time.Minute
	DefaultAttemptTimeout = 15 * time.Second
	EnvPrefix             = "LEDGERFENCE_"
	// DefaultHeadStateFile is the head state's name in systemd's state
	// directory.
	DefaultHeadStateFile = "head.json"
)

// DefaultNovaConfs are read, in order (a later file wins, as with
// nova-compute's --config-file), when --nova-conf is not given. A missing
// default file is skipped; a missing named file is an error.
var DefaultNovaConfs = []string{"/etc/nova/nova.conf", "/etc/nova/nova-compute.conf"}

// ErrUsage marks a configuration error: bad flags, environment or file.
var ErrUsage = errors.New("usage")

// FabricConfig is how to reach a Fabric peer with the agent's own identity.
type FabricConfig struct {
	Peer       string // gateway peer endpoint, host:port
	TLSCA      string // PEM file of the peer's TLS CA
	ServerName string // TLS server name override
	MSPID      string
	Cert       string // PEM file of the agent's enrolment certificate
	Key        string // PEM file of its private key
	Channel    string
	Chaincode  string
}

// Config is the host agent's configuration.
type Config struct {
	ConfigFile    string
	Host          string
	Country       string
	Organizations []string
	Region        string
	// Ledger is the URL of a filterd serving the embedded ledger, or "fabric".
	Ledger string
	Token  string
	Fabric FabricConfig
	// HeadState is the file in which the last signed head of a filterd's
	// ledger is remembered ("" or "none": only while the agent runs);
	// HeadKey the signer's public key (base64, PEM or a file), when given.
	HeadState string
	HeadKey   string
	// Once registers and exits.
	Once bool
	// Interval between re-assertions and sweeps in daemon mode.
	Interval time.Duration
	// Deadline bounds a registration while the ledger is unavailable; 0 waits forever.
	Deadline time.Duration
	// AttemptTimeout bounds one ledger call.
	AttemptTimeout time.Duration
	NovaConfs      []string
	// NovaConfsSet is true when NovaConfs was configured, not defaulted.
	NovaConfsSet  bool
	MetricsListen string
	// NATS is the URL of a NATS server for violation events; empty: none.
	NATS            string
	NoSweep         bool
	DenyUnregulated bool
	LogLevel        string
	LogFormat       string
}

// Defaults returns the configuration before any source is applied.
func Defaults() Config {
	return Config{
		Interval:       DefaultInterval,
		Deadline:       DefaultDeadline,
		AttemptTimeout: DefaultAttemptTimeout,
		NovaConfs:      append([]string(nil), DefaultNovaConfs...),
		LogLevel:       "info",
		LogFormat:      "json",
	}
}

// setting is one option, known by the same name as a flag (--name), an
// environment variable (LEDGERFENCE_NAME, with - as _) and a YAML key.
type setting struct {
	name    string
	aliases []string // extra YAML keys and environment names
	usage   string
	list    bool // repeatable flag, YAML list, comma-separated in env
	isBool  bool
	set     func(c *Config, v string) error
	add     func(c *Config, v string) // for lists
	reset   func(c *Config)           // for lists, before a source sets them
}

func str(p func(*Config) *string) func(*Config, string) error {
	return func(c *Config, v string) error { *p(c) = v; return nil }
}

func dur(name string, p func(*Config) *time.Duration) func(*Config, string) error {
	return func(c *Config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return fmt.Errorf("%s: %q is not a duration like 30s or 5m", name, v)
		}
		*p(c) = d
		return nil
	}
}

func boolean(name string, p func(*Config) *bool) func(*Config, string) error {
	return func(c *Config, v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("%s: %q is not true or false", name, v)
		}
		*p(c) = b
		return nil
	}
}

var settings = []setting{
	{name: "host", usage: "the compute host's name as Nova knows it (default: nova.conf [DEFAULT] host, else the hostname)",
		set: str(func(c *Config) *string { return &c.Host })},
	{name: "country", usage: "ISO 3166-1 alpha-2 country the host is in",
		set: str(func(c *Config) *string { return &c.Country })},
	{name: "organization", aliases: []string{"organizations"}, list: true,
		usage: "an organisation operating the host (repeatable, or comma-separated)",
		add:   func(c *Config, v string) { c.Organizations = append(c.Organizations, v) },
		reset: func(c *Config) { c.Organizations = nil }},
	{name: "region", usage: "optional region label (Nova region, data centre)",
		set: str(func(c *Config) *string { return &c.Region })},
	{name: "ledger", usage: "the ledger: the URL of a filterd (http://host:port), or fabric",
		set: str(func(c *Config) *string { return &c.Ledger })},
	{name: "token", usage: "bearer token for a filterd's write API",
		set: str(func(c *Config) *string { return &c.Token })},
	{name: "head-state", usage: "file remembering the last signed head of the filterd's ledger, to refuse a ledger that forked or went back (default: $STATE_DIRECTORY/head.json under systemd; none: kept only while the agent runs)",
		set: str(func(c *Config) *string { return &c.HeadState })},
	{name: "head-key", usage: "public key of the filterd's head signer: base64, PEM or a file (default: the key of the first head seen)",
		set: str(func(c *Config) *string { return &c.HeadKey })},
	{name: "fabric-peer", usage: "Fabric gateway peer endpoint host:port (with --ledger fabric)",
		set: str(func(c *Config) *string { return &c.Fabric.Peer })},
	{name: "fabric-tls-ca", usage: "PEM file of the Fabric peer's TLS CA",
		set: str(func(c *Config) *string { return &c.Fabric.TLSCA })},
	{name: "fabric-server-name", usage: "TLS server name of the Fabric peer",
		set: str(func(c *Config) *string { return &c.Fabric.ServerName })},
	{name: "fabric-msp-id", usage: "MSP id of the agent's Fabric identity",
		set: str(func(c *Config) *string { return &c.Fabric.MSPID })},
	{name: "fabric-cert", usage: "PEM file of the agent's Fabric enrolment certificate",
		set: str(func(c *Config) *string { return &c.Fabric.Cert })},
	{name: "fabric-key", usage: "PEM file of the agent's Fabric private key",
		set: str(func(c *Config) *string { return &c.Fabric.Key })},
	{name: "fabric-channel", usage: "Fabric channel (default: the backend's)",
		set: str(func(c *Config) *string { return &c.Fabric.Channel })},
	{name: "fabric-chaincode", usage: "Fabric chaincode name (default: the backend's)",
		set: str(func(c *Config) *string { return &c.Fabric.Chaincode })},
	{name: "once", isBool: true, usage: "register (or confirm the record) and exit: 0 when registered",
		set: boolean("once", func(c *Config) *bool { return &c.Once })},
	{name: "interval", usage: "daemon: how often to re-assert the record and sweep",
		set: dur("interval", func(c *Config) *time.Duration { return &c.Interval })},
	{name: "deadline", usage: "give up registering after this long while the ledger is unavailable (0: never)",
		set: dur("deadline", func(c *Config) *time.Duration { return &c.Deadline })},
	{name: "attempt-timeout", usage: "timeout of one ledger call",
		set: dur("attempt-timeout", func(c *Config) *time.Duration { return &c.AttemptTimeout })},
	{name: "nova-conf", list: true, usage: "nova.conf file to read [DEFAULT] host from (repeatable; a later file wins)",
		add:   func(c *Config, v string) { c.NovaConfs = append(c.NovaConfs, v); c.NovaConfsSet = true },
		reset: func(c *Config) { c.NovaConfs = nil }},
	{name: "metrics-listen", usage: "address for /metrics and /healthz (daemon), e.g. 127.0.0.1:9465; empty: none",
		set: str(func(c *Config) *string { return &c.MetricsListen })},
	{name: "nats", usage: "NATS server URL for violation events (daemon); empty: none",
		set: str(func(c *Config) *string { return &c.NATS })},
	{name: "no-sweep", isBool: true, usage: "daemon: only re-assert the record, do not sweep",
		set: boolean("no-sweep", func(c *Config) *bool { return &c.NoSweep })},
	{name: "deny-unregulated", isBool: true, usage: "sweep: treat VMs without a regulation as violations (as filterd's option of that name)",
		set: boolean("deny-unregulated", func(c *Config) *bool { return &c.DenyUnregulated })},
	{name: "log-level", usage: "debug, info, warn or error",
		set: str(func(c *Config) *string { return &c.LogLevel })},
	{name: "log-format", usage: "json or console",
		set: str(func(c *Config) *string { return &c.LogFormat })},
}

func envName(name string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

func (s *setting) apply(c *Config, v string) error {
	if s.list {
		for _, part := range strings.Split(v, ",") {
			if part = strings.TrimSpace(part); part != "" {
				s.add(c, part)
			}
		}
		return nil
	}
	return s.set(c, v)
}

// Load builds the configuration from, in increasing precedence, the
// defaults, a YAML file (--config or LEDGERFENCE_CONFIG), the environment
// (LEDGERFENCE_HOST, LEDGERFENCE_ORGANIZATIONS=A,B, ...) and the flags.
// A list given by a higher source replaces the lower one's. readFile is
// os.ReadFile in a program. Errors match ErrUsage; flag.ErrHelp is returned
// as it is after the usage is written to out.
func Load(args []string, getenv func(string) string, readFile func(string) ([]byte, error), out io.Writer) (Config, error) {
	c := Defaults()
	fs := flag.NewFlagSet("hostagent", flag.ContinueOnError)
	fs.SetOutput(out)
	var configFile string
	fs.StringVar(&configFile, "config", "", "YAML configuration file (keys are the flag names)")
	flagVals := make(map[string]*[]string)
	for i := range settings {
		s := &settings[i]
		vals := new([]string)
		flagVals[s.name] = vals
		usage := s.usage + " [" + envName(s.name) + "]"
		fs.Func(s.name, usage, func(v string) error { *vals = append(*vals, v); return nil })
		if s.isBool {
			boolFlag(fs, s.name)
		}
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return c, err
		}
		return c, fmt.Errorf("%w: %v", ErrUsage, err)
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("%w: unexpected argument %q", ErrUsage, fs.Arg(0))
	}

	// The file.
	if configFile == "" {
		configFile = getenv(EnvPrefix + "CONFIG")
	}
	c.ConfigFile = configFile
	if configFile != "" {
		data, err := readFile(configFile)
		if err != nil {
			return c, fmt.Errorf("%w: config file: %v", ErrUsage, err)
		}
		if err := applyYAML(&c, data); err != nil {
			return c, fmt.Errorf("%w: config file %s: %v", ErrUsage, configFile, err)
		}
	}
	// The environment.
	for i := range settings {
		s := &settings[i]
		for _, name := range append([]string{s.name}, s.aliases...) {
			v := getenv(envName(name))
			if v == "" {
				continue
			}
			if s.list {
				s.reset(&c)
			}
			if err := s.apply(&c, v); err != nil {
				return c, fmt.Errorf("%w: %s: %v", ErrUsage, envName(name), err)
			}
			break
		}
	}
	// The flags.
	for i := range settings {
		s := &settings[i]
		vals := *flagVals[s.name]
		if len(vals) == 0 {
			continue
		}
		if s.list {
			s.reset(&c)
		}
		for _, v := range vals {
			if err := s.apply(&c, v); err != nil {
				return c, fmt.Errorf("%w: --%v", ErrUsage, err)
			}
		}
	}
	if c.HeadState == "" {
		// systemd's StateDirectory= (one or more directories, colon-separated).
		if dir, _, _ := strings.Cut(getenv("STATE_DIRECTORY"), ":"); dir != "" {
			c.HeadState = filepath.Join(dir, DefaultHeadStateFile)
		}
	}
	if err := c.Validate(); err != nil {
		return c, err
	}
	return c, nil
}

// boolFlag marks a Func flag as boolean so that "--once" needs no value.
func boolFlag(fs *flag.FlagSet, name string) {
	f := fs.Lookup(name)
	f.Value = boolValue{f.Value}
	f.DefValue = "false"
}

type boolValue struct{ flag.Value }

func (boolValue) IsBoolFlag() bool { return true }

// String is called by flag.PrintDefaults on a zero boolValue too.
func (b boolValue) String() string {
	if b.Value == nil {
		return "false"
	}
	return b.Value.String()
}

func applyYAML(c *Config, data []byte) error {
	var doc map[string]yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("not YAML: %v", err)
	}
	keys := make([]string, 0, len(doc))
	for k := range doc {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		s := lookupSetting(k)
		if s == nil {
			return fmt.Errorf("unknown key %q", k)
		}
		node := doc[k]
		if s.list {
			s.reset(c)
			var items []string
			if node.Kind == yaml.SequenceNode {
				if err := node.Decode(&items); err != nil {
					return fmt.Errorf("%s: want a list of strings", k)
				}
			} else if node.Kind == yaml.ScalarNode {
				items = []string{node.Value}
			} else {
				return fmt.Errorf("%s: want a list of strings", k)
			}
			for _, it := range items {
				if err := s.apply(c, it); err != nil {
					return err
				}
			}
			continue
		}
		if node.Kind != yaml.ScalarNode {
			return fmt.Errorf("%s: want a single value", k)
		}
		if err := s.apply(c, node.Value); err != nil {
			return err
		}
	}
	return nil
}

func lookupSetting(key string) *setting {
	key = strings.ReplaceAll(key, "_", "-")
	for i := range settings {
		if settings[i].name == key {
			return &settings[i]
		}
		for _, a := range settings[i].aliases {
			if a == key {
				return &settings[i]
			}
		}
	}
	return nil
}

// Validate checks what does not depend on the host's facts (those are
// checked by pkg/filter when the record is built). Errors match ErrUsage.
func (c *Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrUsage, fmt.Sprintf(format, args...))
	}
	if c.Ledger == "" {
		return bad("--ledger is required: the URL of a filterd, or fabric")
	}
	if c.Ledger == "fabric" {
		f := c.Fabric
		for _, req := range []struct{ name, v string }{
			{"fabric-peer", f.Peer}, {"fabric-tls-ca", f.TLSCA}, {"fabric-msp-id", f.MSPID},
			{"fabric-cert", f.Cert}, {"fabric-key", f.Key},
		} {
			if req.v == "" {
				return bad("--ledger fabric needs --%s", req.name)
			}
		}
	} else if !strings.HasPrefix(c.Ledger, "http://") && !strings.HasPrefix(c.Ledger, "https://") {
		return bad("--ledger %q is neither an http(s) URL of a filterd nor fabric", c.Ledger)
	}
	if !c.Once && c.Interval <= 0 {
		return bad("--interval must be positive")
	}
	if c.AttemptTimeout <= 0 {
		return bad("--attempt-timeout must be positive")
	}
	if c.Country == "" {
		return bad("--country is required (ISO 3166-1 alpha-2, e.g. JP)")
	}
	if len(c.Organizations) == 0 {
		return bad("at least one --organization is required")
	}
	switch c.LogFormat {
	case "json", "console":
	default:
		return bad("--log-format %q: want json or console", c.LogFormat)
	}
	return nil
}
