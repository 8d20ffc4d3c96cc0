package api

import (
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/remote"
)

// The REST API's bodies as a client reads them (their types are the
// server's, in pkg/ledger/remote).
type (
	historyBody struct {
		History []ledger.Change `json:"history"`
	}
	errorBody struct {
		Error string `json:"error"`
	}
	LedgerInfo = remote.LedgerInfo
)
