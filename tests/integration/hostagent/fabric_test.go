package hostagent_test

import (
	"errors"
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
)

// fabricNet is a native Fabric network of tests/integration/fabric/network.
type fabricNet struct {
	dir string
	env map[string]string
}

func (n *fabricNet) get(k string) string { return n.env["LEDGERFENCE_FABRIC_"+k] }

var (
	fabricOnce sync.Once
	theFabric  *fabricNet
	fabricErr  string
	fabricOwn  bool
)

func init() {
	cleanups = append(cleanups, func() {
		if theFabric != nil && fabricOwn {
			down := exec.Command(filepath.Join(repoRoot(nil), "tests", "integration", "fabric", "network", "down.sh"))
			down.Env = append(os.Environ(), "LEDGERFENCE_FABRIC_DIR="+theFabric.dir)
			down.Run()
			os.RemoveAll(theFabric.dir)
		}
	})
}

// startFabric uses the network in LEDGERFENCE_FABRIC_DIR when it has a
// network.env, or starts one for the package with up.sh; it skips when the
// harness or Fabric's commands are missing.
func startFabric(t *testing.T) *fabricNet {
	t.Helper()
	harness := filepath.Join(repoRoot(t), "tests", "integration", "fabric", "network")
	if _, err := os.Stat(filepath.Join(harness, "up.sh")); err != nil {
		absent(t, "the Fabric network harness is not in the tree")
	}
	fabricOnce.Do(func() {
		if dir := os.Getenv("LEDGERFENCE_FABRIC_DIR"); dir != "" {
			if env, err := readEnv(filepath.Join(dir, "network.env")); err == nil {
				theFabric = &fabricNet{dir: dir, env: env}
				return
			}
		}
		dir, err := os.MkdirTemp("", "ledgerfence-hostagent-fabric-")
		if err != nil {
			fabricErr = err.Error()
			return
		}
		os.Remove(dir)
		base, err := fabricPortBase()
		if err != nil {
			fabricErr = err.Error()
			return
		}
		up := exec.Command(filepath.Join(harness, "up.sh"), "fabric-seed-host")
		up.Env = append(os.Environ(), "LEDGERFENCE_FABRIC_DIR="+dir, "LEDGERFENCE_FABRIC_PORT_BASE="+strconv.Itoa(base))
		start := time.Now()
		out, err := up.CombinedOutput()
		fabricOwn = true
		theFabric = &fabricNet{dir: dir}
		if err != nil {
			fabricErr = fmt.Sprintf("up.sh: %v\n%s", err, lastLines(string(out), 30))
			return
		}
		env, err := readEnv(filepath.Join(dir, "network.env"))
		if err != nil {
			fabricErr = err.Error()
			return
		}
		theFabric.env = env
		fmt.Fprintf(os.Stderr, "Fabric network up in %s (%s)\n", time.Since(start).Round(time.Second), dir)
	})
	if fabricErr != "" {
		if strings.Contains(fabricErr, "fabric commands") || strings.Contains(fabricErr, "build.sh") {
			absent(t, "Fabric's commands are not built: %s", lastLines(fabricErr, 3))
		}
		t.Fatalf("the Fabric network did not start: %s", fabricErr)
	}
	return theFabric
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func fabricPortBase() (int, error) {
	for base := 18250; base < 30000; base += 100 {
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
	return 0, errors.New("no free range of ports for a Fabric network")
}

// enrollAgent enrols a hostagent identity for host through Org1's CA.
func (n *fabricNet) enrollAgent(t *testing.T, name, role, host string) {
	t.Helper()
	args := []string{"org1", name, role}
	if host != "" {
		args = append(args, host)
	}
	// The CA may drop a connection while it is busy: try a few times.
	var out []byte
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		cmd := exec.Command(filepath.Join(repoRoot(t), "tests", "integration", "fabric", "network", "enroll.sh"), args...)
		cmd.Env = append(os.Environ(), "LEDGERFENCE_FABRIC_DIR="+n.dir)
		if out, err = cmd.CombinedOutput(); err == nil {
			return
		}
	}
	t.Fatalf("enroll.sh %v: %v\n%s", args, err, lastLines(string(out), 10))
}

// flags are the --fabric-* flags for identity name (of Org1).
func (n *fabricNet) flags(name string) []string {
	id := filepath.Join(n.get("IDENTITIES"), name)
	return []string{"--ledger", "fabric",
		"--fabric-peer", n.get("ORG1_PEER_ADDRESS"), "--fabric-tls-ca", n.get("ORG1_PEER_TLS_CA"),
		"--fabric-server-name", n.get("ORG1_PEER_SERVER_NAME"), "--fabric-msp-id", n.get("ORG1_MSPID"),
		"--fabric-cert", filepath.Join(id, "cert.pem"), "--fabric-key", filepath.Join(id, "key.pem"),
		"--fabric-channel", n.get("CHANNEL"), "--fabric-chaincode", n.get("CHAINCODE")}
}

func TestFabricAgents(t *testing.T) {
	agent, ctl := binary(t, "hostagent"), binary(t, "ledgerctl")
	n := startFabric(t)
	suffix := strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	hostA, hostB := "lfh-a-"+suffix, "lfh-b-"+suffix
	n.enrollAgent(t, hostA+"-agent", "hostagent", hostA)
	n.enrollAgent(t, hostB+"-agent", "hostagent", hostB)
	facts := func(host string, extra ...string) []string {
		return append([]string{"--host", host, "--nova-conf", "/nonexistent-on-purpose.conf", "--log-format", "console", "--once"}, extra...)
	}
	read := func(t *testing.T, host string) (code int, out string) {
		code, out, _ = run(t, nil, ctl, append([]string{"host", "get", host, "-o", "json"}, n.flags(hostB+"-agent")...)...)
		return code, out
	}

	t.Run("registers with its own identity", func(t *testing.T) {
		start := time.Now()
		code, _, errs := run(t, noCloud, agent, append(facts(hostA, "--country", "JP", "--organization", "CompanyA"), n.flags(hostA+"-agent")...)...)
		if code != 0 {
			t.Fatalf("exit %d:\n%s", code, errs)
		}
		t.Logf("boot-to-registered on Fabric (a new record, endorsed by both organisations and committed): %.2fs", time.Since(start).Seconds())
		if c, out := read(t, hostA); c != 0 || !strings.Contains(out, `"country": "JP"`) {
			t.Fatalf("read back: exit %d: %s", c, out)
		}
		start = time.Now()
		code, _, errs = run(t, noCloud, agent, append(facts(hostA, "--country", "JP", "--organization", "CompanyA"), n.flags(hostA+"-agent")...)...)
		if code != 0 || !strings.Contains(errs, "nothing written") {
			t.Fatalf("second boot: exit %d:\n%s", code, errs)
		}
		t.Logf("boot with the record unchanged on Fabric (a read, no transaction): %.2fs", time.Since(start).Seconds())
	})
	t.Run("may not write another host", func(t *testing.T) {
		code, _, errs := run(t, noCloud, agent, append(facts(hostB, "--country", "DE", "--organization", "Evil"), n.flags(hostA+"-agent")...)...)
		if code != 3 {
			t.Fatalf("exit %d, want 3 (forbidden):\n%s", code, errs)
		}
		if c, out := read(t, hostB); c == 0 {
			t.Fatalf("%s was written by another host's agent: %s", hostB, out)
		}
	})
	t.Run("ledgerctl with a VM manager's identity", func(t *testing.T) {
		vm := fmt.Sprintf("%08x-0000-4000-8000-%012x", time.Now().UnixNano()&0xffffffff, time.Now().UnixNano()&0xffffffffffff)
		code, out, errs := run(t, nil, ctl, append([]string{"regulation", "set", "vm:" + vm, "--allow", "JP.CompanyA", "-o", "json"}, n.flags("vmm1")...)...)
		if code != 0 || !strings.Contains(out, `"version": 1`) {
			t.Fatalf("vmm1: exit %d: %s %s", code, out, errs)
		}
		code, _, errs = run(t, nil, ctl, append([]string{"regulation", "set", "vm:" + vm, "--allow", "DE.All"}, n.flags(hostA+"-agent")...)...)
		if code != 3 {
			t.Fatalf("a host agent changed a regulation: exit %d: %s", code, errs)
		}
		code, out, errs = run(t, nil, ctl, append([]string{"check", "--vm", vm, "--host", hostA, "--host", hostB, "-o", "json"}, n.flags("vmm1")...)...)
		// hostA is JP/CompanyA (allowed); hostB is not registered yet.
		if code != 3 || !strings.Contains(out, `"summary": "1/2 hosts eligible: 1 host_unregistered"`) {
			t.Fatalf("check: exit %d: %s %s", code, out, errs)
		}
		code, out, errs = run(t, nil, ctl, append([]string{"regulation", "history", "vm:" + vm}, n.flags("vmm1")...)...)
		if code != 0 || strings.Count(out, "put") != 1 {
			t.Fatalf("history: exit %d: %s %s", code, out, errs)
		}
	})
	t.Run("two agents side by side", func(t *testing.T) {
		var wg sync.WaitGroup
		codes := make([]int, 2)
		for i, h := range []string{hostA, hostB} {
			wg.Add(1)
			go func(i int, h string) {
				defer wg.Done()
				codes[i], _, _ = run(t, noCloud, agent, append(facts(h, "--country", "GB", "--organization", "CompanyB"), n.flags(h+"-agent")...)...)
			}(i, h)
		}
		wg.Wait()
		if codes[0] != 0 || codes[1] != 0 {
			t.Fatalf("exits %v", codes)
		}
		for _, h := range []string{hostA, hostB} {
			if c, out := read(t, h); c != 0 || !strings.Contains(out, `"country": "GB"`) || !strings.Contains(out, `"CompanyB"`) {
				t.Fatalf("%s: exit %d: %s", h, c, out)
			}
		}
	})
}
