// Package rabbittest starts a private RabbitMQ node for a test run: the
// Debian package's rabbitmq-server, never the system service, with its
// state in a temporary directory, its own epmd, free ports, a unique node
// name and an Erlang cookie of its own. Stop (or the test's cleanup) stops
// it and its epmd.
//
// Tests call Require first: it skips the test when rabbitmq-server is not
// installed, unless LEDGERFENCE_REQUIRE_INTEGRATION=1, when it fails it.
package rabbittest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Server is the node's start script in the Debian package; it runs the node
// as the calling user (the /usr/sbin wrapper would switch to rabbitmq).
const Server = "/usr/lib/rabbitmq/bin/rabbitmq-server"

// StartTimeout bounds a node's boot, up to its AMQP listener answering.
const StartTimeout = 120 * time.Second

// Installed reports whether rabbitmq-server and epmd are installed, and if
// not, what is missing.
func Installed() (bool, string) {
	if _, err := os.Stat(Server); err != nil {
		return false, Server + " not found (Debian package rabbitmq-server)"
	}
	if _, err := exec.LookPath("epmd"); err != nil {
		return false, "epmd not found (Debian package erlang-base)"
	}
	return true, ""
}

// Require skips t when RabbitMQ is not installed, or fails it when
// LEDGERFENCE_REQUIRE_INTEGRATION=1.
func Require(t testing.TB) {
	t.Helper()
	if ok, why := Installed(); !ok {
		if os.Getenv("LEDGERFENCE_REQUIRE_INTEGRATION") == "1" {
			t.Fatalf("required component absent: %s", why)
		}
		t.Skipf("skipped: %s (set LEDGERFENCE_REQUIRE_INTEGRATION=1 to fail instead)", why)
	}
}

// Node is a running private RabbitMQ node.
type Node struct {
	// URL is the node's AMQP URL, with the user and password of its
	// default user.
	URL string
	// User and Password are the default user's; the password is random.
	User, Password string
	// Name is the Erlang node name, unique per node.
	Name string
	// Port is the AMQP port, on 127.0.0.1.
	Port int
	// Dir holds the node's state and logs (mnesia/, log/).
	Dir string

	env  []string
	mu   sync.Mutex
	node *exec.Cmd
	done chan struct{}
	epmd *exec.Cmd
}

// Start starts a node for t and stops it when t ends; it fails t if the
// node does not start.
func Start(t testing.TB) *Node {
	t.Helper()
	Require(t)
	n, err := StartNode(t.TempDir())
	if err != nil {
		t.Fatalf("rabbittest: %v", err)
	}
	t.Cleanup(func() {
		if err := n.Stop(); err != nil {
			t.Errorf("rabbittest: %v", err)
		}
	})
	return n
}

// StartNode starts a node whose state lives in dir (which it does not
// remove); the caller calls Stop.
func StartNode(dir string) (*Node, error) {
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	n := &Node{
		User: "ledgerfence", Password: randomHex(12),
		Name: "lftest" + randomHex(4) + "@localhost",
		Port: ports[0], Dir: dir,
	}
	n.URL = (&url.URL{Scheme: "amqp", User: url.UserPassword(n.User, n.Password),
		Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(n.Port)), Path: "/"}).String()
	home := filepath.Join(dir, "home")
	for _, d := range []string{home, filepath.Join(dir, "mnesia"), filepath.Join(dir, "log")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	files := map[string]string{
		filepath.Join(home, ".erlang.cookie"):   randomHex(20),
		filepath.Join(dir, "enabled_plugins"):   "[].\n",
		filepath.Join(dir, "rabbitmq-env.conf"): "",
		filepath.Join(dir, "rabbitmq.conf"): strings.Join([]string{
			"default_user = " + n.User,
			"default_pass = " + n.Password,
			"loopback_users = none",
			"disk_free_limit.absolute = 10MB",
			"log.console = false",
			"log.file.level = info",
			"",
		}, "\n"),
	}
	for p, s := range files {
		if err := os.WriteFile(p, []byte(s), 0o400); err != nil {
			return nil, err
		}
	}
	epmdPort := strconv.Itoa(ports[2])
	n.env = append(os.Environ(),
		"HOME="+home,
		"ERL_EPMD_PORT="+epmdPort,
		"RABBITMQ_NODENAME="+n.Name,
		"RABBITMQ_NODE_IP_ADDRESS=127.0.0.1",
		"RABBITMQ_NODE_PORT="+strconv.Itoa(n.Port),
		"RABBITMQ_DIST_PORT="+strconv.Itoa(ports[1]),
		"RABBITMQ_MNESIA_BASE="+filepath.Join(dir, "mnesia"),
		"RABBITMQ_LOG_BASE="+filepath.Join(dir, "log"),
		"RABBITMQ_ENABLED_PLUGINS_FILE="+filepath.Join(dir, "enabled_plugins"),
		"RABBITMQ_CONFIG_FILE="+filepath.Join(dir, "rabbitmq"),
		"RABBITMQ_ADVANCED_CONFIG_FILE="+filepath.Join(dir, "advanced.config"),
		"RABBITMQ_CONF_ENV_FILE="+filepath.Join(dir, "rabbitmq-env.conf"),
	)
	n.epmd = exec.Command("epmd", "-address", "127.0.0.1", "-port", epmdPort)
	n.epmd.Env = n.env
	n.epmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := n.epmd.Start(); err != nil {
		return nil, fmt.Errorf("epmd: %w", err)
	}
	if err := waitListen("127.0.0.1:"+epmdPort, 10*time.Second); err != nil {
		n.killEpmd()
		return nil, fmt.Errorf("epmd: %w", err)
	}
	if err := n.Start(); err != nil {
		n.killEpmd()
		return nil, err
	}
	return n, nil
}

// Start starts the node again after Kill or StopNode, with the same state,
// name and ports; it returns once the node accepts AMQP connections.
func (n *Node) Start() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.node != nil {
		return errors.New("node already running")
	}
	out, err := os.OpenFile(filepath.Join(n.Dir, "log", "stdout.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(Server)
	cmd.Env = n.env
	cmd.Dir = n.Dir
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		out.Close()
		return fmt.Errorf("rabbitmq-server: %w", err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		out.Close()
		close(done)
	}()
	n.node, n.done = cmd, done
	deadline := time.Now().Add(StartTimeout)
	for {
		c, err := amqp.Dial(n.URL)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-done:
			n.node = nil
			return fmt.Errorf("rabbitmq-server exited while starting; see %s", filepath.Join(n.Dir, "log"))
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			n.stopLocked(0)
			return fmt.Errorf("rabbitmq-server did not accept AMQP connections within %v; see %s", StartTimeout, filepath.Join(n.Dir, "log"))
		}
	}
}

// StopNode stops the node (SIGTERM to its process group, SIGKILL after
// grace) and keeps its state and epmd, so that Start starts it again.
func (n *Node) StopNode(grace time.Duration) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.stopLocked(grace)
}

func (n *Node) stopLocked(grace time.Duration) {
	if n.node == nil {
		return
	}
	pgid := n.node.Process.Pid
	if grace > 0 {
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-n.done:
		case <-time.After(grace):
		}
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	<-n.done
	n.node = nil
}

// Restart stops the node gracefully and starts it again.
func (n *Node) Restart() error {
	n.StopNode(30 * time.Second)
	return n.Start()
}

// Stop stops the node and its epmd.
func (n *Node) Stop() error {
	n.StopNode(30 * time.Second)
	n.killEpmd()
	return nil
}

func (n *Node) killEpmd() {
	if n.epmd == nil || n.epmd.Process == nil {
		return
	}
	_ = syscall.Kill(-n.epmd.Process.Pid, syscall.SIGKILL)
	_ = n.epmd.Wait()
	n.epmd = nil
}

// QueueDepth returns the messages ready in queue and its consumers (a
// passive declaration: the queue must exist).
func (n *Node) QueueDepth(ctx context.Context, queue string) (ready, consumers int, err error) {
	c, err := amqp.Dial(n.URL)
	if err != nil {
		return 0, 0, err
	}
	defer c.Close()
	ch, err := c.Channel()
	if err != nil {
		return 0, 0, err
	}
	q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	if err != nil {
		return 0, 0, err
	}
	return q.Messages, q.Consumers, nil
}

func freePorts(k int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for range k {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func waitListen(addr string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not listening after %v", addr, d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}
