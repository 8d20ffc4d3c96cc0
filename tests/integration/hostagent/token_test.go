package hostagent_test

import (
	"strings"
	"testing"
)

// TestAgentWithItsOwnToken: the agent registers its host with a writer
// token bound to it (ledgerctl token issue), recorded under the token's
// identity; the same token cannot write another host, is not sent over
// plain http to a host that is not a loopback address, and is refused once
// revoked.
func TestAgentWithItsOwnToken(t *testing.T) {
	agent := binary(t, "hostagent")
	ctl := binary(t, "ledgerctl")
	binary(t, "filterd")
	f := startFilterd(t, freeAddr(t), t.TempDir())

	code, out, errs := run(t, nil, ctl, "token", "issue", "--data", f.data, "--role", "hostagent", "--host", "compute-own")
	if code != 0 {
		t.Fatalf("token issue: exit %d: %s", code, errs)
	}
	token := strings.TrimSpace(out)

	if code, _, errs := run(t, noCloud, agent, append(agentArgs(f.url, token, "compute-own", "JP", "CompanyA"), "--once")...); code != 0 {
		t.Fatalf("agent on its own host: exit %d:\n%s", code, errs)
	}
	rec, ok := getHost(t, f, "compute-own")
	if !ok || rec.Country != "JP" || rec.Writer.ID != "hostagent-compute-own" {
		t.Fatalf("stored %+v (found %v): want it written by hostagent-compute-own", rec, ok)
	}

	for _, tc := range []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"another host", agentArgs(f.url, token, "compute-other", "JP", "CompanyA"), 3, "may write only its own host"},
		{"plain http elsewhere", agentArgs("http://filterd.invalid:8787", token, "compute-own", "JP", "CompanyA"), 2, "use https"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errs := run(t, noCloud, agent, append(tc.args, "--once", "--deadline", "30s")...)
			if code != tc.code || !strings.Contains(errs, tc.msg) {
				t.Fatalf("exit %d, want %d with %q:\n%s", code, tc.code, tc.msg, errs)
			}
		})
	}
	if _, ok := getHost(t, f, "compute-other"); ok {
		t.Fatal("compute-other written with compute-own's token")
	}

	if code, _, errs := run(t, nil, ctl, "token", "revoke", "--data", f.data, "hostagent-compute-own"); code != 0 {
		t.Fatalf("token revoke: exit %d: %s", code, errs)
	}
	code, _, errs = run(t, noCloud, agent, append(agentArgs(f.url, token, "compute-own", "GB", "CompanyA"), "--once", "--deadline", "30s")...)
	if code != 3 || !strings.Contains(errs, "revoked") {
		t.Fatalf("a revoked token: exit %d, want 3:\n%s", code, errs)
	}
	if rec, _ := getHost(t, f, "compute-own"); rec.Country != "JP" {
		t.Fatalf("written with a revoked token: %+v", rec)
	}
}
