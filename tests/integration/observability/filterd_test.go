package observability

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/notify"
)

const (
	adminToken = "observability-test-token"
	vmUUID     = "0b3e1c52-7a4e-4b8e-9f3a-3d2c1b0a9e8f"
)

// buildFilterd returns the filterd binary to test: LEDGERFENCE_FILTERD_BIN
// when set, else cmd/filterd built into a temporary directory.
func buildFilterd(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("LEDGERFENCE_FILTERD_BIN"); bin != "" {
		return bin
	}
	root := repoRoot(t)
	bin := filepath.Join(t.TempDir(), "filterd")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/filterd")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/filterd: %v\n%s", err, out)
	}
	return bin
}

// TestPrometheusScrapesFilterd: a real Prometheus scrapes a real filterd;
// after denying webhook requests, PromQL returns the deny count by reason.
// When filterd takes --nats, the denials arrive on NATS too.
func TestPrometheusScrapesFilterd(t *testing.T) {
	tool(t, "prometheus")
	bin := buildFilterd(t)
	help, _ := exec.Command(bin, "-h").CombinedOutput()

	addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	args := []string{"--listen", addr, "--data", t.TempDir(), "--admin-token", adminToken}
	var denials chan notify.DecisionDenied
	if strings.Contains(string(help), "-nats") {
		ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true})
		if err != nil {
			t.Fatal(err)
		}
		go ns.Start()
		t.Cleanup(ns.Shutdown)
		if !ns.ReadyForConnections(waitFor) {
			t.Fatal("nats-server did not start")
		}
		nc, err := nats.Connect(ns.ClientURL())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		denials = make(chan notify.DecisionDenied, 16)
		if _, err := notify.Subscribe(nc, func(d notify.DecisionDenied) { denials <- d }, nil); err != nil {
			t.Fatal(err)
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--nats", ns.ClientURL())
	}
	base := startFilterd(t, bin, args...)
	p := startPrometheus(t, "filterd", addr)

	for host, body := range map[string]string{
		"hm1": `{"country":"JP","organizations":["CompanyA","CompanyB"]}`,
		"hm3": `{"country":"DE","organizations":["CompanyA"]}`,
		"hm4": `{"country":"GB","organizations":["CompanyC"]}`,
	} {
		call(t, http.MethodPut, base+"/v1/hosts/"+host, body, http.StatusOK)
	}
	call(t, http.MethodPut, base+"/v1/regulations/vm:"+vmUUID,
		`{"countries":["JP","GB"],"organizations":["CompanyA","CompanyB"]}`, http.StatusOK)

	request := fmt.Sprintf(`{"spec":{"nova_object.name":"RequestSpec","nova_object.data":{"instance_uuid":%q,"project_id":"p1",
		"scheduler_hints":{"_nova_check_type":["live_migrate"]}}},
		"context":{"request_id":"req-obs"},
		"hosts":[{"host":"hm1"},{"host":"hm3"},{"host":"hm4"},{"host":"hm6"}]}`, vmUUID)
	var ids []string
	for range 2 {
		resp, body := call(t, http.MethodPost, base+"/scheduler/nova/external", request, http.StatusOK)
		var answer struct {
			Hosts []string `json:"hosts"`
		}
		if err := json.Unmarshal(body, &answer); err != nil {
			t.Fatalf("answer %s: %v", body, err)
		}
		if fmt.Sprint(answer.Hosts) != "[hm1]" {
			t.Fatalf("hosts = %v, want [hm1]", answer.Hosts)
		}
		ids = append(ids, resp.Header.Get("X-Ledgerfence-Decision"))
	}

	p.await(t, `sum by (reason) (ledgerfence_hosts_denied_total)`, "reason", map[string]float64{
		string(filter.CountryNotAllowed): 2, string(filter.OrganizationNotAllowed): 2, string(filter.HostUnregistered): 2,
	})
	p.await(t, `sum by (outcome) (ledgerfence_webhook_requests_total{operation="live_migrate"})`, "outcome", map[string]float64{
		"allowed_some": 2,
	})

	if denials != nil {
		for _, id := range ids {
			select {
			case d := <-denials:
				if d.DecisionID != id || d.Instance != vmUUID || d.Operation != "live_migrate" || len(d.Denied) != 3 {
					t.Errorf("event %+v, want decision %s with 3 denied hosts", d, id)
				}
			case <-time.After(waitFor):
				t.Fatalf("no ledgerfence.decision.denied event for decision %s", id)
			}
		}
	}
}

// startFilterd runs filterd and waits until /readyz answers 200.
func startFilterd(t *testing.T, bin string, args ...string) string {
	t.Helper()
	var addr string
	for i, a := range args {
		if a == "--listen" {
			addr = args[i+1]
		}
	}
	proc := startProcess(t, "filterd", filepath.Join(t.TempDir(), "filterd.log"), bin, args...)
	base := "http://" + addr
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	for {
		select {
		case <-proc.done:
			t.Fatalf("filterd exited: %v", proc.err)
		default:
		}
		if resp, err := http.Get(base + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return base
			}
		}
		select {
		case <-ctx.Done():
			t.Fatal("filterd did not become ready")
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// call sends a JSON request with the admin token and checks the status.
func call(t *testing.T, method, url, body string, want int) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader([]byte(body)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != want {
		t.Fatalf("%s %s: %d %s, want %d", method, url, resp.StatusCode, out, want)
	}
	return resp, out
}
