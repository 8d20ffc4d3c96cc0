package hostagent_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/quotasets"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/projects"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
	"github.com/gophercloud/gophercloud/v2/pagination"
	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/ledgerfence/ledgerfence/pkg/cloud"
	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/notify"
	"github.com/ledgerfence/ledgerfence/tests/integration/fabricnet"
)

// miniCloud is a running tests/integration/nova/cloud rig.
type miniCloud struct {
	rig string
	env map[string]string
	// osEnv are the OS_* variables of the cloud's admin.
	osEnv   []string
	filterd *filterd
}

var (
	cloudOnce sync.Once
	theCloud  *miniCloud
	cloudErr  string
)

func init() {
	cleanups = append(cleanups, func() {
		if theCloud != nil {
			stop := filepath.Join(repoRoot(nil), "tests", "integration", "nova", "cloud", "stop.sh")
			exec.Command(stop, theCloud.rig, "--purge").Run()
		}
	})
}

// startCloud brings up the mini cloud once for the package, or skips.
func startCloud(t *testing.T) *miniCloud {
	t.Helper()
	root := repoRoot(t)
	script := filepath.Join(root, "tests", "integration", "nova", "cloud", "start.sh")
	if _, err := os.Stat(script); err != nil {
		absent(t, "the mini cloud harness tests/integration/nova/cloud/start.sh is not in the tree")
	}
	for _, bin := range []string{"keystone-manage", "nova-manage", "placement-manage", "glance-api", "uwsgi", "mariadb-install-db"} {
		if _, err := exec.LookPath(bin); err != nil {
			absent(t, "%s is not installed (tests/integration/nova/install.sh cloud)", bin)
		}
	}
	filterdBin := binary(t, "filterd")
	binary(t, "hostagent")
	binary(t, "ledgerctl")
	cloudOnce.Do(func() {
		rig, err := os.MkdirTemp("", "ledgerfence-hostagent-rig-")
		if err != nil {
			cloudErr = err.Error()
			return
		}
		cmd := exec.Command(script, rig)
		cmd.Env = append(os.Environ(), "LEDGERFENCE_FILTERD="+filterdBin, "LEDGERFENCE_HOSTAGENT="+binary(t, "hostagent"))
		out, err := cmd.CombinedOutput()
		if err != nil {
			cloudErr = fmt.Sprintf("start.sh: %v\n%s", err, out)
			exec.Command(filepath.Join(filepath.Dir(script), "stop.sh"), rig, "--purge").Run()
			return
		}
		env, err := fabricnet.ReadEnv(filepath.Join(rig, "cloud.env"))
		if err != nil {
			cloudErr = err.Error()
			return
		}
		c := &miniCloud{rig: rig, env: env}
		c.osEnv = []string{
			"OS_CLOUD=", "OS_AUTH_URL=http://127.0.0.1:" + env["KEYSTONE_PORT"] + "/v3",
			"OS_USERNAME=admin", "OS_PASSWORD=" + env["ADMIN_PASSWORD"], "OS_PROJECT_NAME=admin",
			"OS_USER_DOMAIN_NAME=Default", "OS_PROJECT_DOMAIN_NAME=Default", "OS_REGION_NAME=RegionOne",
		}
		c.filterd = &filterd{url: "http://127.0.0.1:" + env["FILTERD_PORT"], token: env["FILTERD_TOKEN"], data: filepath.Join(rig, "filterd")}
		theCloud = c
		fmt.Fprintf(os.Stderr, "mini cloud up in %ss (%s)\n", env["BRINGUP_SECONDS"], rig)
	})
	if theCloud == nil {
		t.Fatalf("the mini cloud did not start: %s", cloudErr)
	}
	return theCloud
}

// compute is a gophercloud compute client of the cloud's admin.
func (c *miniCloud) compute(t *testing.T) (*gophercloud.ServiceClient, *gophercloud.ServiceClient) {
	t.Helper()
	get := func(k string) string {
		for _, kv := range c.osEnv {
			if key, v, _ := strings.Cut(kv, "="); key == k {
				return v
			}
		}
		return ""
	}
	cr, err := cloud.CredentialsFromEnv(get)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	pc, err := openstack.AuthenticatedClient(ctx, cr.Auth)
	if err != nil {
		t.Fatal(err)
	}
	nova, err := openstack.NewComputeV2(pc, cr.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	nova.Microversion = "2.74"
	glance, err := openstack.NewImageV2(pc, cr.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	return nova, glance
}

// bootOn boots n servers on host (an admin's forced placement, which
// bypasses the scheduler's filters) and waits until they are ACTIVE.
func (c *miniCloud) bootOn(t *testing.T, name, host string, n int) []string {
	t.Helper()
	ctx := context.Background()
	nova, glance := c.compute(t)
	var imageID string
	err := images.List(glance, images.ListOpts{Name: "tiny"}).EachPage(ctx, func(_ context.Context, p pagination.Page) (bool, error) {
		list, err := images.ExtractImages(p)
		if len(list) > 0 {
			imageID = list[0].ID
		}
		return false, err
	})
	if err != nil || imageID == "" {
		t.Fatalf("image tiny: %v", err)
	}
	if n > 10 {
		c.unlimitedQuota(t)
	}
	_, err = servers.Create(ctx, nova, servers.CreateOpts{
		Name: name, FlavorRef: "1", ImageRef: imageID, Networks: "none",
		AvailabilityZone: "nova:" + host, Min: n, Max: n,
	}, nil).Extract()
	if err != nil {
		t.Fatalf("boot %s on %s: %v", name, host, err)
	}
	var ids []string
	eventually(t, time.Duration(30+3*n)*time.Second, fmt.Sprintf("%d servers %s ACTIVE", n, name), func() bool {
		ids = ids[:0]
		active := 0
		err := servers.List(nova, servers.ListOpts{Name: "^" + name}).EachPage(ctx, func(_ context.Context, p pagination.Page) (bool, error) {
			list, err := servers.ExtractServers(p)
			for _, s := range list {
				if s.Status == "ERROR" {
					t.Fatalf("server %s: ERROR: %s", s.ID, s.Fault.Message)
				}
				if s.Status == "ACTIVE" && s.Host == host {
					active++
				}
				ids = append(ids, s.ID)
			}
			return true, err
		})
		if err != nil {
			t.Fatal(err)
		}
		return active == n && len(ids) == n
	})
	t.Cleanup(func() {
		for _, id := range ids {
			servers.Delete(context.Background(), nova, id)
		}
	})
	return ids
}

// unlimitedQuota lifts the admin project's instance, core and RAM quotas.
func (c *miniCloud) unlimitedQuota(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	nova, _ := c.compute(t)
	pc := nova.ProviderClient
	ident, err := openstack.NewIdentityV3(pc, gophercloud.EndpointOpts{Region: "RegionOne"})
	if err != nil {
		t.Fatal(err)
	}
	var projectID string
	err = projects.List(ident, projects.ListOpts{Name: "admin"}).EachPage(ctx, func(_ context.Context, p pagination.Page) (bool, error) {
		list, err := projects.ExtractProjects(p)
		if len(list) > 0 {
			projectID = list[0].ID
		}
		return false, err
	})
	if err != nil || projectID == "" {
		t.Fatalf("admin project: %v", err)
	}
	unlimited := -1
	if _, err := quotasets.Update(ctx, nova, projectID, quotasets.UpdateOpts{Instances: &unlimited, Cores: &unlimited, RAM: &unlimited}).Extract(); err != nil {
		t.Fatalf("quota: %v", err)
	}
}

func (c *miniCloud) hostOf(t *testing.T, id string) string {
	t.Helper()
	nova, _ := c.compute(t)
	s, err := servers.Get(context.Background(), nova, id).Extract()
	if err != nil {
		t.Fatal(err)
	}
	return s.Host
}

// scrape reads one gauge from an agent's /metrics, parsed with the
// Prometheus text parser.
func scrape(t *testing.T, addr, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	fam, ok := fams[name]
	if !ok {
		return 0, false
	}
next:
	for _, m := range fam.GetMetric() {
		for _, lp := range m.GetLabel() {
			if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
				continue next
			}
		}
		return m.GetGauge().GetValue(), true
	}
	return 0, false
}

func TestMiniCloud(t *testing.T) {
	c := startCloud(t)
	agent, ctl := binary(t, "hostagent"), binary(t, "ledgerctl")
	f := c.filterd
	ledgerEnv := append(append([]string{}, c.osEnv...), "LEDGERFENCE_LEDGER="+f.url, "LEDGERFENCE_TOKEN="+f.token)
	conf := func(i int) string { return filepath.Join(c.rig, "etc", "nova", fmt.Sprintf("compute%d.conf", i)) }
	facts := map[int][]string{
		1: {"--country", "JP", "--organization", "CompanyA"},
		2: {"--country", "US", "--organization", "CompanyB"},
		3: {"--country", "DE", "--organization", "CompanyA"},
	}

	t.Run("name confirmed from nova.conf and registered", func(t *testing.T) {
		for i := 1; i <= 3; i++ {
			args := append([]string{"--ledger", f.url, "--token", f.token, "--nova-conf", filepath.Join(c.rig, "etc", "nova", "nova.conf"), "--nova-conf", conf(i), "--once"}, facts[i]...)
			code, _, errs := run(t, c.osEnv, agent, args...)
			if code != 0 {
				t.Fatalf("fake-compute-%d: exit %d:\n%s", i, code, errs)
			}
			for _, s := range []string{"host name confirmed", fmt.Sprintf(`"host":"fake-compute-%d"`, i), "nova.conf " + conf(i)} {
				if !strings.Contains(errs, s) {
					t.Fatalf("fake-compute-%d: output lacks %q:\n%s", i, s, errs)
				}
			}
			if _, ok := getHost(t, f, fmt.Sprintf("fake-compute-%d", i)); !ok {
				t.Fatalf("fake-compute-%d not registered", i)
			}
		}
	})
	t.Run("a name Nova does not know is warned about", func(t *testing.T) {
		code, _, errs := run(t, c.osEnv, agent, "--ledger", f.url, "--token", f.token, "--host", "not-a-compute", "--country", "JP", "--organization", "CompanyA", "--once")
		if code != 0 || !strings.Contains(errs, "Nova has no nova-compute service with this host name") {
			t.Fatalf("exit %d:\n%s", code, errs)
		}
	})

	ids := c.bootOn(t, "lf-swept", "fake-compute-3", 1)
	vm := ids[0]
	if code, _, errs := run(t, ledgerEnv, ctl, "regulation", "set", "vm:"+vm, "--countries", "JP,GB", "--organizations", "CompanyA,CompanyB"); code != 0 {
		t.Fatalf("regulation set: exit %d: %s", code, errs)
	}

	// A real NATS server, in-process, for the violation events.
	ns, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	t.Cleanup(ns.Shutdown)
	if !ns.ReadyForConnections(30 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	var vmu sync.Mutex
	var violations []notify.Violation
	if _, err := notify.Subscribe(nc, func(v notify.Violation) {
		vmu.Lock()
		violations = append(violations, v)
		vmu.Unlock()
	}, nil); err != nil {
		t.Fatal(err)
	}

	metrics := freeAddr(t)
	daemon := start(t, c.osEnv, agent, append([]string{"--ledger", f.url, "--token", f.token, "--nova-conf", conf(3),
		"--interval", "1s", "--metrics-listen", metrics, "--nats", ns.ClientURL()}, facts[3]...)...)

	t.Run("the sweep finds the VM on a non-compliant host", func(t *testing.T) {
		eventually(t, 2*time.Minute, "violation gauge", func() bool {
			v, ok := scrape(t, metrics, "ledgerfence_hostagent_violations", map[string]string{"reason": "country_not_allowed"})
			return ok && v == 1
		})
		daemon.waitOutput(t, time.Minute, vm)
		if !strings.Contains(daemon.out.String(), "violation: VM is on a host its regulation forbids") {
			t.Fatalf("no violation log line:\n%s", daemon.out.String())
		}
		eventually(t, time.Minute, "a violation event on "+notify.SubjectViolation, func() bool {
			vmu.Lock()
			defer vmu.Unlock()
			for _, v := range violations {
				if v.Instance == vm && v.Host == "fake-compute-3" && v.Reason == "country_not_allowed" && v.Regulation == filter.VMSubject(vm) {
					return true
				}
			}
			return false
		})
	})

	t.Run("migrate refuses a non-compliant target", func(t *testing.T) {
		code, _, errs := run(t, ledgerEnv, ctl, "migrate", "--vm", vm, "--target", "fake-compute-2", "--live", "--wait")
		if code != 3 || !strings.Contains(errs, "country_not_allowed") || !strings.Contains(errs, "no migration was asked for") {
			t.Fatalf("exit %d:\n%s", code, errs)
		}
		if h := c.hostOf(t, vm); h != "fake-compute-3" {
			t.Fatalf("server moved to %s", h)
		}
	})

	t.Run("migrate completes a compliant live migration", func(t *testing.T) {
		code, out, errs := run(t, ledgerEnv, ctl, "migrate", "--vm", vm, "--target", "fake-compute-1", "--live", "--wait")
		if code != 0 || !strings.Contains(out, "fake-compute-3 -> fake-compute-1") {
			t.Fatalf("exit %d:\n%s\n%s", code, out, errs)
		}
		if !strings.Contains(errs, "migration=") {
			t.Fatalf("no progress lines:\n%s", errs)
		}
		t.Logf("ledgerctl migrate: %s", strings.TrimSpace(out))
		if h := c.hostOf(t, vm); h != "fake-compute-1" {
			t.Fatalf("server on %s after the migration", h)
		}
		eventually(t, 2*time.Minute, "violation gauge back to 0", func() bool {
			v, ok := scrape(t, metrics, "ledgerfence_hostagent_violations", map[string]string{"reason": "country_not_allowed"})
			return ok && v == 0
		})
	})

	t.Run("without a target the filter leaves Nova no compliant host", func(t *testing.T) {
		// From fake-compute-1 (JP) the others are US and DE: none compliant.
		code, _, errs := run(t, ledgerEnv, ctl, "migrate", "--vm", vm, "--live", "--wait")
		if code != 3 || !strings.Contains(errs, "no valid host") {
			t.Fatalf("exit %d, want 3 (Nova's scheduler found no valid host):\n%s", code, errs)
		}
		if h := c.hostOf(t, vm); h != "fake-compute-1" {
			t.Fatalf("server moved to %s", h)
		}
	})

	if n, _ := strconv.Atoi(os.Getenv("LEDGERFENCE_SWEEP_SERVERS")); n > 0 {
		t.Run("sweep time", func(t *testing.T) {
			c.bootOn(t, "lf-many", "fake-compute-3", n)
			mark := len(daemon.out.String())
			eventually(t, 2*time.Minute, "a sweep of the servers", func() bool {
				return strings.Contains(daemon.out.String()[mark:], fmt.Sprintf(`"servers":%d`, n))
			})
			for _, line := range strings.Split(daemon.out.String()[mark:], "\n") {
				if strings.Contains(line, "compliance sweep done") && strings.Contains(line, fmt.Sprintf(`"servers":%d`, n)) {
					t.Logf("sweep of %d servers on the mini cloud: %s", n, line)
					break
				}
			}
		})
	}
}
