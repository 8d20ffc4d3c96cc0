package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"

	"github.com/ledgerfence/ledgerfence/pkg/ledger"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/embedded"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/fabric"
)

// openLedger opens the ledger named by o.Ledger.
func openLedger(ctx context.Context, o ledgerOpts) (ledger.Ledger, error) {
	switch {
	case o.Ledger == "embedded":
		if o.Data == "" {
			return nil, usagef("--ledger embedded needs --data DIR")
		}
		return embedded.Open(filepath.Join(o.Data, embedded.FileName))
	case o.Ledger == "fabric":
		cfg := fabric.Config{
			PeerEndpoint: o.Fabric.Peer, TLSCAFile: o.Fabric.TLSCA, ServerName: o.Fabric.ServerName,
			MSPID: o.Fabric.MSPID, CertFile: o.Fabric.Cert, KeyFile: o.Fabric.Key,
			Channel: o.Fabric.Channel, Chaincode: o.Fabric.Chaincode,
		}
		if err := cfg.Validate(); err != nil {
			return nil, usagef("--ledger fabric: %v", err)
		}
		return fabric.Connect(cfg)
	case strings.HasPrefix(o.Ledger, "http://") || strings.HasPrefix(o.Ledger, "https://"):
		return openRemote(ctx, o)
	}
	return nil, usagef("--ledger %q: want a filterd URL (http://host:port), fabric or embedded", o.Ledger)
}

var osStat = os.Stat
