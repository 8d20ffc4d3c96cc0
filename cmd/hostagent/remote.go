package main

import (
	"context"

	"github.com/ledgerfence/ledgerfence/pkg/ledger"
)

func openRemote(ctx context.Context, url, token string) (ledger.Ledger, error) {
	return nil, ledger.Errorf(ledger.ErrUnavailable, nil, "the filterd client is not available in this build")
}
