// Package decisions runs the one table of decisions (pkg/decide/decidetest)
// through every entry point a filterd on the embedded ledger offers, with
// the real binaries: Nova's webhook (the decision record), POST /v1/check,
// `ledgerctl check` against that filterd, and the host agent's sweep
// reading it. Each must give every host the table's verdict, reason and
// deciding regulation. The chaincode's Check runs the same table on the
// real Fabric network (tests/integration/fabric).
package decisions

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/ledgerfence/ledgerfence/pkg/cloud"
	"github.com/ledgerfence/ledgerfence/pkg/decide"
	"github.com/ledgerfence/ledgerfence/pkg/decide/decidetest"
	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/hostagent"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/remote"
	"github.com/ledgerfence/ledgerfence/tests/integration/filterdtest"
)

var bin string // directory of the built commands

func TestMain(m *testing.M) {
	dir, err := filterdtest.Build("filterd", "ledgerctl")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// filterd starts a filterd (with extra flags), seeds it with the table's
// hosts and regulations, and returns its base URL.
func filterd(t *testing.T, extra ...string) string {
	t.Helper()
	data := t.TempDir()
	attestor := filterdtest.IssueToken(t, bin, data, "attestor", "attestor-1")
	f := filterdtest.Start(t, bin, filterdtest.Options{Data: data, Args: extra})
	for _, h := range decidetest.Hosts() {
		b, _ := json.Marshal(map[string]any{"country": h.Country, "organizations": h.Organizations})
		f.Put(t, "/v1/hosts/"+h.Name, b)
	}
	for _, r := range decidetest.Regulations() {
		b, _ := json.Marshal(r.Terms())
		f.Put(t, "/v1/regulations/"+string(r.Subject), b)
	}
	// The operator claimed the hosts' facts; another identity, an
	// attestor's, attests some of them.
	for _, h := range decidetest.Hosts() {
		if slices.Contains(decidetest.AttestedHosts(), h.Name) {
			b, _ := json.Marshal(map[string]any{"country": h.Country, "organizations": h.Organizations})
			f.Write(t, http.MethodPost, "/v1/hosts/"+h.Name+"/attest", attestor, b)
		}
	}
	return f.URL
}

func postJSON(t *testing.T, url string, body any) *http.Response {
	t.Helper()
	b, _ := json.Marshal(body)
	resp, err := http.Post(url, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// webhook asks as Nova does, then reads the decision filterd kept.
func webhook(t *testing.T, base string, tc decidetest.Case) []decidetest.Verdict {
	hosts := []map[string]string{}
	for _, h := range tc.Hosts {
		hosts = append(hosts, map[string]string{"host": h, "hypervisor_hostname": h})
	}
	resp := postJSON(t, base+"/scheduler/nova/external", map[string]any{
		"spec": map[string]any{"nova_object.name": "RequestSpec", "nova_object.data": map[string]any{
			"instance_uuid": tc.VM, "project_id": tc.Project}},
		"context": map[string]any{"request_id": "req-decisions"},
		"hosts":   hosts,
	})
	resp.Body.Close()
	id := resp.Header.Get("X-Ledgerfence-Decision")
	r, err := http.Get(base + "/v1/decisions/" + id)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	var d struct {
		Verdicts []decide.Verdict `json:"verdicts"`
	}
	if err := json.NewDecoder(r.Body).Decode(&d); err != nil {
		t.Fatal(err)
	}
	return decidetest.Verdicts(decide.Report{Verdicts: d.Verdicts})
}

func check(t *testing.T, base string, tc decidetest.Case) decide.Report {
	resp := postJSON(t, base+"/v1/check", map[string]any{"instance_uuid": tc.VM, "project_id": tc.Project, "hosts": tc.Hosts})
	defer resp.Body.Close()
	var rep decide.Report
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&rep) != nil {
		t.Fatalf("/v1/check: %d", resp.StatusCode)
	}
	return rep
}

func ledgerctl(t *testing.T, base string, tc decidetest.Case) decide.Report {
	args := []string{"check", "--ledger", base, "--vm", tc.VM, "-o", "json"}
	if tc.Project != "" {
		args = append(args, "--project", tc.Project)
	}
	for _, h := range tc.Hosts {
		args = append(args, "--host", h)
	}
	cmd := exec.Command(filepath.Join(bin, "ledgerctl"), args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "XDG_STATE_HOME=" + t.TempDir()}
	var out, errs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errs
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); err != nil && (!ok || ee.ExitCode() != 3) {
		t.Fatalf("ledgerctl check: %v: %s", err, errs.String())
	}
	var rep decide.Report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("ledgerctl check's output %q: %v (%s)", out.String(), err, errs.String())
	}
	return rep
}

// oneServer lists the case's VM on whatever host is swept.
type oneServer struct{ srv cloud.Server }

func (o oneServer) ServersOnHost(_ context.Context, host string) ([]cloud.Server, error) {
	s := o.srv
	s.Host = host
	return []cloud.Server{s}, nil
}

// sweep runs the host agent's sweep on each of the case's hosts, as if the
// VM ran there: a violation is a denied host.
func sweep(t *testing.T, base string, tc decidetest.Case, opts filter.Options) []decidetest.Verdict {
	l, err := remote.New(base)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var out []decidetest.Verdict
	for _, h := range tc.Hosts {
		s := &hostagent.Sweeper{
			Host: h, Ledger: l, Options: opts, Clock: hostagent.SystemClock{}, Log: zap.NewNop(),
			Servers: oneServer{cloud.Server{ID: tc.VM, ProjectID: tc.Project, Name: "vm"}},
		}
		rep, err := s.Sweep(context.Background())
		if err != nil {
			t.Fatalf("sweep of %s: %v", h, err)
		}
		v := decidetest.Verdict{Host: h, Allowed: true}
		if len(rep.Violations) > 0 {
			vio := rep.Violations[0]
			v = decidetest.Verdict{Host: h, Reason: vio.Reason, By: vio.Subject}
		}
		out = append(out, v)
	}
	return out
}

// Every entry point answers each case of the table alike.
func TestEveryEntryPointDecidesAlike(t *testing.T) {
	plain := filterd(t)
	strict := filterd(t, "--deny-unregulated")
	for _, tc := range decidetest.Cases() {
		t.Run(tc.Name, func(t *testing.T) {
			base := plain
			if tc.Options.DenyUnregulated {
				base = strict
			}
			for _, e := range []struct {
				name string
				run  func() error
			}{
				{"webhook", func() error { return tc.CheckVerdicts(webhook(t, base, tc)) }},
				{"/v1/check", func() error { return tc.Check(check(t, base, tc)) }},
				{"ledgerctl check", func() error { return tc.Check(ledgerctl(t, base, tc)) }},
				{"sweep", func() error { return tc.CheckVerdicts(sweep(t, base, tc, tc.Options)) }},
			} {
				if err := e.run(); err != nil {
					t.Errorf("%s: %v", e.name, err)
				}
			}
		})
	}
	if !strings.HasPrefix(plain, "http://") {
		t.Fatal(plain)
	}
}
