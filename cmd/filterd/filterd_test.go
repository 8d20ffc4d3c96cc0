package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"

	"github.com/ledgerfence/ledgerfence/pkg/api"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/remote"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestParseConfig(t *testing.T) {
	cases := []struct {
		name    string
		args    []string
		env     map[string]string
		check   func(t *testing.T, c config)
		wantErr string
	}{
		{
			name: "defaults",
			check: func(t *testing.T, c config) {
				if c.Listen != ":8787" || c.Ledger != "embedded" || c.Decisions != api.DefaultDecisions ||
					c.MaxBody != api.DefaultMaxBodyBytes || c.LogLevel != zapcore.InfoLevel || c.DenyUnregulated {
					t.Errorf("defaults = %+v", c)
				}
			},
		},
		{
			name: "environment",
			env: map[string]string{
				"LEDGERFENCE_ADMIN_TOKEN": "a", "LEDGERFENCE_READ_TOKEN": "r", "LEDGERFENCE_WEBHOOK_TOKEN": "w",
				"LEDGERFENCE_DENY_UNREGULATED": "true", "LEDGERFENCE_LOG_LEVEL": "debug", "LEDGERFENCE_DATA": "/d",
				"LEDGERFENCE_NATS": "nats://127.0.0.1:4222", "LEDGERFENCE_MAX_BODY": "4096", "LEDGERFENCE_DECISIONS": "7",
			},
			check: func(t *testing.T, c config) {
				if c.AdminToken != "a" || c.ReadToken != "r" || c.WebhookToken != "w" || !c.DenyUnregulated ||
					c.LogLevel != zapcore.DebugLevel || c.Data != "/d" || c.NATS == "" || c.MaxBody != 4096 || c.Decisions != 7 {
					t.Errorf("from the environment: %+v", c)
				}
			},
		},
		{
			name: "a flag beats its variable",
			args: []string{"--listen", "127.0.0.1:9000", "--deny-unregulated=false"},
			env:  map[string]string{"LEDGERFENCE_LISTEN": ":1", "LEDGERFENCE_DENY_UNREGULATED": "true"},
			check: func(t *testing.T, c config) {
				if c.Listen != "127.0.0.1:9000" || c.DenyUnregulated {
					t.Errorf("flags lost to the environment: %+v", c)
				}
			},
		},
		{name: "bad variable", env: map[string]string{"LEDGERFENCE_DENY_UNREGULATED": "maybe"}, wantErr: "LEDGERFENCE_DENY_UNREGULATED"},
		{name: "bad log level", args: []string{"--log-level", "loud"}, wantErr: "log-level"},
		{name: "certificate without key", args: []string{"--tls-cert", "c.pem"}, wantErr: "--tls-key"},
		{name: "client CA without a certificate", args: []string{"--tls-client-ca", "ca.pem"}, wantErr: "--tls-client-ca needs --tls-cert"},
		{
			name: "client CA from the environment",
			args: []string{"--tls-cert", "c.pem", "--tls-key", "k.pem"},
			env:  map[string]string{"LEDGERFENCE_TLS_CLIENT_CA": "/etc/ledgerfence/clients.pem"},
			check: func(t *testing.T, c config) {
				if c.TLSClientCA != "/etc/ledgerfence/clients.pem" {
					t.Errorf("TLSClientCA = %q", c.TLSClientCA)
				}
			},
		},
		{name: "tiny body limit", args: []string{"--max-body", "10"}, wantErr: "--max-body"},
		{name: "tiny receive buffer", args: []string{"--receive-buffer", "100"}, wantErr: "--receive-buffer"},
		{name: "huge receive buffer", args: []string{"--receive-buffer", "1000000000"}, wantErr: "--receive-buffer"},
		{name: "no decisions kept", args: []string{"--decisions", "0"}, wantErr: "--decisions"},
		{name: "same read and admin token", args: []string{"--admin-token", "x", "--read-token", "x"}, wantErr: "--read-token"},
		{name: "stray argument", args: []string{"serve"}, wantErr: "unexpected"},
		{name: "unknown flag", args: []string{"--port", "1"}, wantErr: "port"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parseConfig(tc.args, env(tc.env), io.Discard)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one mentioning %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, c)
		})
	}
}

// started runs filterd until the test ends and returns its base URL.
func started(t *testing.T, cfg config, client *http.Client, scheme string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	addr := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() { done <- run(ctx, cfg, zaptest.NewLogger(t), func(a net.Addr) { addr <- a }) }()
	var base string
	select {
	case a := <-addr:
		base = scheme + "://" + a.String()
	case err := <-done:
		cancel()
		t.Fatalf("run: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := client.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return base
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("filterd not ready: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func testConfig(t *testing.T) config {
	c, err := parseConfig([]string{"--listen", "127.0.0.1:0", "--data", filepath.Join(t.TempDir(), "data"), "--admin-token", "s3cret"}, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func call(t *testing.T, client *http.Client, method, url, token, body string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

const webhookBody = `{"spec": {"nova_object.name": "RequestSpec", "nova_object.data": {
  "instance_uuid": "6f1c0d3e-8b2a-4c1d-9e7f-0a1b2c3d4e5f", "project_id": "p1",
  "scheduler_hints": {"_nova_check_type": ["live_migrate"]}}},
 "context": {"request_id": "req-1"},
 "hosts": [{"host": "hm1", "hypervisor_hostname": "hm1"}, {"host": "hm3", "hypervisor_hostname": "hm3"}]}`

func TestRunServesAndKeepsTheLedger(t *testing.T) {
	cfg := testConfig(t)
	client := &http.Client{Timeout: 10 * time.Second}
	func() {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		addr := make(chan net.Addr, 1)
		done := make(chan error, 1)
		go func() { done <- run(ctx, cfg, zaptest.NewLogger(t), func(a net.Addr) { addr <- a }) }()
		base := "http://" + (<-addr).String()
		for _, h := range []struct{ name, body string }{
			{"hm1", `{"country": "JP", "organizations": ["CompanyA", "CompanyB"]}`},
			{"hm3", `{"country": "DE", "organizations": ["CompanyA"]}`},
		} {
			if resp, body := call(t, client, http.MethodPut, base+"/v1/hosts/"+h.name, "s3cret", h.body); resp.StatusCode != http.StatusOK {
				t.Fatalf("PUT %s: %d %s", h.name, resp.StatusCode, body)
			}
		}
		resp, body := call(t, client, http.MethodPut, base+"/v1/regulations/vm:6f1c0d3e-8b2a-4c1d-9e7f-0a1b2c3d4e5f", "s3cret",
			`{"countries": ["JP", "GB"], "organizations": ["CompanyA", "CompanyB"]}`)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("PUT regulation: %d %s", resp.StatusCode, body)
		}
		resp, body = call(t, client, http.MethodPost, base+"/scheduler/nova/external", "", webhookBody)
		if resp.StatusCode != http.StatusOK || body != `{"hosts":["hm1"]}`+"\n" || resp.Header.Get(api.HeaderDecision) == "" {
			t.Fatalf("webhook: %d %q", resp.StatusCode, body)
		}
		resp, body = call(t, client, http.MethodGet, base+"/v1/decisions/"+resp.Header.Get(api.HeaderDecision), "", "")
		if resp.StatusCode != http.StatusOK || !strings.Contains(body, `"country_not_allowed"`) {
			t.Errorf("decision: %d %s", resp.StatusCode, body)
		}
		resp, body = call(t, client, http.MethodGet, base+"/metrics", "", "")
		if !strings.Contains(body, `ledgerfence_webhook_requests_total{operation="live_migrate",outcome="allowed_some"} 1`) ||
			!strings.Contains(body, "go_goroutines") {
			t.Errorf("metrics: %d, lacking the webhook's count or the Go collector", resp.StatusCode)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("run after a signal: %v", err)
		}
	}()

	// A new filterd on the same data answers the same.
	base := started(t, cfg, client, "http")
	resp, body := call(t, client, http.MethodPost, base+"/scheduler/nova/external", "", webhookBody)
	if resp.StatusCode != http.StatusOK || body != `{"hosts":["hm1"]}`+"\n" {
		t.Errorf("webhook after a restart: %d %q", resp.StatusCode, body)
	}
}

func TestRunTLSAndTokens(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, pool := selfSigned(t, dir)
	cfg := testConfig(t)
	cfg.TLSCert, cfg.TLSKey = certFile, keyFile
	cfg.WebhookToken = "nova"
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	base := started(t, cfg, client, "https")

	// Without its token: no host (SAP's Nova would take every host on a 401).
	if resp, body := call(t, client, http.MethodPost, base+"/scheduler/nova/external", "", webhookBody); resp.StatusCode != http.StatusOK || body != `{"hosts":[]}`+"\n" {
		t.Errorf("webhook without its token: %d %q, want 200 {\"hosts\":[]}", resp.StatusCode, body)
	}
	resp, body := call(t, client, http.MethodPost, base+"/scheduler/nova/external", "nova", webhookBody)
	if resp.StatusCode != http.StatusOK || body != `{"hosts":["hm1","hm3"]}`+"\n" {
		t.Errorf("webhook with its token: %d %q (an unregulated VM: every host passes)", resp.StatusCode, body)
	}
	var info remote.LedgerInfo
	resp, body = call(t, client, http.MethodGet, base+"/v1/ledger", "", "")
	if err := json.Unmarshal([]byte(body), &info); err != nil || !info.Writable || info.Backend != "embedded" {
		t.Errorf("ledger info: %d %s", resp.StatusCode, body)
	}
	plain := &http.Client{Timeout: 10 * time.Second}
	if resp, err := plain.Get(strings.Replace(base, "https", "http", 1) + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Error("plain HTTP served on a TLS listener")
		}
	}
}

func TestRunMutualTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, serverPool := selfSigned(t, dir)
	clientCA := newCA(t, "clients")
	otherCA := newCA(t, "other clients")
	cfg := testConfig(t)
	cfg.TLSCert, cfg.TLSKey = certFile, keyFile
	cfg.TLSClientCA = filepath.Join(dir, "clients.pem")
	if err := os.WriteFile(cfg.TLSClientCA, clientCA.pem, 0o600); err != nil {
		t.Fatal(err)
	}
	client := func(certs ...tls.Certificate) *http.Client {
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: serverPool, Certificates: certs}}}
	}
	served := client(clientCA.issue(t, "nova-scheduler"))
	base := started(t, cfg, served, "https")

	if resp, body := call(t, served, http.MethodPost, base+"/scheduler/nova/external", "", webhookBody); resp.StatusCode != http.StatusOK ||
		body != `{"hosts":["hm1","hm3"]}`+"\n" {
		t.Errorf("webhook with a certificate from the client CA: %d %q", resp.StatusCode, body)
	}
	for _, tc := range []struct {
		name   string
		client *http.Client
	}{
		{"no certificate", client()},
		{"a certificate from another CA", client(otherCA.issue(t, "intruder"))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodPost, base+"/scheduler/nova/external", strings.NewReader(webhookBody))
			if err != nil {
				t.Fatal(err)
			}
			resp, err := tc.client.Do(req)
			if err == nil {
				resp.Body.Close()
				t.Fatalf("served with HTTP %d, want the handshake refused", resp.StatusCode)
			}
			if !strings.Contains(err.Error(), "certificate") {
				t.Errorf("err = %v, want a refused client certificate", err)
			}
		})
	}
}

// testCA is a certificate authority that issues client certificates.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newCA(t *testing.T, name string) testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns a client certificate for name signed by ca.
func (ca testCA) issue(t *testing.T, name string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func TestRunRefuses(t *testing.T) {
	for _, tc := range []struct {
		name    string
		edit    func(c *config)
		wantErr string
	}{
		{"unknown backend", func(c *config) { c.Ledger = "postgres" }, `--ledger "postgres": want embedded`},
		{"fabric without a peer", func(c *config) { c.Ledger = "fabric" }, "--fabric-peer"},
		{"missing certificate", func(c *config) { c.TLSCert, c.TLSKey = "/nonexistent/c.pem", "/nonexistent/k.pem" }, "TLS"},
		{"missing client CA", func(c *config) {
			c.TLSCert, c.TLSKey, _ = selfSigned(t, t.TempDir())
			c.TLSClientCA = "/nonexistent/ca.pem"
		}, "TLS client CA"},
		{"client CA without a certificate in it", func(c *config) {
			c.TLSCert, c.TLSKey, _ = selfSigned(t, t.TempDir())
			c.TLSClientCA = c.TLSKey
		}, "no PEM certificate"},
		{"address in use", func(c *config) { c.Listen = "256.0.0.1:1" }, "listen"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t)
			tc.edit(&cfg)
			err := run(t.Context(), cfg, zaptest.NewLogger(t), nil)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("err = %v, want one mentioning %q", err, tc.wantErr)
			}
		})
	}
}

// selfSigned writes a certificate for 127.0.0.1 and its key, and returns
// their files and a pool that trusts it.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "filterd"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// filterd reads a YAML file of settings too, below the environment and the
// flags.
func TestParseConfigFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "filterd.yaml")
	if err := os.WriteFile(file, []byte("decision-timeout: 750ms\nmax-in-flight: 9\nlisten: 127.0.0.1:1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := parseConfig([]string{"--config", file, "--listen", "127.0.0.1:3"}, env(map[string]string{"LEDGERFENCE_MAX_IN_FLIGHT": "7"}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.DecisionTimeout != 750*time.Millisecond || c.MaxInFlight != 7 || c.Listen != "127.0.0.1:3" {
		t.Errorf("decision-timeout %v (file), max-in-flight %d (environment), listen %s (flag)", c.DecisionTimeout, c.MaxInFlight, c.Listen)
	}
	if _, err := parseConfig([]string{"--config", file + ".missing"}, env(nil), io.Discard); err == nil {
		t.Error("a missing --config file was accepted")
	}
}
