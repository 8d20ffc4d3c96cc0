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
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/fabric"
)

// net0 is the network under test; skipReason is set when there is none.
var (
	net0       network
	skipReason string
)

// network is what network.env says about a running network.
type network struct {
	env map[string]string
	dir string
}

func (n network) get(key string) string { return n.env["LEDGERFENCE_FABRIC_"+key] }

func readEnv(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if k, v, ok := strings.Cut(line, "="); ok {
			env[k] = v
		}
	}
	return env, sc.Err()
}

const harness = "network"

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
		if env, err := readEnv(filepath.Join(dir, "network.env")); err == nil {
			net0 = network{env: env, dir: dir}
			return m.Run()
		}
	}
	if testing.Short() {
		skipReason = "-short: no Fabric network started"
		return m.Run()
	}
	up := filepath.Join(harness, "up.sh")
	if _, err := os.Stat(up); err != nil {
		return fail("the network harness is missing (%s)", up)
	}
	// A port range found free can be taken by another process before the
	// network binds it; a second attempt uses the next free range.
	var dir string
	var env []string
	after := 0
	for attempt := 1; ; attempt++ {
		var out string
		var err error
		dir, env, after, out, err = startNetwork(up, after)
		if err == nil {
			break
		}
		if attempt == 2 {
			return fail("up.sh failed twice; last error (%v):\n%s", err, out)
		}
		fmt.Fprintf(os.Stderr, "fabric integration: up.sh failed (%v), trying another port range:\n%s\n", err, out)
	}
	defer stopNetwork(dir, env)
	e, err := readEnv(filepath.Join(dir, "network.env"))
	if err != nil {
		return fail("network.env: %v", err)
	}
	net0 = network{env: e, dir: dir}
	return m.Run()
}

// startNetwork runs up.sh in a new state folder on the first free port range
// above after. On failure it returns up.sh's output with the last lines of
// every component log, and takes the network down.
func startNetwork(up string, after int) (dir string, env []string, base int, out string, err error) {
	dir, err = os.MkdirTemp("", "ledgerfence-fabric-it-")
	if err != nil {
		return "", nil, after, "", err
	}
	os.Remove(dir) // up.sh makes it; an existing folder would be taken down first
	if base, err = freePortBase(after); err != nil {
		return "", nil, after, "", err
	}
	env = append(os.Environ(), "LEDGERFENCE_FABRIC_DIR="+dir, "LEDGERFENCE_FABRIC_PORT_BASE="+strconv.Itoa(base))
	cmd := exec.Command(up)
	cmd.Env = env
	start := time.Now()
	b, err := cmd.CombinedOutput()
	if err != nil {
		out = tail(string(b), 30)
		logs, _ := filepath.Glob(filepath.Join(dir, "logs", "*.log"))
		for _, l := range logs {
			if data, rerr := os.ReadFile(l); rerr == nil {
				out += "\n--- " + filepath.Base(l) + "\n" + tail(string(data), 8)
			}
		}
		stopNetwork(dir, env)
		return "", nil, base, out, err
	}
	os.Setenv("LEDGERFENCE_FABRIC_DIR", dir)
	fmt.Fprintf(os.Stderr, "fabric integration: network up in %s in %s\n", time.Since(start).Round(time.Millisecond), dir)
	return dir, env, base, "", nil
}

// stopNetwork stops every process of the network in dir and removes it.
func stopNetwork(dir string, env []string) {
	down := exec.Command(filepath.Join(harness, "down.sh"))
	down.Env = env
	if out, err := down.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "down.sh: %v\n%s", err, out)
	}
	os.RemoveAll(dir)
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// freePortBase finds a range of 60 free ports for the harness above after
// (LEDGERFENCE_FABRIC_PORT_BASE, when set, is taken as it is).
func freePortBase(after int) (int, error) {
	if s := os.Getenv("LEDGERFENCE_FABRIC_PORT_BASE"); s != "" && after == 0 {
		return strconv.Atoi(s)
	}
	for base := max(17250, after+100); base < 30000; base += 100 {
		free := true
		for p := base; p <= base+55 && free; p++ {
			l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
			if err != nil {
				free = false
				continue
			}
			l.Close()
		}
		if free {
			return base, nil
		}
	}
	return 0, errors.New("no free range of ports for the network")
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
	case net0.get("ORG1_MSPID"):
		return "1"
	case net0.get("ORG2_MSPID"):
		return "2"
	}
	tb.Fatalf("identity %s: unknown MSP %s", idDir, b)
	return ""
}

// configFor is the backend's configuration for one of the network's
// identities, through its own organisation's peer.
func configFor(tb testing.TB, name string) fabric.Config {
	tb.Helper()
	d := filepath.Join(net0.get("IDENTITIES"), name)
	org := orgOf(tb, d)
	return fabric.Config{
		PeerEndpoint: net0.get("ORG" + org + "_PEER_ADDRESS"),
		TLSCAFile:    net0.get("ORG" + org + "_PEER_TLS_CA"),
		ServerName:   net0.get("ORG" + org + "_PEER_SERVER_NAME"),
		MSPID:        net0.get("ORG" + org + "_MSPID"),
		CertFile:     filepath.Join(d, "cert.pem"),
		KeyFile:      filepath.Join(d, "key.pem"),
		Channel:      net0.get("CHANNEL"),
		Chaincode:    net0.get("CHAINCODE"),
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

var enrollMu sync.Mutex

// enroll registers and enrols an extra identity, name, with the harness's
// enroll.sh and its arguments (once per network).
func enroll(tb testing.TB, name string, args ...string) {
	tb.Helper()
	needNetwork(tb)
	enrollMu.Lock()
	defer enrollMu.Unlock()
	if _, err := os.Stat(filepath.Join(net0.get("IDENTITIES"), name, "cert.pem")); err == nil {
		return
	}
	cmd := exec.Command(filepath.Join(filepath.Dir(net0.get("CTL")), "enroll.sh"), args...)
	cmd.Env = append(os.Environ(), "LEDGERFENCE_FABRIC_DIR="+net0.get("DIR"))
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("enroll.sh %v: %v\n%s", args, err, out)
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
