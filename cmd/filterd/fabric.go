package main

import (
	"errors"
	"flag"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/ledgerfence/ledgerfence/pkg/cache"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/fabric"
)

// fabricConfig is how filterd reaches a Fabric peer (--ledger fabric), and
// as whom. filterd only reads: any identity of the channel's organisations
// will do, and one without a ledgerfence role (a plain client) is the right
// one.
type fabricConfig struct {
	Peer       string
	TLSCA      string
	ServerName string
	MSPID      string
	Cert       string
	Key        string
	Channel    string
	Chaincode  string
	Checkpoint string
	Timeout    time.Duration
}

// fabricMaxBackoff bounds the wait between the cache's attempts to reopen
// the chaincode event stream: a peer is back within seconds of a restart,
// and events should flow again soon after.
const fabricMaxBackoff = 2 * time.Second

func (c *fabricConfig) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.Peer, "fabric-peer", "", "--ledger fabric: the peer's Gateway address, host:port")
	fs.StringVar(&c.TLSCA, "fabric-tls-ca", "", "--ledger fabric: PEM file of the CA that the peer's TLS certificate chains to")
	fs.StringVar(&c.ServerName, "fabric-server-name", "", "--ledger fabric: name to check in the peer's TLS certificate (default: the host of --fabric-peer)")
	fs.StringVar(&c.MSPID, "fabric-msp-id", "", "--ledger fabric: MSP id of filterd's identity, e.g. Org1MSP")
	fs.StringVar(&c.Cert, "fabric-cert", "", "--ledger fabric: PEM file of filterd's enrolment certificate")
	fs.StringVar(&c.Key, "fabric-key", "", "--ledger fabric: PEM file of the private key of --fabric-cert")
	fs.StringVar(&c.Channel, "fabric-channel", fabric.DefaultChannel, "--ledger fabric: channel")
	fs.StringVar(&c.Chaincode, "fabric-chaincode", fabric.DefaultChaincode, "--ledger fabric: chaincode name")
	fs.StringVar(&c.Checkpoint, "fabric-checkpoint", "", "--ledger fabric: file recording the position in the chaincode event stream (none: kept in memory)")
	fs.DurationVar(&c.Timeout, "fabric-timeout", fabric.DefaultEvaluateTimeout, "--ledger fabric: longest wait for one ledger read")
}

// validate reports every missing or wrong setting, by flag.
func (c *fabricConfig) validate() error {
	var errs []error
	for _, s := range []struct{ flag, v string }{
		{"--fabric-peer", c.Peer}, {"--fabric-tls-ca", c.TLSCA}, {"--fabric-msp-id", c.MSPID},
		{"--fabric-cert", c.Cert}, {"--fabric-key", c.Key}, {"--fabric-channel", c.Channel}, {"--fabric-chaincode", c.Chaincode},
	} {
		if s.v == "" {
			errs = append(errs, fmt.Errorf("--ledger fabric needs %s", s.flag))
		}
	}
	if c.Timeout <= 0 {
		errs = append(errs, errors.New("--fabric-timeout must be positive"))
	}
	return errors.Join(errs...)
}

// openFabric connects to the peer. The connection is lazy: a peer that is
// down now shows as an unavailable ledger, which the cache retries, and
// filterd serves meanwhile (failing closed for what it cannot decide).
//
// The event stream is reopened by the cache, not by the backend, so that
// the cache knows when it is down (its age, the ledger's reachability) and
// resumes from the block of the last event it applied. The backend starts a
// resumed stream at that block itself, so no event is lost; the events of
// that block that were applied already come again and change nothing.
func openFabric(cfg fabricConfig, log *zap.Logger) (*backend, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	opts := []fabric.Option{
		fabric.WithLogger(log.Named("fabric")),
		fabric.WithEvaluateTimeout(cfg.Timeout),
	}
	if cfg.Checkpoint != "" {
		opts = append(opts, fabric.WithCheckpointFile(cfg.Checkpoint))
	}
	l, err := fabric.Connect(fabric.Config{
		PeerEndpoint: cfg.Peer,
		TLSCAFile:    cfg.TLSCA,
		ServerName:   cfg.ServerName,
		MSPID:        cfg.MSPID,
		CertFile:     cfg.Cert,
		KeyFile:      cfg.Key,
		Channel:      cfg.Channel,
		Chaincode:    cfg.Chaincode,
	}, opts...)
	if err != nil {
		return nil, fmt.Errorf("--ledger fabric: %w", err)
	}
	log.Info("Fabric ledger", zap.String("peer", cfg.Peer), zap.String("msp_id", cfg.MSPID),
		zap.String("channel", cfg.Channel), zap.String("chaincode", cfg.Chaincode))
	// Writers sign their own Fabric transactions (hostagent, ledgerctl):
	// filterd refuses REST writes.
	return &backend{
		Ledger:   l,
		name:     backendFabric,
		writable: false,
		cache:    cache.Config{MaxBackoff: fabricMaxBackoff},
	}, nil
}
