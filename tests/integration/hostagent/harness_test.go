// Package hostagent_test runs ledgerfence's host agent and ledgerctl as
// built binaries against a real filterd and, when it is installed, the mini
// OpenStack cloud of tests/integration/nova/cloud.
//
// Tests skip, saying why, when a component is absent, unless
// LEDGERFENCE_REQUIRE_INTEGRATION=1, when they fail instead.
package hostagent_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// repoRoot is the repository's top directory.
func repoRoot(t testing.TB) string {
	_, file, _, _ := runtime.Caller(0)
	root, err := filepath.Abs(filepath.Join(filepath.Dir(file), "..", "..", ".."))
	if err != nil {
		panic(err)
	}
	return root
}

// absent skips the test, or fails it when integration is required.
func absent(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("LEDGERFENCE_REQUIRE_INTEGRATION") == "1" {
		t.Fatalf("required component absent: %s", msg)
	}
	t.Skipf("skipped: %s (set LEDGERFENCE_REQUIRE_INTEGRATION=1 to fail instead)", msg)
}

var (
	buildMu  sync.Mutex
	built    = map[string]string{}
	buildDir string
)

// binary builds ./cmd/NAME once per test run and returns its path; it
// skips when the command is not in the tree.
func binary(t testing.TB, name string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if p, ok := built[name]; ok {
		return p
	}
	root := repoRoot(t)
	if _, err := os.Stat(filepath.Join(root, "cmd", name)); err != nil {
		absent(t, "cmd/%s is not in the tree", name)
	}
	if buildDir == "" {
		d, err := os.MkdirTemp("", "ledgerfence-it-bin-")
		if err != nil {
			t.Fatal(err)
		}
		buildDir = d
	}
	out := filepath.Join(buildDir, name)
	cmd := exec.Command("go", "build", "-o", out, "./cmd/"+name)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/%s: %v\n%s", name, err, b)
	}
	built[name] = out
	return out
}

// cleanups run after every test of the package.
var cleanups []func()

func TestMain(m *testing.M) {
	// ledgerctl remembers the signed head of each filterd URL it talks to
	// under $XDG_STATE_HOME; these filterds come and go on reused ports,
	// each with a ledger of its own.
	state, err := os.MkdirTemp("", "ledgerfence-it-state-")
	if err != nil {
		panic(err)
	}
	os.Setenv("XDG_STATE_HOME", state)
	code := m.Run()
	for _, c := range cleanups {
		c()
	}
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.RemoveAll(state)
	os.Exit(code)
}

// freeAddr returns a 127.0.0.1 address that nothing listens on now.
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// syncBuffer collects a process's output.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// proc is a process started by a test and ended by its cleanup.
type proc struct {
	name    string
	cmd     *exec.Cmd
	out     syncBuffer
	done    chan struct{}
	started time.Time
	exited  time.Time
	err     error
}

func start(t testing.TB, env []string, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{name: filepath.Base(bin), done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p.started = time.Now()
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		p.exited = time.Now()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("output of %s %v:\n%s", p.name, args, p.out.String())
		}
	})
	return p
}

// stop ends the process (SIGTERM, then SIGKILL) and waits for it.
func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// wait waits for the process to exit and returns its exit code.
func (p *proc) wait(t testing.TB, limit time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(limit):
		t.Fatalf("%s still running after %s:\n%s", p.name, limit, p.out.String())
	}
	if p.err == nil {
		return 0
	}
	if ee, ok := p.err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	t.Fatalf("%s: %v", p.name, p.err)
	return -1
}

// eventually polls cond until it holds or the limit passes.
func eventually(t testing.TB, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, limit)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitOutput waits until the process has printed s.
func (p *proc) waitOutput(t testing.TB, limit time.Duration, s string) {
	t.Helper()
	eventually(t, limit, fmt.Sprintf("%s printing %q", p.name, s), func() bool {
		select {
		case <-p.done:
			if !strings.Contains(p.out.String(), s) {
				t.Fatalf("%s exited without printing %q:\n%s", p.name, s, p.out.String())
			}
		default:
		}
		return strings.Contains(p.out.String(), s)
	})
}

// run runs a command to its end and returns its exit code and outputs.
func run(t testing.TB, env []string, bin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), o.String(), e.String()
	}
	if err != nil {
		t.Fatalf("%s %v: %v", bin, args, err)
	}
	return 0, o.String(), e.String()
}

// filterd is a filterd serving an embedded ledger.
type filterd struct {
	url, token, data string
	p                *proc
}

func startFilterd(t testing.TB, addr, data string) *filterd {
	t.Helper()
	f := &filterd{url: "http://" + addr, token: "it-token-" + filepath.Base(data), data: data}
	f.p = start(t, nil, binary(t, "filterd"), "--listen", addr, "--data", data, "--admin-token", f.token)
	eventually(t, time.Minute, "filterd ready", func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return f
}

// hostRecord reads a host through ledgerctl.
type hostRecord struct {
	Host          string   `json:"host"`
	Country       string   `json:"country"`
	Organizations []string `json:"organizations"`
	Region        string   `json:"region"`
	TxID          string   `json:"tx_id"`
	Writer        struct {
		ID string `json:"id"`
	} `json:"writer"`
}

func getHost(t testing.TB, f *filterd, name string) (hostRecord, bool) {
	t.Helper()
	code, out, errs := run(t, nil, binary(t, "ledgerctl"), "host", "get", name, "--ledger", f.url, "--token", f.token, "-o", "json")
	if code == 1 && strings.Contains(errs, "not found") {
		return hostRecord{}, false
	}
	if code != 0 {
		t.Fatalf("ledgerctl host get %s: exit %d: %s", name, code, errs)
	}
	var recs []hostRecord
	if err := json.Unmarshal([]byte(out), &recs); err != nil || len(recs) != 1 {
		t.Fatalf("ledgerctl host get %s: %v: %q", name, err, out)
	}
	return recs[0], true
}

func hostHistory(t testing.TB, f *filterd, name string) int {
	t.Helper()
	code, out, errs := run(t, nil, binary(t, "ledgerctl"), "host", "history", name, "--ledger", f.url, "--token", f.token, "-o", "json")
	if code != 0 {
		t.Fatalf("ledgerctl host history %s: exit %d: %s", name, code, errs)
	}
	var changes []json.RawMessage
	if err := json.Unmarshal([]byte(out), &changes); err != nil {
		t.Fatal(err)
	}
	return len(changes)
}
