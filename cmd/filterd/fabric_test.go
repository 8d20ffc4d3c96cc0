package main

import (
	"errors"
	"io"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/ledgerfence/ledgerfence/pkg/ledger/backend"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/fabric"
)

func TestParseFabricConfig(t *testing.T) {
	full := []string{"--ledger", "fabric", "--fabric-peer", "127.0.0.1:7051", "--fabric-tls-ca", "ca.pem",
		"--fabric-msp-id", "Org1MSP", "--fabric-cert", "cert.pem", "--fabric-key", "key.pem"}
	cases := []struct {
		name    string
		args    []string
		env     map[string]string
		check   func(t *testing.T, c config)
		wantErr []string
	}{
		{
			name: "flags and defaults",
			args: full,
			check: func(t *testing.T, c config) {
				want := backend.FabricSettings{Peer: "127.0.0.1:7051", TLSCA: "ca.pem", MSPID: "Org1MSP", Cert: "cert.pem", Key: "key.pem",
					Channel: fabric.DefaultChannel, Chaincode: fabric.DefaultChaincode}
				if c.Fabric != want || c.FabricTimeout != fabric.DefaultEvaluateTimeout || c.FabricCheckpoint != "" {
					t.Errorf("got %+v %v %q, want %+v", c.Fabric, c.FabricTimeout, c.FabricCheckpoint, want)
				}
			},
		},
		{
			name: "environment",
			env: map[string]string{
				"LEDGERFENCE_LEDGER": "fabric", "LEDGERFENCE_FABRIC_PEER": "p:1", "LEDGERFENCE_FABRIC_TLS_CA": "t",
				"LEDGERFENCE_FABRIC_SERVER_NAME": "peer0", "LEDGERFENCE_FABRIC_MSP_ID": "M", "LEDGERFENCE_FABRIC_CERT": "c",
				"LEDGERFENCE_FABRIC_KEY": "k", "LEDGERFENCE_FABRIC_CHANNEL": "ch", "LEDGERFENCE_FABRIC_CHAINCODE": "cc",
				"LEDGERFENCE_FABRIC_CHECKPOINT": "/cp", "LEDGERFENCE_FABRIC_TIMEOUT": "750ms",
			},
			check: func(t *testing.T, c config) {
				want := backend.FabricSettings{Peer: "p:1", TLSCA: "t", ServerName: "peer0", MSPID: "M", Cert: "c", Key: "k",
					Channel: "ch", Chaincode: "cc"}
				if c.Fabric != want || c.FabricCheckpoint != "/cp" || c.FabricTimeout != 750*time.Millisecond {
					t.Errorf("got %+v %q %v, want %+v", c.Fabric, c.FabricCheckpoint, c.FabricTimeout, want)
				}
			},
		},
		{
			name:    "every missing setting is named",
			args:    []string{"--ledger", "fabric", "--fabric-channel", ""},
			wantErr: []string{"--fabric-peer", "--fabric-tls-ca", "--fabric-msp-id", "--fabric-cert", "--fabric-key", "--fabric-channel"},
		},
		{
			name:    "zero timeout",
			args:    append(append([]string{}, full...), "--fabric-timeout", "0s"),
			wantErr: []string{"--fabric-timeout"},
		},
		{
			name:  "embedded ignores the Fabric settings",
			args:  []string{"--fabric-timeout", "0s"},
			check: func(t *testing.T, c config) {},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parseConfig(tc.args, env(tc.env), io.Discard)
			if len(tc.wantErr) > 0 {
				for _, w := range tc.wantErr {
					if err == nil || !strings.Contains(err.Error(), w) {
						t.Errorf("err = %v, want one mentioning %q", err, w)
					}
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

// TestOpenFabricReadOnly: the Fabric backend opens without reaching its peer
// (a peer that is down is the cache's concern), and filterd never writes to it.
func TestOpenFabricReadOnly(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, _ := selfSigned(t, dir)
	cfg := config{Settings: backend.Settings{Ledger: backend.Fabric, Fabric: backend.FabricSettings{Peer: "127.0.0.1:1", TLSCA: certFile,
		MSPID: "Org1MSP", Cert: certFile, Key: keyFile, Channel: "ledger", Chaincode: "ledgerfence"}},
		FabricCheckpoint: filepath.Join(dir, "cp"), FabricTimeout: time.Second}
	b, err := openFabric(cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if b.name != backendFabric || b.writable || b.cache.MaxBackoff != fabricMaxBackoff {
		t.Errorf("backend %s writable %v, cache %+v", b.name, b.writable, b.cache)
	}

	cfg.Fabric.Key = filepath.Join(dir, "missing.pem")
	if _, err := openFabric(cfg, zaptest.NewLogger(t)); err == nil || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a missing key: %v", err)
	}
}
