package main

import (
	"context"
	"os"

	"github.com/ledgerfence/ledgerfence/pkg/ledger"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/backend"
)

// openLedger opens the ledger named by o (pkg/ledger/backend); a filterd's
// signed head is checked first (openRemote).
func openLedger(ctx context.Context, o ledgerOpts) (ledger.Ledger, error) {
	if err := o.Validate(backend.Remote, backend.Fabric, backend.Embedded); err != nil {
		return nil, usagef("%v", err)
	}
	if o.Kind() == backend.Remote {
		return openRemote(ctx, o)
	}
	return backend.Open(ctx, o.Settings, backend.Options{})
}

var osStat = os.Stat
