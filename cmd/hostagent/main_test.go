package main

import (
	"errors"
	"fmt"
	"testing"

	"github.com/ledgerfence/ledgerfence/pkg/hostagent"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/head"
)

func TestExitCode(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want int
	}{
		{"registered", nil, exitOK},
		{"usage", fmt.Errorf("%w: --ledger is required", hostagent.ErrUsage), exitUsage},
		{"invalid facts", ledger.Errorf(ledger.ErrInvalid, nil, "country"), exitUsage},
		{"forbidden", fmt.Errorf("register: %w", ledger.Errorf(ledger.ErrForbidden, nil, "not your host")), exitDenied},
		{"deadline", ledger.Errorf(ledger.ErrUnavailable, nil, "host h not registered"), exitUnavailable},
		{"other", errors.New("boom"), exitError},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := exitCode(tc.err); got != tc.want {
				t.Fatalf("exitCode(%v) = %d, want %d", tc.err, got, tc.want)
			}
		})
	}
}

func TestExitCodeOfARefusedLedger(t *testing.T) {
	err := fmt.Errorf("%w: %w: rolled back", head.ErrRefused, head.ErrRollback)
	if got := exitCode(err); got != exitDenied {
		t.Errorf("exitCode(%v) = %d, want %d", err, got, exitDenied)
	}
}
