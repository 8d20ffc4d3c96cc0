package observability

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var units = []string{
	"ledgerfence-filterd.service",
	"ledgerfence-hostagent-register.service",
	"ledgerfence-hostagent.service",
	"ledgerfence-cc.service",
}

// TestSystemdUnits checks deploy/systemd with systemd-analyze verify (the
// binaries replaced by /bin/true, which verify wants to exist) and that each
// unit keeps its hardening.
func TestSystemdUnits(t *testing.T) {
	dir := filepath.Join(repoRoot(t), "deploy", "systemd")
	tmp := t.TempDir()
	bin := regexp.MustCompile(`/usr/local/bin/[a-z-]+`)
	var paths []string
	for _, u := range units {
		data, err := os.ReadFile(filepath.Join(dir, u))
		if err != nil {
			t.Fatal(err)
		}
		text := string(data)
		for _, want := range []string{"NoNewPrivileges=yes", "ProtectSystem=strict", "DynamicUser=yes",
			"CapabilityBoundingSet=\n", "SystemCallFilter=@system-service", "RestrictAddressFamilies="} {
			if !strings.Contains(text, want) {
				t.Errorf("%s lacks %q", u, strings.TrimSpace(want))
			}
		}
		p := filepath.Join(tmp, u)
		if err := os.WriteFile(p, []byte(bin.ReplaceAllString(text, "/bin/true")), 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	analyze := tool(t, "systemd-analyze")
	cmd := exec.Command(analyze, append([]string{"verify", "--man=no"}, paths...)...)
	out, err := cmd.CombinedOutput()
	var problems []string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "ledgerfence") {
			problems = append(problems, line)
		}
	}
	if err != nil || len(problems) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, strings.Join(problems, "\n"))
	}
}
