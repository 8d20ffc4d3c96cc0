// Package backend opens a ledger from the one set of settings filterd, the
// host agent and ledgerctl share: --ledger (embedded, fabric, or the URL of
// a filterd serving the embedded ledger), --data, --token and the
// --fabric-* flags, each defined here once.
package backend

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/ledgerfence/ledgerfence/pkg/ledger"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/embedded"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/fabric"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/remote"
)

// The kinds of ledger; a filterd's URL is the third.
const (
	Embedded = "embedded"
	Fabric   = "fabric"
	Remote   = "url"
)

// FabricSettings are how to reach a Fabric peer, and as whom.
type FabricSettings struct {
	Peer       string // the peer's Gateway address, host:port
	TLSCA      string // PEM file of the CA of the peer's TLS certificate
	ServerName string // name to check in that certificate
	MSPID      string
	Cert       string // PEM file of the identity's enrolment certificate
	Key        string // PEM file of its private key
	Channel    string
	Chaincode  string
}

// Settings name a ledger.
type Settings struct {
	// Ledger is Embedded, Fabric, or an http(s) URL of a filterd.
	Ledger string
	// Data is the embedded ledger's directory.
	Data string
	// Token is the bearer token sent to a filterd: a writer token, whose
	// identity filterd records and checks (package tokens).
	Token  string
	Fabric FabricSettings
}

// Kind is Embedded, Fabric or Remote; "" for a Ledger that is none.
func (s Settings) Kind() string {
	switch {
	case s.Ledger == Embedded:
		return Embedded
	case s.Ledger == Fabric:
		return Fabric
	case strings.HasPrefix(s.Ledger, "http://") || strings.HasPrefix(s.Ledger, "https://"):
		return Remote
	}
	return ""
}

// Flags defines the settings on fs for a command that may open the kinds
// allowed (--data only with Embedded, --token only with Remote), with
// --ledger's default def.
func (s *Settings) Flags(fs *flag.FlagSet, def string, allowed ...string) {
	fs.StringVar(&s.Ledger, "ledger", def, "the ledger: "+describe(allowed))
	for _, k := range allowed {
		switch k {
		case Embedded:
			fs.StringVar(&s.Data, "data", s.Data, "directory of the embedded ledger")
		case Remote:
			fs.StringVar(&s.Token, "token", s.Token, "bearer token for a filterd: a writer token (ledgerctl token issue), also good for reads; sent over plain http only to a loopback address")
		case Fabric:
			f := &s.Fabric
			fs.StringVar(&f.Peer, "fabric-peer", f.Peer, "--ledger fabric: the peer's Gateway address, host:port")
			fs.StringVar(&f.TLSCA, "fabric-tls-ca", f.TLSCA, "--ledger fabric: PEM file of the CA that the peer's TLS certificate chains to")
			fs.StringVar(&f.ServerName, "fabric-server-name", f.ServerName, "--ledger fabric: name to check in the peer's TLS certificate (default: the host of --fabric-peer)")
			fs.StringVar(&f.MSPID, "fabric-msp-id", f.MSPID, "--ledger fabric: MSP id of the identity, e.g. Org1MSP")
			fs.StringVar(&f.Cert, "fabric-cert", f.Cert, "--ledger fabric: PEM file of the identity's enrolment certificate")
			fs.StringVar(&f.Key, "fabric-key", f.Key, "--ledger fabric: PEM file of the private key of --fabric-cert")
			fs.StringVar(&f.Channel, "fabric-channel", fabric.DefaultChannel, "--ledger fabric: channel")
			fs.StringVar(&f.Chaincode, "fabric-chaincode", fabric.DefaultChaincode, "--ledger fabric: chaincode name")
		}
	}
}

func describe(allowed []string) string {
	var parts []string
	for _, k := range allowed {
		switch k {
		case Embedded:
			parts = append(parts, "embedded (with --data)")
		case Fabric:
			parts = append(parts, "fabric (with --fabric-*)")
		case Remote:
			parts = append(parts, "the URL of a filterd (http(s)://host:port)")
		}
	}
	return strings.Join(parts, ", or ")
}

// Validate reports every missing or wrong setting, by flag, for a command
// that may open the kinds allowed.
func (s Settings) Validate(allowed ...string) error {
	kind := s.Kind()
	ok := false
	for _, k := range allowed {
		ok = ok || k == kind
	}
	if !ok {
		if s.Ledger == "" {
			return fmt.Errorf("--ledger is required: %s", describe(allowed))
		}
		return fmt.Errorf("--ledger %q: want %s", s.Ledger, describe(allowed))
	}
	var errs []error
	switch kind {
	case Embedded:
		if s.Data == "" {
			errs = append(errs, errors.New("--ledger embedded needs --data DIR"))
		}
	case Fabric:
		f := s.Fabric
		for _, r := range []struct{ flag, v string }{
			{"--fabric-peer", f.Peer}, {"--fabric-tls-ca", f.TLSCA}, {"--fabric-msp-id", f.MSPID},
			{"--fabric-cert", f.Cert}, {"--fabric-key", f.Key}, {"--fabric-channel", f.Channel}, {"--fabric-chaincode", f.Chaincode},
		} {
			if r.v == "" {
				errs = append(errs, fmt.Errorf("--ledger fabric needs %s", r.flag))
			}
		}
	}
	return errors.Join(errs...)
}

// FabricConfig is the Fabric backend's configuration of s.
func (s Settings) FabricConfig() fabric.Config {
	f := s.Fabric
	return fabric.Config{
		PeerEndpoint: f.Peer, TLSCAFile: f.TLSCA, ServerName: f.ServerName, MSPID: f.MSPID,
		CertFile: f.Cert, KeyFile: f.Key, Channel: f.Channel, Chaincode: f.Chaincode,
	}
}

// Options are the backends' own options, passed on by Open.
type Options struct {
	// CreateData creates the embedded ledger's directory when missing
	// (filterd keeps it); without, the directory must exist.
	CreateData bool
	Embedded   []embedded.Option
	Fabric     []fabric.Option
	Remote     []remote.Option
}

// Open opens the ledger s names, which must Validate.
func Open(_ context.Context, s Settings, o Options) (ledger.Ledger, error) {
	switch s.Kind() {
	case Embedded:
		if o.CreateData {
			if err := os.MkdirAll(s.Data, 0o750); err != nil {
				return nil, fmt.Errorf("embedded ledger: %w", err)
			}
		}
		l, err := embedded.Open(filepath.Join(s.Data, embedded.FileName), o.Embedded...)
		if err != nil {
			return nil, fmt.Errorf("embedded ledger in %s: %w", s.Data, err)
		}
		return l, nil
	case Fabric:
		if err := s.FabricConfig().Validate(); err != nil {
			return nil, fmt.Errorf("--ledger fabric: %w", err)
		}
		l, err := fabric.Connect(s.FabricConfig(), o.Fabric...)
		if err != nil {
			return nil, fmt.Errorf("--ledger fabric: %w", err)
		}
		return l, nil
	case Remote:
		return remote.New(s.Ledger, append([]remote.Option{remote.WithToken(s.Token)}, o.Remote...)...)
	}
	return nil, fmt.Errorf("--ledger %q: not a ledger", s.Ledger)
}
