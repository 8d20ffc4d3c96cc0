// Package filterdtest runs ledgerfence's real commands for the integration
// tests: it builds them from the repository, starts a filterd on the
// embedded ledger on a free loopback port and waits until it is ready,
// issues writer tokens with ledgerctl, and talks to the REST API. A test
// that starts a filterd stops it when it ends, and sees its log when it
// failed.
package filterdtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// AdminToken is the admin token of the filterds Start starts.
const AdminToken = "filterdtest-admin-token"

// Root is the repository's root directory.
func Root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", "..", ".."))
}

// Build builds the commands named (directories of ./cmd) into a new
// temporary directory and returns it; the caller removes it.
func Build(cmds ...string) (string, error) {
	dir, err := os.MkdirTemp("", "ledgerfence-bin")
	if err != nil {
		return "", err
	}
	args := []string{"build", "-o", dir + "/"}
	for _, c := range cmds {
		args = append(args, "./cmd/"+c)
	}
	cmd := exec.Command("go", args...)
	cmd.Dir = Root()
	if out, err := cmd.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("go build %s: %v\n%s", strings.Join(cmds, " "), err, out)
	}
	return dir, nil
}

// Options of Start.
type Options struct {
	// Data is the data directory (default: a new temporary one).
	Data string
	// Args are more flags.
	Args []string
	// Env are more environment variables (KEY=VALUE).
	Env []string
	// LogLevel is --log-level (default warn).
	LogLevel string
}

// Filterd is a running filterd.
type Filterd struct {
	URL  string
	Addr string
	Data string
	Cmd  *exec.Cmd
	logs *buffer
}

// FreeAddr returns a loopback address with a port free a moment ago.
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// Start starts bin/filterd on the embedded ledger with AdminToken and waits
// until /readyz says ready (20 s at most).
func Start(tb testing.TB, bin string, o Options) *Filterd {
	tb.Helper()
	if o.Data == "" {
		o.Data = tb.TempDir()
	}
	if o.LogLevel == "" {
		o.LogLevel = "warn"
	}
	addr := FreeAddr(tb)
	cmd := exec.Command(filepath.Join(bin, "filterd"), append([]string{"--listen", addr, "--data", o.Data, "--log-level", o.LogLevel}, o.Args...)...)
	cmd.Env = append(append(os.Environ(), "LEDGERFENCE_ADMIN_TOKEN="+AdminToken), o.Env...)
	f := &Filterd{URL: "http://" + addr, Addr: addr, Data: o.Data, Cmd: cmd, logs: &buffer{}}
	cmd.Stdout, cmd.Stderr = f.logs, f.logs
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if tb.Failed() {
			tb.Logf("filterd's log:\n%s", f.logs.String())
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(f.URL + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return f
			}
		}
		if time.Now().After(deadline) {
			tb.Fatalf("filterd not ready after 20 s: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Logs is what filterd wrote so far.
func (f *Filterd) Logs() string { return f.logs.String() }

// Do sends a request with token (none when empty) and body (none when nil)
// and returns the status and the body of the answer.
func (f *Filterd) Do(tb testing.TB, method, path, token string, body []byte) (int, []byte) {
	tb.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, f.URL+path, rd)
	if err != nil {
		tb.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return resp.StatusCode, out
}

// Write sends a write with token and fails the test unless it is answered
// 200.
func (f *Filterd) Write(tb testing.TB, method, path, token string, body []byte) []byte {
	tb.Helper()
	code, out := f.Do(tb, method, path, token, body)
	if code != http.StatusOK {
		tb.Fatalf("%s %s: %d %s", method, path, code, out)
	}
	return out
}

// Put writes with the admin token.
func (f *Filterd) Put(tb testing.TB, path string, body []byte) []byte {
	tb.Helper()
	return f.Write(tb, http.MethodPut, path, AdminToken, body)
}

// IssueToken issues a writer token of role, named id (and, for a host
// agent, bound to host), for the embedded ledger in data, with ledgerctl
// from bin, and returns it. filterd reads the tokens file again when it
// changes.
func IssueToken(tb testing.TB, bin, data, role, id string, host ...string) string {
	tb.Helper()
	args := []string{"token", "issue", "--data", data, "--role", role, "--id", id, "-o", "json"}
	if len(host) > 0 {
		args = append(args, "--host", host[0])
	}
	out, err := exec.Command(filepath.Join(bin, "ledgerctl"), args...).Output()
	if err != nil {
		tb.Fatalf("ledgerctl token issue: %v", err)
	}
	var tok struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(out, &tok); err != nil || tok.Token == "" {
		tb.Fatalf("ledgerctl token issue: %q: %v", out, err)
	}
	return tok.Token
}

// buffer is a bytes.Buffer safe for the process's writes and the test's
// reads.
type buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.b.Len() > 8<<20 {
		return len(p), nil // enough to tell what went wrong
	}
	return b.b.Write(p)
}

func (b *buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
