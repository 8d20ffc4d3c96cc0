package main

import (
	"bytes"
	"encoding/json"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/nova"
)

func TestRequestBody(t *testing.T) {
	for _, n := range []int{1, 10, 1000} {
		body := requestBody(n)
		req, err := nova.Decode(body)
		if err != nil {
			t.Fatalf("%d hosts: %v", n, err)
		}
		var sent struct{ Weights map[string]float64 } // as SAP's Nova sends them; filterd does not read them
		if err := json.Unmarshal(body, &sent); err != nil {
			t.Fatalf("%d hosts: %v", n, err)
		}
		if len(req.Hosts) != n || len(sent.Weights) != n || req.Spec.Data.InstanceUUID != vm || req.Operation() != nova.OpLiveMigrate {
			t.Errorf("%d hosts: decoded %d hosts, %d weights, VM %s, operation %s", n, len(req.Hosts), len(sent.Weights), req.Spec.Data.InstanceUUID, req.Operation())
		}
	}
}

// allowed must count what the decision allows, or check fails every run.
func TestAllowedMatchesTheDecision(t *testing.T) {
	terms, err := filter.ParseTerms([]byte(regulation))
	rules := terms.Allow
	if err != nil {
		t.Fatal(err)
	}
	regs := []filter.Regulation{{Subject: filter.VMSubject(vm), Allow: rules}}
	for _, n := range []int{1, 7, 100, 1000} {
		cands := make([]filter.Candidate, n)
		for i := range cands {
			h := host(i)
			cands[i] = filter.Candidate{Name: h.Name, Host: &h}
		}
		if res := filter.Evaluate(regs, cands, filter.Options{}); res.Allowed != allowed(n) {
			t.Errorf("%d hosts: Evaluate allows %d, allowed() says %d", n, res.Allowed, allowed(n))
		}
	}
}

func TestParseConfig(t *testing.T) {
	c, err := parseConfig(nil)
	if err != nil || len(c.Hosts) != 4 || !slices.Equal(c.Concurrency, []int{8}) || !c.Floor || c.URL != "" {
		t.Errorf("defaults = %+v, %v", c, err)
	}
	for _, args := range [][]string{{"-hosts", "0"}, {"-hosts", "x"}, {"-c", "0"}, {"-c", "1,x"}, {"-duration", "0s"}, {"-url", "http://x"}, {"extra"}} {
		if _, err := parseConfig(args); err == nil {
			t.Errorf("%q accepted", args)
		}
	}
}

func TestRunInProcess(t *testing.T) {
	var out bytes.Buffer
	cfg := config{Hosts: []int{10}, Concurrency: []int{1, 2}, Floor: true, Duration: 200 * time.Millisecond, Allocs: false}
	if err := run(t.Context(), cfg, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	// A heading, the column names, then filterd and the floor at each
	// concurrency.
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	want := [][]string{{"filterd", "1", "10"}, {"floor", "1", "10"}, {"filterd", "2", "10"}, {"floor", "2", "10"}}
	if len(lines) != 2+len(want) {
		t.Fatalf("output:\n%s", out.String())
	}
	for i, w := range want {
		if f := strings.Fields(lines[2+i]); len(f) < 3 || !slices.Equal(f[:3], w) {
			t.Errorf("row %d = %q, want it to start with %q", i, lines[2+i], w)
		}
	}
}
