package observability

import (
	"os/exec"
	"path/filepath"
	"testing"
)

// TestAlertRules runs promtool's check and the rules' unit tests.
func TestAlertRules(t *testing.T) {
	promtool := tool(t, "promtool")
	dir := filepath.Join(repoRoot(t), "deploy", "prometheus")
	for _, args := range [][]string{
		{"check", "rules", "ledgerfence.rules.yml"},
		{"test", "rules", "ledgerfence.rules.test.yml"},
	} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("promtool %v: %v\n%s", args, err, out)
		}
	}
}
