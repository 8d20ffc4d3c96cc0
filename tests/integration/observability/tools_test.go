package observability

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// waitFor bounds every wait for a component; it guards against hanging and
// measures nothing.
const waitFor = 60 * time.Second

// tool returns the path of a command, skipping the test when it is missing
// (failing when LEDGERFENCE_REQUIRE_INTEGRATION=1).
func tool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("LEDGERFENCE_REQUIRE_INTEGRATION") == "1" {
		t.Fatalf("%s is not installed (run tests/integration/observability/install.sh)", name)
	}
	t.Skipf("%s is not installed (run tests/integration/observability/install.sh)", name)
	return ""
}

// repoRoot is the module's root directory.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", "..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("no go.mod at %s: %v", root, err)
	}
	return root
}
