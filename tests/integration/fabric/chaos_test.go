package fabric_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ledgerfence/ledgerfence/pkg/api"
	"github.com/ledgerfence/ledgerfence/pkg/filter"
)

// load posts webhook requests for some cached VMs from several goroutines
// and checks every answer against what each VM may get.
type load struct {
	f      *filterd
	stop   chan struct{}
	wg     sync.WaitGroup
	phase  atomic.Int32 // 0: every answer must be exactly want; 1: a subset of it
	total  atomic.Int64
	mu     sync.Mutex
	faults []string
}

// loadVM is a VM under load: its request, the exact answer it must get
// while nothing changes, and hosts it must never get.
type loadVM struct {
	name  string
	body  []byte
	want  []string
	never []string
}

func startLoad(f *filterd, workers int, vms []loadVM) *load {
	l := &load{f: f, stop: make(chan struct{})}
	for w := range workers {
		l.wg.Go(func() {
			for i := w; ; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				vm := vms[i%len(vms)]
				a, err := f.webhook(context.Background(), vm.body)
				phase := l.phase.Load() // read after the answer: phase 0 means nothing had changed yet
				l.total.Add(1)
				switch {
				case err != nil:
					l.fault("%s: %v", vm.name, err)
				case slices.ContainsFunc(a.hosts, func(h string) bool { return slices.Contains(vm.never, h) }):
					l.fault("%s: non-compliant host in %v (decision %s)", vm.name, a.hosts, a.decision)
				case phase == 0 && !slices.Equal(a.hosts, vm.want):
					l.fault("%s: %v, want %v from the cache (decision %s)", vm.name, a.hosts, vm.want, a.decision)
				case !subset(a.hosts, vm.want):
					l.fault("%s: %v is not within %v (decision %s)", vm.name, a.hosts, vm.want, a.decision)
				}
				time.Sleep(2 * time.Millisecond) // pace the load on a shared machine
			}
		})
	}
	return l
}

func subset(a, b []string) bool {
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}

func (l *load) fault(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.faults) < 20 {
		l.faults = append(l.faults, fmt.Sprintf(format, args...))
	}
}

func (l *load) end(t *testing.T) {
	t.Helper()
	select {
	case <-l.stop:
		return
	default:
	}
	close(l.stop)
	l.wg.Wait()
	for _, f := range l.faults {
		t.Error(f)
	}
	t.Logf("%d webhook answers under load, %d faults", l.total.Load(), len(l.faults))
}

// failsClosed asks for a VM that filterd has not seen: with the ledger out
// of reach it must get no host, every candidate denied as ledger_unavailable.
func failsClosed(t *testing.T, f *filterd, uuid, what string) {
	t.Helper()
	a := f.mustWebhook(t, novaBody(uuid, "", table4Names))
	if a.body != `{"hosts":[]}`+"\n" {
		t.Errorf("%s: %q, want {\"hosts\":[]}", what, a.body)
	}
	d := f.decision(t, a.decision)
	for h, r := range reasons(d) {
		if r != filter.LedgerUnavailable {
			t.Errorf("%s: %s %q, want %s", what, h, r, filter.LedgerUnavailable)
		}
	}
	if d.Outcome != api.OutcomeFailClosed || len(d.Verdicts) != len(table4Names) {
		t.Errorf("%s: decision %+v", what, d)
	}
}

// served polls until a VM that filterd has not seen gets want, and returns
// how long that took.
func served(t *testing.T, f *filterd, uuid string, want []string, what string) time.Duration {
	t.Helper()
	start := time.Now()
	body := novaBody(uuid, "", table4Names)
	for deadline := start.Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
		a := f.mustWebhook(t, body)
		if slices.Equal(a.hosts, want) {
			return time.Since(start)
		}
		if len(a.hosts) != 0 {
			t.Fatalf("%s: %v, want %v or nothing", what, a.hosts, want)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still %v a minute after the restart", what, a.hosts)
		}
	}
}

// TestFilterdThroughPeerAndChaincodeRestarts kills and restarts the peer
// that filterd reads from, and the chaincode server, while the webhook is
// under load for two cached VMs. No answer may ever hold a host that breaks
// a VM's regulation; cached VMs keep their exact answers; a VM filterd has
// not seen gets no host while the ledger is away; afterwards new VMs are
// served and ledger changes reach the webhook again.
func TestFilterdThroughPeerAndChaincodeRestarts(t *testing.T) {
	if testing.Short() {
		t.Skip("kills network processes")
	}
	vm1, vm2, vm3 := vmSubject(110), vmSubject(111), vmSubject(112)
	// VM3's regulation is on the ledger before filterd starts, and not in
	// the last block then (filterd's event stream starts at that block), so
	// filterd learns it only when asked, which is first while the peer is down.
	putRegulation(t, vm3, vm1Regulation)
	seedTable4(t, vm1)
	putRegulation(t, vm2, vm1Regulation)
	t.Cleanup(func() {
		agent := connect(t, "hm2agent")
		retry(t, "restore hm2", func(c context.Context) error {
			_, _, err := agent.PutHost(c, table4Hosts[1])
			return err
		})
	})
	t.Cleanup(func() { ctl(t, "start", "peer1", "cc") }) // whatever happened below (start is a no-op for a running part)
	f := startFilterd(t, "org1-user")
	putRegulation(t, vm1, vm1Tightened)
	enforced(t, f, vm1.ID(), false)
	if a := f.mustWebhook(t, novaBody(vm2.ID(), "", table4Names)); !slices.Equal(a.hosts, []string{"hm1", "hm2", "hm5"}) {
		t.Fatalf("VM2: %v", a.hosts)
	}

	l := startLoad(f, 4, []loadVM{
		{name: "VM1 (JP)", body: novaBody(vm1.ID(), "", table4Names), want: []string{"hm1", "hm2"}, never: []string{"hm3", "hm4", "hm5"}},
		{name: "VM2 (JP, GB)", body: novaBody(vm2.ID(), "", table4Names), want: []string{"hm1", "hm2", "hm5"}, never: []string{"hm3", "hm4"}},
	})
	defer l.end(t)

	// The peer dies.
	ctl(t, "kill", "peer1")
	failsClosed(t, f, newUUID(113), "an unknown VM, peer down")
	failsClosed(t, f, vm3.ID(), "a regulated VM not in the cache, peer down")
	if up, ok := f.metric(t, "ledgerfence_ledger_up", nil); !ok || up != 0 {
		t.Errorf("ledgerfence_ledger_up with the peer down: %v (found %v)", up, ok)
	}
	ctl(t, "start", "peer1")
	t.Logf("peer1 killed and started: a new VM served %s after the start returned",
		served(t, f, newUUID(114), table4Names, "an unknown VM, peer back").Round(time.Millisecond))
	served(t, f, vm3.ID(), []string{"hm1", "hm2", "hm5"}, "VM3, peer back")

	// The chaincode dies.
	ctl(t, "kill", "cc")
	failsClosed(t, f, newUUID(115), "an unknown VM, chaincode down")
	ctl(t, "start", "cc")
	t.Logf("chaincode killed and started: a new VM served %s after the start returned",
		served(t, f, newUUID(116), table4Names, "an unknown VM, chaincode back").Round(time.Millisecond))

	// The peer restarts (SIGTERM, start).
	ctl(t, "restart", "peer1")
	served(t, f, newUUID(117), table4Names, "an unknown VM, peer restarted")

	// Events flow again: hm2 moves to DE, and both VMs lose it.
	l.phase.Store(1)
	agent := connect(t, "hm2agent")
	var committed time.Time
	retry(t, "move hm2 to DE", func(c context.Context) error {
		_, _, err := agent.PutHost(c, filter.Host{Name: "hm2", Country: "DE", Organizations: []string{"CompanyA"}})
		committed = time.Now()
		return err
	})
	for _, v := range []struct {
		uuid string
		want []string
	}{{vm1.ID(), []string{"hm1"}}, {vm2.ID(), []string{"hm1", "hm5"}}} {
		body := novaBody(v.uuid, "", table4Names)
		for deadline := time.Now().Add(time.Minute); ; time.Sleep(5 * time.Millisecond) {
			a := f.mustWebhook(t, body)
			if slices.Equal(a.hosts, v.want) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %v a minute after hm2 moved, want %v", v.uuid, a.hosts, v.want)
			}
		}
	}
	t.Logf("after the restarts, a host's move was enforced %s after its commit", time.Since(committed).Round(time.Millisecond))
	l.end(t)

	if n, ok := f.metric(t, "ledgerfence_event_stream_reconnects_total", nil); !ok || n < 1 {
		t.Errorf("event stream reconnects: %v (found %v)", n, ok)
	}
	if up, ok := f.metric(t, "ledgerfence_ledger_up", nil); !ok || up != 1 {
		t.Errorf("ledgerfence_ledger_up at the end: %v (found %v)", up, ok)
	}
}
