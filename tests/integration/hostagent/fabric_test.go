package hostagent_test

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ledgerfence/ledgerfence/tests/integration/fabricnet"
)

var (
	fabricOnce sync.Once
	theFabric  *fabricnet.Network
	fabricErr  error
)

func init() {
	cleanups = append(cleanups, func() {
		if theFabric == nil {
			return
		}
		if err := theFabric.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	})
}

// startFabric uses the network in LEDGERFENCE_FABRIC_DIR when it has a
// network.env, or starts one for the package; it skips when the harness or
// Fabric's commands are missing, and under -short.
func startFabric(t *testing.T) *fabricnet.Network {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: no Fabric network started")
	}
	fabricOnce.Do(func() {
		if dir := os.Getenv("LEDGERFENCE_FABRIC_DIR"); dir != "" {
			if n, err := fabricnet.Use(dir); err == nil {
				theFabric = n
				return
			}
		}
		base, _ := strconv.Atoi(os.Getenv("LEDGERFENCE_FABRIC_PORT_BASE"))
		theFabric, fabricErr = fabricnet.Start(fabricnet.Options{
			Hosts: []string{"fabric-seed-host"}, PortBase: base, SearchFrom: 18250, Log: os.Stderr,
		})
	})
	switch {
	case errors.Is(fabricErr, fabricnet.ErrNoHarness):
		absent(t, "the Fabric network harness is not in the tree")
	case errors.Is(fabricErr, fabricnet.ErrNotBuilt):
		absent(t, "%v", fabricErr)
	case fabricErr != nil:
		t.Fatalf("the Fabric network did not start: %v", fabricErr)
	}
	return theFabric
}

// enrollAgent enrols identity name with role and host through Org1's CA.
func enrollAgent(t *testing.T, n *fabricnet.Network, name, role, host string) {
	t.Helper()
	if err := n.Enroll("org1", name, role, host); err != nil {
		t.Fatal(err)
	}
}

// fabricFlags are the --fabric-* flags for identity name (of Org1).
func fabricFlags(n *fabricnet.Network, name string) []string {
	id := n.Identity(name)
	return []string{"--ledger", "fabric",
		"--fabric-peer", n.Get("ORG1_PEER_ADDRESS"), "--fabric-tls-ca", n.Get("ORG1_PEER_TLS_CA"),
		"--fabric-server-name", n.Get("ORG1_PEER_SERVER_NAME"), "--fabric-msp-id", n.Get("ORG1_MSPID"),
		"--fabric-cert", id.Cert, "--fabric-key", id.Key,
		"--fabric-channel", n.Get("CHANNEL"), "--fabric-chaincode", n.Get("CHAINCODE")}
}

func TestFabricAgents(t *testing.T) {
	agent, ctl := binary(t, "hostagent"), binary(t, "ledgerctl")
	n := startFabric(t)
	suffix := strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	hostA, hostB := "lfh-a-"+suffix, "lfh-b-"+suffix
	enrollAgent(t, n, hostA+"-agent", "hostagent", hostA)
	enrollAgent(t, n, hostB+"-agent", "hostagent", hostB)
	facts := func(host string, extra ...string) []string {
		return append([]string{"--host", host, "--nova-conf", "/nonexistent-on-purpose.conf", "--log-format", "console", "--once"}, extra...)
	}
	read := func(t *testing.T, host string) (code int, out string) {
		code, out, _ = run(t, nil, ctl, append([]string{"host", "get", host, "-o", "json"}, fabricFlags(n, hostB+"-agent")...)...)
		return code, out
	}

	t.Run("registers with its own identity", func(t *testing.T) {
		start := time.Now()
		code, _, errs := run(t, noCloud, agent, append(facts(hostA, "--country", "JP", "--organization", "CompanyA"), fabricFlags(n, hostA+"-agent")...)...)
		if code != 0 {
			t.Fatalf("exit %d:\n%s", code, errs)
		}
		t.Logf("boot-to-registered on Fabric (a new record, endorsed by both organisations and committed): %.2fs", time.Since(start).Seconds())
		if c, out := read(t, hostA); c != 0 || !strings.Contains(out, `"country": "JP"`) {
			t.Fatalf("read back: exit %d: %s", c, out)
		}
		start = time.Now()
		code, _, errs = run(t, noCloud, agent, append(facts(hostA, "--country", "JP", "--organization", "CompanyA"), fabricFlags(n, hostA+"-agent")...)...)
		if code != 0 || !strings.Contains(errs, "nothing written") {
			t.Fatalf("second boot: exit %d:\n%s", code, errs)
		}
		t.Logf("boot with the record unchanged on Fabric (a read, no transaction): %.2fs", time.Since(start).Seconds())
	})
	t.Run("may not write another host", func(t *testing.T) {
		code, _, errs := run(t, noCloud, agent, append(facts(hostB, "--country", "DE", "--organization", "Evil"), fabricFlags(n, hostA+"-agent")...)...)
		if code != 3 {
			t.Fatalf("exit %d, want 3 (forbidden):\n%s", code, errs)
		}
		if c, out := read(t, hostB); c == 0 {
			t.Fatalf("%s was written by another host's agent: %s", hostB, out)
		}
	})
	t.Run("ledgerctl with a VM manager's identity", func(t *testing.T) {
		vm := fmt.Sprintf("%08x-0000-4000-8000-%012x", time.Now().UnixNano()&0xffffffff, time.Now().UnixNano()&0xffffffffffff)
		code, out, errs := run(t, nil, ctl, append([]string{"regulation", "set", "vm:" + vm, "--allow", "JP.CompanyA", "-o", "json"}, fabricFlags(n, "vmm1")...)...)
		if code != 0 || !strings.Contains(out, `"version": 1`) {
			t.Fatalf("vmm1: exit %d: %s %s", code, out, errs)
		}
		code, _, errs = run(t, nil, ctl, append([]string{"regulation", "set", "vm:" + vm, "--allow", "DE.All"}, fabricFlags(n, hostA+"-agent")...)...)
		if code != 3 {
			t.Fatalf("a host agent changed a regulation: exit %d: %s", code, errs)
		}
		code, out, errs = run(t, nil, ctl, append([]string{"check", "--vm", vm, "--host", hostA, "--host", hostB, "-o", "json"}, fabricFlags(n, "vmm1")...)...)
		// hostA is JP/CompanyA (allowed); hostB is not registered yet.
		if code != 3 || !strings.Contains(out, `"summary": "1/2 hosts eligible: 1 host_unregistered"`) {
			t.Fatalf("check: exit %d: %s %s", code, out, errs)
		}
		code, out, errs = run(t, nil, ctl, append([]string{"regulation", "history", "vm:" + vm}, fabricFlags(n, "vmm1")...)...)
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
				codes[i], _, _ = run(t, noCloud, agent, append(facts(h, "--country", "GB", "--organization", "CompanyB"), fabricFlags(n, h+"-agent")...)...)
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
