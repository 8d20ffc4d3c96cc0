package main

import (
	"context"
	"flag"
	"time"

	"go.uber.org/zap"

	"github.com/ledgerfence/ledgerfence/pkg/cache"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/backend"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/fabric"
)

// fabricMaxBackoff bounds the wait between the cache's attempts to reopen
// the chaincode event stream: a peer is back within seconds of a restart,
// and events should flow again soon after.
const fabricMaxBackoff = 2 * time.Second

// fabricFlags defines filterd's own Fabric settings; the others are
// pkg/ledger/backend's, as every command's.
func fabricFlags(c *config, fs *flag.FlagSet) {
	fs.StringVar(&c.FabricCheckpoint, "fabric-checkpoint", "", "--ledger fabric: file recording the position in the chaincode event stream (none: kept in memory)")
	fs.DurationVar(&c.FabricTimeout, "fabric-timeout", fabric.DefaultEvaluateTimeout, "--ledger fabric: longest wait for one ledger read")
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
func openFabric(cfg config, log *zap.Logger) (*ledgerBackend, error) {
	if err := cfg.Settings.Validate(backend.Fabric); err != nil {
		return nil, err
	}
	opts := []fabric.Option{
		fabric.WithLogger(log.Named("fabric")),
		fabric.WithEvaluateTimeout(cfg.FabricTimeout),
	}
	if cfg.FabricCheckpoint != "" {
		opts = append(opts, fabric.WithCheckpointFile(cfg.FabricCheckpoint))
	}
	l, err := backend.Open(context.Background(), cfg.Settings, backend.Options{Fabric: opts})
	if err != nil {
		return nil, err
	}
	f := cfg.Fabric
	log.Info("Fabric ledger", zap.String("peer", f.Peer), zap.String("msp_id", f.MSPID),
		zap.String("channel", f.Channel), zap.String("chaincode", f.Chaincode))
	// Writers sign their own Fabric transactions (hostagent, ledgerctl):
	// filterd refuses REST writes.
	return &ledgerBackend{
		Ledger:   l,
		name:     backendFabric,
		writable: false,
		cache:    cache.Config{MaxBackoff: fabricMaxBackoff},
	}, nil
}
