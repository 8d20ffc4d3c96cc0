package fabric_test

// Helpers of TestRecorderOnFabric: the recorder command built once and run
// on the Fabric backend as one of the network's identities, and Nova's
// versioned notifications made from the fixtures of
// pkg/nova/notify/testdata and published to a private RabbitMQ node.

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
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

	"github.com/ledgerfence/ledgerfence/tests/integration/fabricnet"
)

var (
	recorderOnce sync.Once
	recorderBin  string
	recorderErr  error
)

// recorderBinary builds ./cmd/recorder once per run.
func recorderBinary(tb testing.TB) string {
	tb.Helper()
	recorderOnce.Do(func() {
		dir, err := os.MkdirTemp("", "ledgerfence-it-recorder-")
		if err != nil {
			recorderErr = err
			return
		}
		atExit = append(atExit, func() { os.RemoveAll(dir) })
		out := filepath.Join(dir, "recorder")
		cmd := exec.Command("go", "build", "-o", out, "./cmd/recorder")
		cmd.Dir = repoRoot()
		if b, err := cmd.CombinedOutput(); err != nil {
			recorderErr = fmt.Errorf("go build ./cmd/recorder: %v\n%s", err, b)
			return
		}
		recorderBin = out
	})
	if recorderErr != nil {
		tb.Fatal(recorderErr)
	}
	return recorderBin
}

// recorderProc is a running recorder command.
type recorderProc struct {
	name       string
	cmd        *exec.Cmd
	out        logBuffer
	done       chan struct{}
	metricsURL string
}

// startRecorderAs starts `recorder` on the Fabric backend as identity (through
// its own organisation's peer), configured by the environment only, on the
// queue of the RabbitMQ node at amqpURL, and waits until it consumes; the
// test's end kills it.
func startRecorderAs(tb testing.TB, identity, amqpURL string) *recorderProc {
	tb.Helper()
	needNetwork(tb)
	bin := recorderBinary(tb)
	cfg := configFor(tb, identity)
	addr := freeAddr(tb)
	r := &recorderProc{name: "recorder as " + identity, done: make(chan struct{}), metricsURL: "http://" + addr + "/metrics"}
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "LEDGERFENCE_") {
			env = append(env, kv)
		}
	}
	env = append(env,
		"LEDGERFENCE_LEDGER=fabric",
		"LEDGERFENCE_FABRIC_PEER="+cfg.PeerEndpoint,
		"LEDGERFENCE_FABRIC_TLS_CA="+cfg.TLSCAFile,
		"LEDGERFENCE_FABRIC_SERVER_NAME="+cfg.ServerName,
		"LEDGERFENCE_FABRIC_MSP_ID="+cfg.MSPID,
		"LEDGERFENCE_FABRIC_CERT="+cfg.CertFile,
		"LEDGERFENCE_FABRIC_KEY="+cfg.KeyFile,
		"LEDGERFENCE_FABRIC_CHANNEL="+cfg.Channel,
		"LEDGERFENCE_FABRIC_CHAINCODE="+cfg.Chaincode,
		"LEDGERFENCE_AMQP_URL="+amqpURL,
		"LEDGERFENCE_METRICS_LISTEN="+addr,
		"LEDGERFENCE_LOG_LEVEL=warn",
	)
	r.cmd = exec.Command(bin)
	r.cmd.Env = env
	r.cmd.Stdout, r.cmd.Stderr = &r.out, &r.out
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := r.cmd.Start(); err != nil {
		tb.Fatalf("%s: %v", r.name, err)
	}
	go func() {
		_ = r.cmd.Wait()
		close(r.done)
	}()
	tb.Cleanup(func() {
		r.kill()
		if tb.Failed() {
			tb.Logf("%s's output:\n%s", r.name, fabricnet.LastLines(r.out.String(), 60))
		}
	})
	deadline := time.Now().Add(time.Minute)
	for {
		select {
		case <-r.done:
			tb.Fatalf("%s exited: %v\n%s", r.name, r.cmd.ProcessState, r.out.String())
		default:
		}
		if v, err := r.metric("ledgerfence_recorder_connected"); err == nil && v == 1 {
			return r
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s not consuming within a minute\n%s", r.name, r.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill ends the recorder with SIGKILL and waits for its exit.
func (r *recorderProc) kill() {
	select {
	case <-r.done:
		return
	default:
	}
	_ = syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)
	<-r.done
}

// metric reads one series of the recorder's /metrics, its labels as
// exposed, e.g. ledgerfence_recorder_messages_total{result="recorded"}; a
// series not (yet) exposed is 0.
func (r *recorderProc) metric(series string) (float64, error) {
	resp, err := http.Get(r.metricsURL)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, sc.Err()
}

// randomUUID is a random UUID (version 4), lower case.
func randomUUID() string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// novaFixtures are the oslo messages (the notification inside the
// envelope) of pkg/nova/notify/testdata/notifications.json, by name.
var (
	novaFixturesOnce sync.Once
	novaFixtures     map[string]json.RawMessage
	novaFixturesErr  error
)

func novaFixture(tb testing.TB, name string) map[string]any {
	tb.Helper()
	novaFixturesOnce.Do(func() {
		data, err := os.ReadFile(filepath.Join(repoRoot(), "pkg", "nova", "notify", "testdata", "notifications.json"))
		if err != nil {
			novaFixturesErr = err
			return
		}
		var fs []struct {
			Name string `json:"name"`
			Body string `json:"body"`
		}
		if err := json.Unmarshal(data, &fs); err != nil {
			novaFixturesErr = err
			return
		}
		novaFixtures = map[string]json.RawMessage{}
		for _, f := range fs {
			var env map[string]any
			if err := json.Unmarshal([]byte(f.Body), &env); err != nil {
				novaFixturesErr = fmt.Errorf("fixture %s: %w", f.Name, err)
				return
			}
			if s, ok := env["oslo.message"].(string); ok {
				novaFixtures[f.Name] = json.RawMessage(s)
			}
		}
	})
	if novaFixturesErr != nil {
		tb.Fatal(novaFixturesErr)
	}
	raw, ok := novaFixtures[name]
	if !ok {
		tb.Fatalf("no enveloped fixture %q", name)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		tb.Fatal(err)
	}
	return m
}

// novaMsg says how to rewrite a fixture into one of a test's messages.
type novaMsg struct {
	Fixture   string    // name in notifications.json
	VM        string    // instance uuid
	Project   string    // tenant id
	Host      string    // the payload's host (and node); "": null
	Publisher string    // the nova-compute that sends it
	At        time.Time // oslo's timestamp
	MessageID string    // set by body
	Published time.Time // when its first copy was published
}

// body is m as oslo.messaging's messagingv2 driver sends it: the
// notification as a JSON string in {"oslo.version": "2.0", "oslo.message": ...}.
func (m *novaMsg) body(tb testing.TB) []byte {
	tb.Helper()
	if m.MessageID == "" {
		m.MessageID = randomUUID()
	}
	msg := novaFixture(tb, m.Fixture)
	at := m.At.UTC()
	req := "req-" + randomUUID()
	msg["message_id"] = m.MessageID
	msg["_unique_id"] = strings.ReplaceAll(randomUUID(), "-", "")
	msg["publisher_id"] = "nova-compute:" + m.Publisher
	msg["timestamp"] = at.Format("2006-01-02 15:04:05.000000")
	msg["_context_timestamp"] = at.Format("2006-01-02T15:04:05.000000")
	msg["_context_request_id"] = req
	msg["_context_project_id"] = m.Project
	msg["_context_project"] = m.Project
	payload, _ := msg["payload"].(map[string]any)
	data, _ := payload["nova_object.data"].(map[string]any)
	if data == nil {
		tb.Fatalf("fixture %s has no instance payload", m.Fixture)
	}
	data["uuid"] = m.VM
	data["tenant_id"] = m.Project
	data["request_id"] = req
	data["updated_at"] = at.Format(time.RFC3339)
	if m.Host == "" {
		data["host"], data["node"] = nil, nil
	} else {
		data["host"], data["node"] = m.Host, m.Host
	}
	inner, err := json.Marshal(msg)
	if err != nil {
		tb.Fatal(err)
	}
	out, err := json.Marshal(map[string]string{"oslo.version": "2.0", "oslo.message": string(inner)})
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// novaPublisher publishes to Nova's exchange on one connection, with the
// broker's confirms.
type novaPublisher struct {
	ch *amqp.Channel
}

func newNovaPublisher(tb testing.TB, url string) *novaPublisher {
	tb.Helper()
	c, err := amqp.Dial(url)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	ch, err := c.Channel()
	if err != nil {
		tb.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		tb.Fatal(err)
	}
	return &novaPublisher{ch: ch}
}

// send publishes bodies as Nova's versioned INFO notifications (routing key
// versioned_notifications.info, persistent) and waits for their confirms.
func (p *novaPublisher) send(tb testing.TB, bodies ...[]byte) {
	tb.Helper()
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var confs []*amqp.DeferredConfirmation
	for _, b := range bodies {
		dc, err := p.ch.PublishWithDeferredConfirmWithContext(c, "nova", "versioned_notifications.info", false, false,
			amqp.Publishing{ContentType: "application/json", ContentEncoding: "utf-8", DeliveryMode: amqp.Persistent, Body: b})
		if err != nil {
			tb.Fatal(err)
		}
		confs = append(confs, dc)
	}
	for i, dc := range confs {
		if ok, err := dc.WaitContext(c); err != nil || !ok {
			tb.Fatalf("message %d not confirmed: %v", i, err)
		}
	}
}
