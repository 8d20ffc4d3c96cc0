package config_test

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ledgerfence/ledgerfence/pkg/config"
)

type settings struct {
	listen  string
	timeout time.Duration
	orgs    []string
	once    bool
	file    string
}

func flags(s *settings) *flag.FlagSet {
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&s.file, config.FileFlag, "", "YAML file")
	fs.StringVar(&s.listen, "listen", ":8787", "address")
	fs.DurationVar(&s.timeout, "decision-timeout", 2*time.Second, "timeout")
	s.orgs = []string{"default-org"}
	fs.Var(config.NewList(&s.orgs), "organizations", "organisations")
	fs.BoolVar(&s.once, "once", false, "once")
	return fs
}

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func files(m map[string]string) func(string) ([]byte, error) {
	return func(p string) ([]byte, error) {
		if d, ok := m[p]; ok {
			return []byte(d), nil
		}
		return nil, os.ErrNotExist
	}
}

func TestPrecedence(t *testing.T) {
	yaml := "listen: file:1\ndecision-timeout: 5s\norganizations: [A, B]\nonce: true\n"
	for _, tc := range []struct {
		name    string
		args    []string
		env     map[string]string
		listen  string
		timeout time.Duration
		orgs    []string
		once    bool
	}{
		{"defaults", nil, nil, ":8787", 2 * time.Second, []string{"default-org"}, false},
		{"file", []string{"--config", "f.yaml"}, nil, "file:1", 5 * time.Second, []string{"A", "B"}, true},
		{"file named by the environment", nil, map[string]string{"LEDGERFENCE_CONFIG": "f.yaml"}, "file:1", 5 * time.Second, []string{"A", "B"}, true},
		{"environment over file", []string{"--config", "f.yaml"}, map[string]string{"LEDGERFENCE_LISTEN": "env:2", "LEDGERFENCE_ORGANIZATIONS": "C,D"},
			"env:2", 5 * time.Second, []string{"C", "D"}, true},
		{"flag over environment and file", []string{"--config", "f.yaml", "--listen", "flag:3", "--organizations", "E", "--organizations", "F", "--once=false"},
			map[string]string{"LEDGERFENCE_LISTEN": "env:2", "LEDGERFENCE_ORGANIZATIONS": "C"}, "flag:3", 5 * time.Second, []string{"E", "F"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var s settings
			fs := flags(&s)
			if _, err := config.Load(fs, tc.args, env(tc.env), config.Options{ReadFile: files(map[string]string{"f.yaml": yaml})}); err != nil {
				t.Fatal(err)
			}
			if s.listen != tc.listen || s.timeout != tc.timeout || !slices.Equal(s.orgs, tc.orgs) || s.once != tc.once {
				t.Errorf("got %q %v %v %v, want %q %v %v %v", s.listen, s.timeout, s.orgs, s.once, tc.listen, tc.timeout, tc.orgs, tc.once)
			}
		})
	}
}

func TestBadInputNamesItsSource(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		file string
		want string
	}{
		{"bad environment value", nil, map[string]string{"LEDGERFENCE_DECISION_TIMEOUT": "soon"}, "", "LEDGERFENCE_DECISION_TIMEOUT"},
		{"unknown key", []string{"--config", "f.yaml"}, nil, "listne: x\n", `unknown key "listne"`},
		{"bad flag value", []string{"--decision-timeout", "soon"}, nil, "", "not a duration"},
		{"negative duration", nil, map[string]string{"LEDGERFENCE_DECISION_TIMEOUT": "-1s"}, "", "LEDGERFENCE_DECISION_TIMEOUT"},
		{"bad boolean", nil, map[string]string{"LEDGERFENCE_ONCE": "yes please"}, "", "not true or false"},
		{"bad file value", []string{"--config", "f.yaml"}, nil, "decision-timeout: [1s, 2s]\n", "decision-timeout"},
		{"not YAML", []string{"--config", "f.yaml"}, nil, "listen: [\n", "config file f.yaml"},
		{"missing file", []string{"--config", "nope.yaml"}, nil, "", "config file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var s settings
			_, err := config.Load(flags(&s), tc.args, env(tc.env), config.Options{ReadFile: files(map[string]string{"f.yaml": tc.file})})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want one naming %q", err, tc.want)
			}
		})
	}
	var s settings
	if _, err := config.Load(flags(&s), []string{"-h"}, env(nil), config.Options{}); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v, want flag.ErrHelp", err)
	}
}

func TestAliases(t *testing.T) {
	var s settings
	_, err := config.Load(flags(&s), nil, env(map[string]string{"LEDGERFENCE_ORGANIZATION": "X"}),
		config.Options{Aliases: map[string]string{"organization": "organizations"}})
	if err != nil || !slices.Equal(s.orgs, []string{"X"}) {
		t.Errorf("alias: %v %v", s.orgs, err)
	}
}

func TestUsageNamesEachVariable(t *testing.T) {
	var s settings
	var b bytes.Buffer
	config.Usage(flags(&s), &b, "usage: test\n")
	for _, want := range []string{"--listen", "[LEDGERFENCE_LISTEN]", "[LEDGERFENCE_DECISION_TIMEOUT]", "LEDGERFENCE_CONFIG"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("usage lacks %q:\n%s", want, b.String())
		}
	}
}

func TestUsageLeavesOperandsWithoutVariable(t *testing.T) {
	var s settings
	var b bytes.Buffer
	config.Usage(flags(&s), &b, "", func(name string) bool { return name == "listen" })
	if !strings.Contains(b.String(), "[LEDGERFENCE_LISTEN]") || strings.Contains(b.String(), "[LEDGERFENCE_ONCE]") {
		t.Errorf("usage:\n%s", b.String())
	}
}
