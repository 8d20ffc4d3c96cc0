package decisionlog_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/ledgerfence/ledgerfence/pkg/decisionlog"
)

// lines reads every JSON line of a file, failing on one that does not parse.
func lines(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("%s: line %q is not JSON: %v", path, sc.Text(), err)
		}
		out = append(out, m)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func size(t *testing.T, path string) int64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

func TestDecisionLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "decisions.log")
	f, err := decisionlog.Open(decisionlog.Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	log := zap.New(decisionlog.NewCore(f, zapcore.InfoLevel)).Named("decision")
	log.Debug("not written")
	log.Info("decision", zap.String("decision_id", "d1"), zap.String("instance_uuid", "vm1"),
		zap.Int("allowed", 1), zap.Strings("denied", []string{"hm3"}))
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	got := lines(t, path)
	if len(got) != 1 {
		t.Fatalf("%d lines, want 1: %v", len(got), got)
	}
	l := got[0]
	if l["msg"] != "decision" || l["level"] != "info" || l["logger"] != "decision" || l["decision_id"] != "d1" ||
		l["instance_uuid"] != "vm1" || l["allowed"] != float64(1) {
		t.Errorf("line = %v", l)
	}
	if ts, _ := l["ts"].(string); !strings.HasSuffix(ts, "Z") {
		t.Errorf("ts %q is not UTC", ts)
	}
	if _, err := f.Write([]byte("x\n")); !errors.Is(err, decisionlog.ErrClosed) {
		t.Errorf("write after close: %v", err)
	}
}

func TestRotation(t *testing.T) {
	const maxBytes = 1000
	tests := []struct {
		name        string
		backups     int
		wantBackups int
	}{
		{"three backups", 3, 3},
		{"no backups", -1, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "decisions.log")
			f, err := decisionlog.Open(decisionlog.Config{Path: path, MaxBytes: maxBytes, MaxBackups: tc.backups})
			if err != nil {
				t.Fatal(err)
			}
			log := zap.New(decisionlog.NewCore(f, zapcore.InfoLevel))
			const n = 200 // about 80 bytes each: many rotations
			for i := range n {
				log.Info("decision", zap.Int("seq", i))
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			backups := f.Backups()
			if len(backups) != tc.wantBackups {
				t.Fatalf("backups %v, want %d", backups, tc.wantBackups)
			}
			// Newest last: path.N ... path.1, path; seq numbers run on
			// without a gap and end with the last one written.
			files := append([]string{}, backups...)
			for i, j := 0, len(files)-1; i < j; i, j = i+1, j-1 {
				files[i], files[j] = files[j], files[i]
			}
			files = append(files, path)
			var seqs []int
			for _, p := range files {
				if s := size(t, p); s > maxBytes {
					t.Errorf("%s has %d bytes, over %d", p, s, maxBytes)
				}
				for _, l := range lines(t, p) {
					seqs = append(seqs, int(l["seq"].(float64)))
				}
			}
			if len(seqs) == 0 || seqs[len(seqs)-1] != n-1 {
				t.Fatalf("last seq = %v, want %d", seqs, n-1)
			}
			for i := 1; i < len(seqs); i++ {
				if seqs[i] != seqs[i-1]+1 {
					t.Fatalf("gap or reorder at %d: %v", i, seqs)
				}
			}
			if _, err := os.Stat(path + "." + "4"); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("a backup beyond MaxBackups exists: %v", err)
			}
		})
	}
}

func TestReopenAppends(t *testing.T) {
	path := filepath.Join(t.TempDir(), "decisions.log")
	for i := range 2 {
		f, err := decisionlog.Open(decisionlog.Config{Path: path, MaxBytes: 1 << 20})
		if err != nil {
			t.Fatal(err)
		}
		zap.New(decisionlog.NewCore(f, zapcore.InfoLevel)).Info("decision", zap.Int("run", i))
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if got := lines(t, path); len(got) != 2 {
		t.Fatalf("lines = %v, want one per run", got)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != decisionlog.DefaultMode {
		t.Errorf("mode %v, want %v", st.Mode().Perm(), os.FileMode(decisionlog.DefaultMode))
	}
}

// TestReopenRotatesBySize: the size limit counts what an earlier run wrote.
func TestReopenRotatesBySize(t *testing.T) {
	path := filepath.Join(t.TempDir(), "decisions.log")
	if err := os.WriteFile(path, []byte(strings.Repeat("{}\n", 330)), 0o640); err != nil {
		t.Fatal(err)
	}
	f, err := decisionlog.Open(decisionlog.Config{Path: path, MaxBytes: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("{\"new\":true}\n")); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if got := lines(t, path); len(got) != 1 || got[0]["new"] != true {
		t.Errorf("live file = %v, want only the new line", got)
	}
	if got := lines(t, path+".1"); len(got) != 330 {
		t.Errorf("backup has %d lines, want 330", len(got))
	}
}

func TestConcurrentWrites(t *testing.T) {
	path := filepath.Join(t.TempDir(), "decisions.log")
	f, err := decisionlog.Open(decisionlog.Config{Path: path, MaxBytes: 4096, MaxBackups: 1000})
	if err != nil {
		t.Fatal(err)
	}
	log := zap.New(decisionlog.NewCore(f, zapcore.InfoLevel))
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 100 {
				log.Info("decision", zap.Int("writer", w), zap.Int("seq", i))
			}
		})
	}
	wg.Wait()
	f.Close()
	total := len(lines(t, path))
	for _, b := range f.Backups() {
		total += len(lines(t, b))
	}
	if total != 800 {
		t.Errorf("%d lines in all files, want 800", total)
	}
}

func TestOpenInvalid(t *testing.T) {
	for _, cfg := range []decisionlog.Config{
		{},
		{Path: filepath.Join(t.TempDir(), "x.log"), MaxBytes: -1},
		{Path: filepath.Join(t.TempDir(), "missing", "x.log")},
	} {
		if _, err := decisionlog.Open(cfg); err == nil {
			t.Errorf("Open(%+v) = nil error", cfg)
		}
	}
}
