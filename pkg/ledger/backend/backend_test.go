package backend_test

import (
	"context"
	"flag"
	"io"
	"strings"
	"testing"

	"github.com/ledgerfence/ledgerfence/pkg/ledger/backend"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/embedded"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/remote"
)

func TestValidateNamesWhatIsMissing(t *testing.T) {
	all := []string{backend.Remote, backend.Fabric, backend.Embedded}
	for _, tc := range []struct {
		name    string
		s       backend.Settings
		allowed []string
		want    []string
	}{
		{"no ledger", backend.Settings{}, all, []string{"--ledger is required"}},
		{"not a ledger", backend.Settings{Ledger: "ftp://x"}, all, []string{`--ledger "ftp://x"`, "the URL of a filterd"}},
		{"a kind the command does not open", backend.Settings{Ledger: "embedded", Data: "/d"}, []string{backend.Remote, backend.Fabric}, []string{"want the URL of a filterd"}},
		{"embedded without data", backend.Settings{Ledger: "embedded"}, all, []string{"--data"}},
		{"fabric without settings", backend.Settings{Ledger: "fabric"}, all, []string{"--fabric-peer", "--fabric-tls-ca", "--fabric-msp-id", "--fabric-cert", "--fabric-key"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.s.Validate(tc.allowed...)
			for _, w := range tc.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("err = %v, want it to name %q", err, w)
				}
			}
		})
	}
}

// The flags each command defines are the same flags, with the same
// defaults, defined once.
func TestFlagsAreDefinedOnce(t *testing.T) {
	var s backend.Settings
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	s.Flags(fs, "", backend.Remote, backend.Fabric)
	if fs.Lookup("data") != nil || fs.Lookup("token") == nil || fs.Lookup("fabric-peer") == nil {
		t.Error("a command that opens URLs and Fabric got --data, or lacks --token or --fabric-peer")
	}
	if err := fs.Parse([]string{"--ledger", "fabric", "--fabric-peer", "p:1"}); err != nil || s.Fabric.Peer != "p:1" || s.Fabric.Channel == "" {
		t.Errorf("parsed %+v, %v", s, err)
	}
}

func TestOpenEachKind(t *testing.T) {
	dir := t.TempDir()
	l, err := backend.Open(context.Background(), backend.Settings{Ledger: backend.Embedded, Data: dir + "/new"}, backend.Options{CreateData: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := l.(*embedded.Ledger); !ok {
		t.Errorf("embedded: %T", l)
	}
	l.Close()
	if _, err := backend.Open(context.Background(), backend.Settings{Ledger: backend.Embedded, Data: dir + "/absent"}, backend.Options{}); err == nil {
		t.Error("an embedded ledger in a missing directory opened without CreateData")
	}
	r, err := backend.Open(context.Background(), backend.Settings{Ledger: "http://127.0.0.1:1"}, backend.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := r.(*remote.Client); !ok {
		t.Errorf("URL: %T", r)
	}
	r.Close()
}
