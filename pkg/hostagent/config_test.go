package hostagent

import (
	"errors"
	"flag"
	"io"
	"io/fs"
	"slices"
	"strings"
	"testing"
	"time"
)

func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func filesOf(m map[string]string) func(string) ([]byte, error) {
	return func(p string) ([]byte, error) {
		if s, ok := m[p]; ok {
			return []byte(s), nil
		}
		return nil, fs.ErrNotExist
	}
}

const fileYAML = `
host: from-file
country: GB
organizations: [FileOrg1, FileOrg2]
region: file-region
ledger: http://file:8080
interval: 1m
nova-conf: /file/nova.conf
`

func TestLoadPrecedence(t *testing.T) {
	files := filesOf(map[string]string{"/etc/ledgerfence/hostagent.yaml": fileYAML})
	base := []string{"--config", "/etc/ledgerfence/hostagent.yaml"}
	tests := []struct {
		name  string
		args  []string
		env   map[string]string
		check func(t *testing.T, c Config)
	}{
		{
			name: "file only",
			args: base,
			check: func(t *testing.T, c Config) {
				want(t, "host", c.Host, "from-file")
				want(t, "country", c.Country, "GB")
				wantList(t, "organizations", c.Organizations, []string{"FileOrg1", "FileOrg2"})
				want(t, "ledger", c.Ledger, "http://file:8080")
				want(t, "interval", c.Interval, time.Minute)
				wantList(t, "nova confs", c.NovaConfs, []string{"/file/nova.conf"})
				want(t, "deadline (default)", c.Deadline, DefaultDeadline)
			},
		},
		{
			name: "env beats file",
			args: base,
			env: map[string]string{
				"LEDGERFENCE_HOST": "from-env", "LEDGERFENCE_ORGANIZATIONS": "EnvOrg1, EnvOrg2",
				"LEDGERFENCE_INTERVAL": "2m", "LEDGERFENCE_ONCE": "true",
			},
			check: func(t *testing.T, c Config) {
				want(t, "host", c.Host, "from-env")
				want(t, "country", c.Country, "GB")
				wantList(t, "organizations", c.Organizations, []string{"EnvOrg1", "EnvOrg2"})
				want(t, "interval", c.Interval, 2*time.Minute)
				want(t, "once", c.Once, true)
			},
		},
		{
			name: "flags beat env and file",
			args: append(slices.Clone(base), "--host", "from-flag", "--organization", "F1", "--organization", "F2,F3", "--country", "jp", "--once"),
			env:  map[string]string{"LEDGERFENCE_HOST": "from-env", "LEDGERFENCE_ORGANIZATION": "EnvOrg", "LEDGERFENCE_ONCE": "false"},
			check: func(t *testing.T, c Config) {
				want(t, "host", c.Host, "from-flag")
				want(t, "country", c.Country, "jp")
				wantList(t, "organizations", c.Organizations, []string{"F1", "F2", "F3"})
				want(t, "once", c.Once, true)
				want(t, "region (file)", c.Region, "file-region")
			},
		},
		{
			name: "config file named by env",
			args: nil,
			env:  map[string]string{"LEDGERFENCE_CONFIG": "/etc/ledgerfence/hostagent.yaml"},
			check: func(t *testing.T, c Config) {
				want(t, "host", c.Host, "from-file")
			},
		},
		{
			name: "no file, defaults",
			args: []string{"--ledger", "https://filterd:8443", "--country", "DE", "--organization", "O"},
			check: func(t *testing.T, c Config) {
				want(t, "interval", c.Interval, DefaultInterval)
				wantList(t, "nova confs", c.NovaConfs, DefaultNovaConfs)
				want(t, "nova confs set", c.NovaConfsSet, false)
				want(t, "once", c.Once, false)
			},
		},
		{
			name: "fabric settings from env",
			args: []string{"--ledger", "fabric", "--country", "DE", "--organization", "O"},
			env: map[string]string{
				"LEDGERFENCE_FABRIC_PEER": "peer0:7051", "LEDGERFENCE_FABRIC_TLS_CA": "/ca.pem", "LEDGERFENCE_FABRIC_MSP_ID": "Org1MSP",
				"LEDGERFENCE_FABRIC_CERT": "/c.pem", "LEDGERFENCE_FABRIC_KEY": "/k.pem",
			},
			check: func(t *testing.T, c Config) {
				want(t, "peer", c.Fabric.Peer, "peer0:7051")
				want(t, "msp", c.Fabric.MSPID, "Org1MSP")
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Load(tc.args, envOf(tc.env), files, io.Discard)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			tc.check(t, c)
		})
	}
}

func TestLoadErrors(t *testing.T) {
	files := filesOf(map[string]string{
		"/bad.yaml":     "host: [a, b]\n",
		"/unknown.yaml": "hots: a\n",
		"/notyaml.yaml": "{{{",
	})
	ok := []string{"--ledger", "http://f:1", "--country", "JP", "--organization", "A"}
	tests := []struct {
		name string
		args []string
		env  map[string]string
		msg  string
	}{
		{"no ledger", []string{"--country", "JP", "--organization", "A"}, nil, "--ledger is required"},
		{"ledger not a URL", []string{"--ledger", "filterd:8080", "--country", "JP", "--organization", "A"}, nil, "want the URL of a filterd"},
		{"fabric without peer", []string{"--ledger", "fabric", "--country", "JP", "--organization", "A"}, nil, "--fabric-peer"},
		{"no country", []string{"--ledger", "http://f:1", "--organization", "A"}, nil, "--country is required"},
		{"no organisation", []string{"--ledger", "http://f:1", "--country", "JP"}, nil, "--organization is required"},
		{"bad interval flag", append(slices.Clone(ok), "--interval", "soon"), nil, "not a duration"},
		{"bad interval env", ok, map[string]string{"LEDGERFENCE_INTERVAL": "-1s"}, "LEDGERFENCE_INTERVAL"},
		{"bad once env", ok, map[string]string{"LEDGERFENCE_ONCE": "yes please"}, "not true or false"},
		{"unknown flag", append(slices.Clone(ok), "--colour", "red"), nil, "colour"},
		{"stray argument", append(slices.Clone(ok), "extra"), nil, "unexpected argument"},
		{"missing file", append(slices.Clone(ok), "--config", "/nope.yaml"), nil, "config file"},
		{"list for a scalar", append(slices.Clone(ok), "--config", "/bad.yaml"), nil, "want a single value"},
		{"unknown key", append(slices.Clone(ok), "--config", "/unknown.yaml"), nil, `unknown key "hots"`},
		{"not yaml", append(slices.Clone(ok), "--config", "/notyaml.yaml"), nil, "not YAML"},
		{"bad log format", append(slices.Clone(ok), "--log-format", "xml"), nil, "log-format"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(tc.args, envOf(tc.env), files, io.Discard)
			if !errors.Is(err, ErrUsage) {
				t.Fatalf("err = %v, want ErrUsage", err)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("err = %q, want it to mention %q", err, tc.msg)
			}
		})
	}
}

func TestLoadHelp(t *testing.T) {
	var out strings.Builder
	_, err := Load([]string{"--help"}, envOf(nil), filesOf(nil), &out)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("err = %v, want flag.ErrHelp", err)
	}
	for _, s := range []string{"-organization", "LEDGERFENCE_ORGANIZATION", "-nova-conf", "-once"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("usage does not mention %s", s)
		}
	}
	if strings.Contains(out.String(), "panic") {
		t.Errorf("usage reports a panic:\n%s", out.String())
	}
}

func want[T comparable](t *testing.T, what string, got, exp T) {
	t.Helper()
	if got != exp {
		t.Errorf("%s = %v, want %v", what, got, exp)
	}
}

func wantList(t *testing.T, what string, got, exp []string) {
	t.Helper()
	if !slices.Equal(got, exp) {
		t.Errorf("%s = %q, want %q", what, got, exp)
	}
}
