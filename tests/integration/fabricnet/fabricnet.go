// Package fabricnet starts and stops the native Fabric network of
// tests/integration/fabric/network for integration tests, tells them where
// its parts are (network.env) and enrols extra identities in it.
//
// Start brings a network up in a fresh state folder and Stop takes it down;
// Use takes a network that is already running and leaves it running. The
// package reads no settings of its own: callers pass what their environment
// says (LEDGERFENCE_FABRIC_DIR to Use, LEDGERFENCE_FABRIC_PORT_BASE as
// Options.PortBase). The harness's scripts get the process's environment
// with the state folder, port base and number of organisations set.
package fabricnet

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
)

var (
	// ErrNoHarness is returned by Start when the harness's up.sh is not in
	// the tree.
	ErrNoHarness = errors.New("fabricnet: the network harness is missing")
	// ErrNotBuilt is returned by Start when up.sh found no Fabric commands
	// (tools/fabric/build.sh has not run or could not build them).
	ErrNotBuilt = errors.New("fabricnet: Fabric's commands are not built")
)

// envPrefix starts every key of network.env.
const envPrefix = "LEDGERFENCE_FABRIC_"

// portSpan is how many ports from a base the harness takes with three
// organisations (README.md); two take fewer.
const portSpan = 72

// DefaultOrgs is how many peer organisations a network has unless
// Options.Orgs says otherwise.
const DefaultOrgs = 2

// Options say how Start brings a network up.
type Options struct {
	// Hosts name the Org1 hosts that get a hostagent identity (up.sh's
	// arguments); none means up.sh's default set.
	Hosts []string
	// Orgs is the number of peer organisations, 2 or 3 (up.sh's
	// LEDGERFENCE_FABRIC_ORGS); 0 means DefaultOrgs, whatever the
	// environment says. With three, the chaincode's endorsement policy is
	// two of the three, and Org3MSP has identities of its own (README.md).
	Orgs int
	// PortBase is the first port of the range tried first; 0 searches for
	// a free range. A retry always searches.
	PortBase int
	// SearchFrom is where the search for a free range begins; 0 means 17250
	// (above the harness's default range and smoke.sh's).
	SearchFrom int
	// Log receives a line when the network is up and when up.sh is retried;
	// nil discards them.
	Log io.Writer
}

// Network is a running network and what its network.env says about it.
type Network struct {
	dir     string
	env     map[string]string
	harness string
	owned   bool

	enrollMu sync.Mutex // enroll.sh runs one at a time
}

// Start runs up.sh in a new state folder on a free range of ports. A range
// found free can be taken by another process before the network binds it,
// so when up.sh fails Start tries once more on the next free range. Its
// error wraps ErrNoHarness or ErrNotBuilt when those are the cause, and
// otherwise holds the tail of up.sh's output and the last lines of every
// component's log.
func Start(opts Options) (*Network, error) {
	harness := harnessDir()
	if _, err := os.Stat(filepath.Join(harness, "up.sh")); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoHarness, err)
	}
	if opts.Orgs == 0 {
		opts.Orgs = DefaultOrgs
	}
	if opts.Orgs != 2 && opts.Orgs != 3 {
		return nil, fmt.Errorf("fabricnet: a network has 2 or 3 organisations, not %d", opts.Orgs)
	}
	from := opts.SearchFrom
	if from == 0 {
		from = 17250
	}
	base := opts.PortBase
	for attempt := 1; ; attempt++ {
		if base == 0 {
			var err error
			if base, err = freePortBase(from); err != nil {
				return nil, err
			}
		}
		n, err := start(harness, opts, base)
		if err == nil {
			return n, nil
		}
		if errors.Is(err, ErrNotBuilt) {
			return nil, err
		}
		if attempt == 2 {
			return nil, fmt.Errorf("up.sh failed twice; the last time: %w", err)
		}
		logf(opts.Log, "fabricnet: %v\ntrying another port range", err)
		from, base = max(from, base+100), 0
	}
}

// start is one attempt of Start on the range from base.
func start(harness string, opts Options, base int) (*Network, error) {
	dir, err := os.MkdirTemp("", "ledgerfence-fabric-it-")
	if err != nil {
		return nil, err
	}
	os.Remove(dir) // up.sh makes it; an existing folder would be taken down first
	n := &Network{dir: dir, harness: harness, owned: true}
	cmd := exec.Command(filepath.Join(harness, "up.sh"), opts.Hosts...)
	cmd.Env = append(n.environ(), envPrefix+"PORT_BASE="+strconv.Itoa(base), envPrefix+"ORGS="+strconv.Itoa(opts.Orgs))
	began := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		upTail := LastLines(string(out), 30)
		msg := upTail + n.logTails(8)
		if serr := n.Stop(); serr != nil {
			msg += "\n" + serr.Error()
		}
		if strings.Contains(upTail, "build.sh") || strings.Contains(upTail, "fabric commands") {
			return nil, fmt.Errorf("%w: %s", ErrNotBuilt, LastLines(upTail, 3))
		}
		return nil, fmt.Errorf("up.sh on ports %d-%d: %w\n%s", base, base+portSpan-1, err, msg)
	}
	if n.env, err = ReadEnv(filepath.Join(dir, "network.env")); err != nil {
		n.Stop()
		return nil, fmt.Errorf("network.env: %w", err)
	}
	logf(opts.Log, "fabricnet: network up in %s in %s", time.Since(began).Round(time.Millisecond), dir)
	return n, nil
}

// Use is the network already running in the state folder dir, as its
// network.env describes it. Stop leaves it running.
func Use(dir string) (*Network, error) {
	env, err := ReadEnv(filepath.Join(dir, "network.env"))
	if err != nil {
		return nil, err
	}
	return &Network{dir: dir, env: env, harness: harnessDir()}, nil
}

// Stop stops every process of a network Start started (down.sh) and removes
// its state folder; it does nothing to a network given to Use. The error
// holds down.sh's output.
func (n *Network) Stop() error {
	if !n.owned {
		return nil
	}
	down := exec.Command(filepath.Join(n.harness, "down.sh"))
	down.Env = n.environ()
	out, err := down.CombinedOutput()
	os.RemoveAll(n.dir)
	if err != nil {
		return fmt.Errorf("down.sh: %w\n%s", err, LastLines(string(out), 10))
	}
	return nil
}

// Dir is the network's state folder.
func (n *Network) Dir() string { return n.dir }

// Env is network.env: every key with its LEDGERFENCE_FABRIC_ prefix.
func (n *Network) Env() map[string]string { return maps.Clone(n.env) }

// Get is network.env's value of LEDGERFENCE_FABRIC_<key>, "" when unset.
func (n *Network) Get(key string) string { return n.env[envPrefix+key] }

// Org is one peer organisation of the network: its MSP, its peer and its
// admin, as network.env names them.
type Org struct {
	Num            int    // 1, 2 or 3: the N of network.env's ORGN_ keys, peerN and caN
	MSPID          string // e.g. Org1MSP
	PeerAddress    string // host:port of its peer (and the peer's gateway)
	PeerServerName string // the name in the peer's TLS certificate
	PeerTLSCA      string // the root of the peer's TLS certificate (PEM)
	Admin          string // folder of its admin identity (msp/ inside)
}

// Orgs are the network's peer organisations, Org1MSP first.
func (n *Network) Orgs() []Org {
	var orgs []Org
	for i := 1; n.Get(fmt.Sprintf("ORG%d_MSPID", i)) != ""; i++ {
		k := fmt.Sprintf("ORG%d_", i)
		orgs = append(orgs, Org{
			Num:            i,
			MSPID:          n.Get(k + "MSPID"),
			PeerAddress:    n.Get(k + "PEER_ADDRESS"),
			PeerServerName: n.Get(k + "PEER_SERVER_NAME"),
			PeerTLSCA:      n.Get(k + "PEER_TLS_CA"),
			Admin:          n.Get(k + "ADMIN"),
		})
	}
	return orgs
}

// OrgOf is the organisation of identity name (its mspid file).
func (n *Network) OrgOf(name string) (Org, error) {
	b, err := os.ReadFile(filepath.Join(n.Identity(name).Dir, "mspid"))
	if err != nil {
		return Org{}, err
	}
	msp := strings.TrimSpace(string(b))
	for _, o := range n.Orgs() {
		if o.MSPID == msp {
			return o, nil
		}
	}
	return Org{}, fmt.Errorf("fabricnet: identity %s is of %s, not an organisation of the network", name, msp)
}

// PeerCommand is Fabric's peer CLI with args, run as org's admin against
// org's peer over TLS, as deploy.sh runs it for the chaincode's lifecycle
// (e.g. "lifecycle", "chaincode", "querycommitted", ...).
func (n *Network) PeerCommand(org Org, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(n.Get("BIN"), "peer"), args...)
	cmd.Env = append(os.Environ(),
		"FABRIC_CFG_PATH="+n.Get("CFG"),
		"FABRIC_LOGGING_SPEC=warning",
		"CORE_PEER_TLS_ENABLED=true",
		"CORE_PEER_TLS_ROOTCERT_FILE="+org.PeerTLSCA,
		"CORE_PEER_ADDRESS="+org.PeerAddress,
		"CORE_PEER_LOCALMSPID="+org.MSPID,
		"CORE_PEER_MSPCONFIGPATH="+filepath.Join(org.Admin, "msp"),
	)
	return cmd
}

// Identity is where the files of one of the network's identities are.
type Identity struct {
	Dir  string // the identity's folder
	Cert string // enrolment certificate (PEM)
	Key  string // its private key (PKCS#8 PEM)
	CA   string // the organisation's CA (PEM)
}

// Identity is where the files of identity name are; they exist once up.sh
// or Enroll made it.
func (n *Network) Identity(name string) Identity {
	d := filepath.Join(n.Get("IDENTITIES"), name)
	return Identity{Dir: d, Cert: filepath.Join(d, "cert.pem"), Key: filepath.Join(d, "key.pem"), CA: filepath.Join(d, "ca.pem")}
}

// EnrollOption changes how Enroll registers an identity.
type EnrollOption func(*enrollConfig)

type enrollConfig struct{ noECert bool }

// WithoutECert registers the attributes without putting them in the
// enrolment certificate (enroll.sh --no-ecert).
func WithoutECert() EnrollOption {
	return func(c *enrollConfig) { c.noECert = true }
}

// Enroll registers and enrols identity name through org's CA ("org1",
// "org2", "org3") with role ("none" for no role) and, when not "", host. It does
// nothing when name already has a certificate, so a long-lived network
// takes it once. The CA may drop a connection while it is busy, so
// enroll.sh is tried up to three times; the error holds its output's tail.
func (n *Network) Enroll(org, name, role, host string, opts ...EnrollOption) error {
	n.enrollMu.Lock()
	defer n.enrollMu.Unlock()
	if _, err := os.Stat(n.Identity(name).Cert); err == nil {
		return nil
	}
	var c enrollConfig
	for _, o := range opts {
		o(&c)
	}
	var args []string
	if c.noECert {
		args = append(args, "--no-ecert")
	}
	args = append(args, org, name, role)
	if host != "" {
		args = append(args, host)
	}
	var out []byte
	var err error
	for range 3 {
		cmd := exec.Command(filepath.Join(n.harness, "enroll.sh"), args...)
		cmd.Env = n.environ()
		if out, err = cmd.CombinedOutput(); err == nil {
			return nil
		}
	}
	return fmt.Errorf("enroll.sh %v: %w\n%s", args, err, LastLines(string(out), 10))
}

// environ is the environment of the harness's scripts for this network.
func (n *Network) environ() []string {
	return append(os.Environ(), envPrefix+"DIR="+n.dir)
}

// logTails is the last lines of every component's log, each under its name.
func (n *Network) logTails(lines int) string {
	logs, _ := filepath.Glob(filepath.Join(n.dir, "logs", "*.log"))
	var b strings.Builder
	for _, l := range logs {
		if data, err := os.ReadFile(l); err == nil {
			fmt.Fprintf(&b, "\n--- %s\n%s", filepath.Base(l), LastLines(string(data), lines))
		}
	}
	return b.String()
}

// ReadEnv reads a file of KEY=VALUE lines without quoting, such as
// network.env; blank lines and # comments are passed over.
func ReadEnv(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if k, v, ok := strings.Cut(line, "="); ok {
			env[k] = v
		}
	}
	return env, sc.Err()
}

// freePortBase is the first base from from on, in steps of 100, whose
// ports are all free now.
func freePortBase(from int) (int, error) {
	for base := from; base+portSpan < 65000; base += 100 {
		free := true
		for p := base; p < base+portSpan && free; p++ {
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
	return 0, fmt.Errorf("fabricnet: no free range of %d ports from %d", portSpan, from)
}

// harnessDir is the harness's folder in this tree.
func harnessDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "fabric", "network")
}

// LastLines is the last n lines of s: how much of a process's output the
// package's errors hold, and tests show of their own processes.
func LastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func logf(w io.Writer, format string, args ...any) {
	if w != nil {
		fmt.Fprintf(w, format+"\n", args...)
	}
}
