// Package fabric_test runs ledgerfence's Fabric backend and chaincode against
// a real native Fabric network (tests/integration/fabric/network).
//
// TestMain uses the network whose state folder LEDGERFENCE_FABRIC_DIR names
// when it holds a network.env (and leaves it running), or starts one with
// network/up.sh in a fresh folder and takes it down afterwards. When the
// harness or the Fabric commands are missing the tests are skipped, unless
// LEDGERFENCE_REQUIRE_INTEGRATION=1: then they fail.
package fabric_test

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/fabric"
	"github.com/ledgerfence/ledgerfence/tests/integration/fabricnet"
)

// net0 is the network under test; skipReason is set when there is none.
var (
	net0       *fabricnet.Network
	skipReason string
)

func TestMain(m *testing.M) {
	flag.Parse()
	code := run(m)
	for _, f := range atExit {
		f()
	}
	os.Exit(code)
}

func run(m *testing.M) int {
	require := os.Getenv("LEDGERFENCE_REQUIRE_INTEGRATION") == "1"
	fail := func(format string, args ...any) int {
		msg := fmt.Sprintf(format, args...)
		if require {
			fmt.Fprintln(os.Stderr, "fabric integration:", msg)
			return 1
		}
		skipReason = msg
		return m.Run()
	}
	if dir := os.Getenv("LEDGERFENCE_FABRIC_DIR"); dir != "" {
		if n, err := fabricnet.Use(dir); err == nil {
			net0 = n
			return m.Run()
		}
	}
	if testing.Short() {
		skipReason = "-short: no Fabric network started"
		return m.Run()
	}
	base, _ := strconv.Atoi(os.Getenv("LEDGERFENCE_FABRIC_PORT_BASE"))
	n, err := fabricnet.Start(fabricnet.Options{PortBase: base, Log: os.Stderr})
	if err != nil {
		return fail("%v", err)
	}
	defer func() {
		if err := n.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "fabric integration:", err)
		}
	}()
	net0 = n
	return m.Run()
}

func needNetwork(tb testing.TB) {
	tb.Helper()
	if skipReason != "" {
		tb.Skip(skipReason)
	}
}

// orgOf returns "1" or "2" for an identity folder's MSP.
func orgOf(tb testing.TB, idDir string) string {
	b, err := os.ReadFile(filepath.Join(idDir, "mspid"))
	if err != nil {
		tb.Fatalf("identity %s: %v", idDir, err)
	}
	switch strings.TrimSpace(string(b)) {
	case net0.Get("ORG1_MSPID"):
		return "1"
	case net0.Get("ORG2_MSPID"):
		return "2"
	}
	tb.Fatalf("identity %s: unknown MSP %s", idDir, b)
	return ""
}

// configFor is the backend's configuration for one of the network's
// identities, through its own organisation's peer.
func configFor(tb testing.TB, name string) fabric.Config {
	tb.Helper()
	id := net0.Identity(name)
	org := orgOf(tb, id.Dir)
	return fabric.Config{
		PeerEndpoint: net0.Get("ORG" + org + "_PEER_ADDRESS"),
		TLSCAFile:    net0.Get("ORG" + org + "_PEER_TLS_CA"),
		ServerName:   net0.Get("ORG" + org + "_PEER_SERVER_NAME"),
		MSPID:        net0.Get("ORG" + org + "_MSPID"),
		CertFile:     id.Cert,
		KeyFile:      id.Key,
		Channel:      net0.Get("CHANNEL"),
		Chaincode:    net0.Get("CHAINCODE"),
	}
}

// connect opens the backend as identity name; it is closed with the test.
func connect(tb testing.TB, name string, opts ...fabric.Option) *fabric.Ledger {
	tb.Helper()
	needNetwork(tb)
	l, err := fabric.Connect(configFor(tb, name), opts...)
	if err != nil {
		tb.Fatalf("connect as %s: %v", name, err)
	}
	tb.Cleanup(func() { l.Close() })
	return l
}

// enroll registers and enrols an extra identity, name, through org's CA
// (once per network).
func enroll(tb testing.TB, org, name, role, host string, opts ...fabricnet.EnrollOption) {
	tb.Helper()
	needNetwork(tb)
	if err := net0.Enroll(org, name, role, host, opts...); err != nil {
		tb.Fatal(err)
	}
}

// ctx is a test's context with a generous deadline.
func ctx(tb testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	tb.Cleanup(cancel)
	return c
}

// uniq makes names unique per run, so tests can share a long-lived network.
var (
	runNum = time.Now().UnixNano()
	runID  = strconv.FormatInt(runNum%1e9, 36)
)

// vmSubject is the subject of a VM whose UUID is unique per run.
func vmSubject(k int) filter.Subject {
	return filter.VMSubject(fmt.Sprintf("%08x-0000-4000-8000-%012x", k, runNum&0xffffffffffff))
}

func uniq(prefix string) string { return prefix + "-" + runID }
