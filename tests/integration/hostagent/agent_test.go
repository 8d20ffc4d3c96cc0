package hostagent_test

import (
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// agentArgs are the flags of a host agent for host name on filterd f.
func agentArgs(url, token, name, country string, orgs ...string) []string {
	args := []string{"--ledger", url, "--token", token, "--host", name, "--country", country,
		"--nova-conf", "/nonexistent-on-purpose.conf", "--log-format", "console"}
	for _, o := range orgs {
		args = append(args, "--organization", o)
	}
	return args
}

// noCloud keeps the agent from picking up OpenStack credentials.
var noCloud = []string{"OS_CLOUD=", "OS_AUTH_URL="}

func TestAgentRegistersOnceLedgerComesUp(t *testing.T) {
	agent := binary(t, "hostagent")
	binary(t, "filterd")
	binary(t, "ledgerctl")
	addr := freeAddr(t)
	data := t.TempDir()
	token := "it-token-" + filepath.Base(data)

	// The agent boots first: the ledger is not there.
	args := append(agentArgs("http://"+addr, token, "compute-early", "jp", "CompanyA", "CompanyB"),
		"--once", "--deadline", "5m")
	p := start(t, noCloud, agent, args...)
	p.waitOutput(t, time.Minute, "ledger unavailable, retrying")
	select {
	case <-p.done:
		t.Fatalf("agent exited while the ledger was down:\n%s", p.out.String())
	default:
	}

	// The ledger comes up; the agent registers and exits 0.
	f := startFilterd(t, addr, data)
	up := time.Now()
	if code := p.wait(t, 3*time.Minute); code != 0 {
		t.Fatalf("agent exit %d:\n%s", code, p.out.String())
	}
	t.Logf("registered %.2fs after filterd was reachable (agent ran %.2fs)", p.exited.Sub(up).Seconds(), p.exited.Sub(p.started).Seconds())
	rec, ok := getHost(t, f, "compute-early")
	if !ok {
		t.Fatal("host not in the ledger")
	}
	if rec.Country != "JP" || !slices.Equal(rec.Organizations, []string{"CompanyA", "CompanyB"}) {
		t.Fatalf("stored %+v", rec)
	}

	// A reboot with the same facts writes nothing.
	q := start(t, noCloud, agent, args...)
	if code := q.wait(t, time.Minute); code != 0 {
		t.Fatalf("second boot: exit %d:\n%s", code, q.out.String())
	}
	t.Logf("boot with the record unchanged (a read, nothing written): %.3fs", q.exited.Sub(q.started).Seconds())
	if !strings.Contains(q.out.String(), "nothing written") {
		t.Fatalf("second boot did not report an unchanged record:\n%s", q.out.String())
	}
	if n := hostHistory(t, f, "compute-early"); n != 1 {
		t.Fatalf("%d versions after two boots with the same facts, want 1", n)
	}

	// A host that boots while the ledger is up registers at once.
	late := start(t, noCloud, agent, append(agentArgs(f.url, f.token, "compute-late", "GB", "CompanyB"), "--once")...)
	if code := late.wait(t, time.Minute); code != 0 {
		t.Fatalf("compute-late: exit %d:\n%s", code, late.out.String())
	}
	t.Logf("boot-to-registered with filterd up (embedded ledger, a new record): %.3fs", late.exited.Sub(late.started).Seconds())
	if _, ok := getHost(t, f, "compute-late"); !ok {
		t.Fatal("compute-late not registered")
	}
}

func TestAgentGivesUpAtDeadline(t *testing.T) {
	agent := binary(t, "hostagent")
	args := append(agentArgs("http://"+freeAddr(t), "t", "compute-alone", "JP", "CompanyA"), "--once", "--deadline", "3s")
	code, _, errs := run(t, noCloud, agent, args...)
	if code != 4 {
		t.Fatalf("exit %d, want 4 (unavailable):\n%s", code, errs)
	}
	if !strings.Contains(errs, "not registered: the ledger stayed unavailable") {
		t.Fatalf("no clear error:\n%s", errs)
	}
}

func TestAgentRejectsBadFactsBeforeWriting(t *testing.T) {
	agent := binary(t, "hostagent")
	binary(t, "ledgerctl")
	f := startFilterd(t, freeAddr(t), t.TempDir())
	tests := []struct {
		name string
		args []string
		msg  string
	}{
		{"bad country", agentArgs(f.url, f.token, "compute-x", "XX", "CompanyA"), `"XX" is not an ISO 3166-1`},
		{"wildcard organisation", agentArgs(f.url, f.token, "compute-x", "JP", "*"), "organizations:"},
		{"bad host name", agentArgs(f.url, f.token, "compute x", "JP", "CompanyA"), "outside [A-Za-z0-9._-]"},
		{"no organisation", agentArgs(f.url, f.token, "compute-x", "JP"), "--organization is required"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errs := run(t, noCloud, agent, append(tc.args, "--once")...)
			if code != 2 || !strings.Contains(errs, tc.msg) {
				t.Fatalf("exit %d, want 2 with %q:\n%s", code, tc.msg, errs)
			}
		})
	}
	if _, ok := getHost(t, f, "compute-x"); ok {
		t.Fatal("a host was written from bad input")
	}
	t.Run("wrong token", func(t *testing.T) {
		args := agentArgs(f.url, "wrong-token", "compute-x", "JP", "CompanyA")
		code, _, errs := run(t, noCloud, agent, append(args, "--once")...)
		if code == 0 || code == 4 {
			t.Fatalf("exit %d with a wrong token:\n%s", code, errs)
		}
		if _, ok := getHost(t, f, "compute-x"); ok {
			t.Fatal("written with a wrong token")
		}
	})
}

func TestTwoAgentsNeverOverwriteEachOther(t *testing.T) {
	agent := binary(t, "hostagent")
	binary(t, "ledgerctl")
	f := startFilterd(t, freeAddr(t), t.TempDir())

	// Two daemons for two hosts, re-asserting every 200ms, side by side.
	a := start(t, noCloud, agent, append(agentArgs(f.url, f.token, "compute-a", "JP", "CompanyA"), "--interval", "200ms")...)
	b := start(t, noCloud, agent, append(agentArgs(f.url, f.token, "compute-b", "GB", "CompanyB", "CompanyC"), "--interval", "200ms", "--region", "r2")...)
	a.waitOutput(t, time.Minute, "host registered")
	b.waitOutput(t, time.Minute, "host registered")
	// Let each re-assert several times.
	for _, p := range []*proc{a, b} {
		eventually(t, time.Minute, p.name+" re-asserting", func() bool {
			return strings.Count(p.out.String(), "nothing written") >= 5
		})
	}
	// Meanwhile, boots of one-shot agents for both hosts, concurrently.
	var wg sync.WaitGroup
	codes := make([]int, 6)
	for i := range codes {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			args := agentArgs(f.url, f.token, "compute-a", "JP", "CompanyA")
			if i%2 == 1 {
				args = append(agentArgs(f.url, f.token, "compute-b", "GB", "CompanyC", "CompanyB"), "--region", "r2")
			}
			codes[i], _, _ = run(t, noCloud, agent, append(args, "--once")...)
		}(i)
	}
	wg.Wait()
	for i, c := range codes {
		if c != 0 {
			t.Fatalf("one-shot agent %d: exit %d", i, c)
		}
	}
	ra, _ := getHost(t, f, "compute-a")
	rb, _ := getHost(t, f, "compute-b")
	if ra.Country != "JP" || !slices.Equal(ra.Organizations, []string{"CompanyA"}) || ra.Region != "" {
		t.Fatalf("compute-a is %+v", ra)
	}
	if rb.Country != "GB" || !slices.Equal(rb.Organizations, []string{"CompanyB", "CompanyC"}) || rb.Region != "r2" {
		t.Fatalf("compute-b is %+v", rb)
	}
	if na, nb := hostHistory(t, f, "compute-a"), hostHistory(t, f, "compute-b"); na != 1 || nb != 1 {
		t.Fatalf("versions: compute-a %d, compute-b %d; want one each", na, nb)
	}
}
