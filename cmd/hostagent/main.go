// Command hostagent runs on each compute node. At boot (--once, as a systemd
// oneshot) it works out the host's name as Nova knows it and registers the
// host's country, organisations and region in ledgerfence's ledger,
// retrying while the ledger is unavailable. As a daemon it keeps the record
// asserted and sweeps: it reports every VM on the host whose regulation the
// host breaks (log, ledgerfence_hostagent_violations on /metrics, NATS).
//
// Configuration: flags, LEDGERFENCE_* variables and an optional YAML file
// (--config), flags first; OpenStack credentials from clouds.yaml (OS_CLOUD)
// or OS_* variables, for the name check and the sweep. Run with --help for
// the flags.
//
// Exit codes: 0 registered (--once) or stopped by a signal; 1 error; 2
// usage or invalid configuration (a bad country or organisation code
// included); 3 the ledger refuses this writer (forbidden), or the agent
// refuses the ledger (its signed head does not extend the last one seen:
// it forked or went back); 4 the ledger stayed unavailable until the
// deadline.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/ledgerfence/ledgerfence/pkg/hostagent"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/head"
)

const (
	exitOK          = 0
	exitError       = 1
	exitUsage       = 2
	exitDenied      = 3
	exitUnavailable = 4
)

func main() {
	cfg, err := hostagent.Load(os.Args[1:], os.Getenv, os.ReadFile, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(exitOK)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "hostagent:", err)
		os.Exit(exitUsage)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err = run(ctx, cfg, os.Getenv)
	stop()
	os.Exit(exitCode(err))
}

func exitCode(err error) int {
	if err == nil {
		return exitOK
	}
	fmt.Fprintln(os.Stderr, "hostagent:", err)
	switch {
	case errors.Is(err, hostagent.ErrUsage), errors.Is(err, ledger.ErrInvalid):
		return exitUsage
	case errors.Is(err, ledger.ErrForbidden), errors.Is(err, head.ErrRefused):
		return exitDenied
	case errors.Is(err, ledger.ErrUnavailable):
		return exitUnavailable
	}
	return exitError
}
