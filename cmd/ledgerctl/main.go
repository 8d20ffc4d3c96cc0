// Command ledgerctl is the operators' and VM managers' tool for
// ledgerfence: regulations, hosts, their history, what-if checks, guarded
// migration through Nova, and verification of the embedded ledger.
//
//	ledgerctl regulation set vm:UUID --allow JP.CompanyA --allow GB.CompanyB
//	ledgerctl regulation set project:ID --countries JP,GB --organizations CompanyA,CompanyB
//	ledgerctl regulation set vm:UUID --file regulation.json
//	ledgerctl regulation get|delete|history SUBJECT
//	ledgerctl host list | host get NAME | host history NAME
//	ledgerctl check --vm UUID [--project ID] [--host H ...]
//	ledgerctl migrate --vm UUID [--target HOST] [--live|--cold] [--wait]
//	ledgerctl verify --data DIR
//
// The ledger is a filterd (--ledger http://host:port, --token), Fabric
// (--ledger fabric and the --fabric-* flags) or an embedded ledger file used
// directly (--ledger embedded --data DIR, while no filterd holds it).
// OpenStack credentials come from clouds.yaml (OS_CLOUD) or the OS_*
// variables.
//
// Exit codes: 0 ok; 1 error (not found, Nova refused or the migration
// failed); 2 usage or invalid input (flags, codes, subjects, missing
// credentials); 3 denied or non-compliant (a check with a denied host, a
// refused migration target, a write the ledger forbids, a broken hash
// chain); 4 unavailable (the ledger, Keystone or Nova could not be reached).
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := newApp(os.Stdout, os.Stderr, os.Getenv).run(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}
