package main

import (
	"context"

	"github.com/ledgerfence/ledgerfence/pkg/ledger"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/remote"
)

// openRemote is a client of the filterd at url, which serves the embedded ledger.
func openRemote(_ context.Context, url, token string) (ledger.Ledger, error) {
	return remote.New(url, remote.WithToken(token))
}
