package head_test

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ledgerfence/ledgerfence/pkg/ledger/head"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func hashOf(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func signer(t testing.TB) *head.Signer {
	t.Helper()
	s, _, err := head.LoadOrCreateSigner(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestParse(t *testing.T) {
	h := hashOf("x")
	for _, tc := range []struct {
		in      string
		want    head.Head
		wantErr bool
	}{
		{in: "7:" + h, want: head.Head{Height: 7, Hash: h}},
		{in: " 7:" + strings.ToUpper(h) + "\n", want: head.Head{Height: 7, Hash: h}},
		{in: "0:" + head.ZeroHash, want: head.Head{Hash: head.ZeroHash}},
		{in: "0:" + h, wantErr: true},
		{in: "7", wantErr: true},
		{in: "x:" + h, wantErr: true},
		{in: "7:" + h[:10], wantErr: true},
		{in: "7:" + strings.Repeat("g", 64), wantErr: true},
	} {
		got, err := head.Parse(tc.in)
		if tc.wantErr {
			if !errors.Is(err, head.ErrMalformed) {
				t.Errorf("Parse(%q) = %v, %v; want ErrMalformed", tc.in, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("Parse(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
		if back, _ := head.Parse(got.String()); back != got {
			t.Errorf("Parse(String()) = %v, want %v", back, got)
		}
	}
}

func TestSignVerify(t *testing.T) {
	s := signer(t)
	sh, err := s.Sign(head.Head{Height: 3, Hash: hashOf("3")}, t0)
	if err != nil {
		t.Fatal(err)
	}
	if err := sh.Verify(s.PublicKey()); err != nil {
		t.Fatalf("Verify of a fresh signature: %v", err)
	}
	// Through JSON, as served and published.
	data, _ := json.Marshal(sh)
	back, err := head.ParseSigned(data)
	if err != nil || back.Verify(s.PublicKey()) != nil {
		t.Fatalf("after JSON: %v, %v", err, back.Verify(s.PublicKey()))
	}

	other := signer(t)
	sig, _ := base64.StdEncoding.DecodeString(sh.Signature)
	sig[5] ^= 1
	for _, tc := range []struct {
		name string
		edit func(s *head.Signed)
		key  ed25519.PublicKey
		want error
	}{
		{"height changed", func(s *head.Signed) { s.Height++ }, s.PublicKey(), head.ErrBadSignature},
		{"hash changed", func(s *head.Signed) { s.Hash = hashOf("other") }, s.PublicKey(), head.ErrBadSignature},
		{"time changed", func(s *head.Signed) { s.Time = s.Time.Add(time.Nanosecond) }, s.PublicKey(), head.ErrBadSignature},
		{"signature flipped", func(s *head.Signed) { s.Signature = base64.StdEncoding.EncodeToString(sig) }, s.PublicKey(), head.ErrBadSignature},
		{"signature not base64", func(s *head.Signed) { s.Signature = "!!" }, s.PublicKey(), head.ErrBadSignature},
		{"key id wrong", func(s *head.Signed) { s.KeyID = "0000000000000000" }, s.PublicKey(), head.ErrBadSignature},
		{"another key expected", func(s *head.Signed) {}, other.PublicKey(), head.ErrKeyChanged},
		{"signed by another key, naming it", func(s *head.Signed) {
			o, _ := other.Sign(s.Head, s.Time)
			s.Signature = o.Signature
		}, s.PublicKey(), head.ErrBadSignature},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := sh
			tc.edit(&c)
			err := c.Verify(tc.key)
			if !errors.Is(err, tc.want) || !errors.Is(err, head.ErrRefused) {
				t.Errorf("Verify = %v, want %v and ErrRefused", err, tc.want)
			}
		})
	}
}

func TestLoadOrCreateSigner(t *testing.T) {
	dir := t.TempDir()
	a, created, err := head.LoadOrCreateSigner(dir)
	if err != nil || !created {
		t.Fatalf("first start: %v, created %v", err, created)
	}
	fi, err := os.Stat(filepath.Join(dir, head.KeyFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, mode %v", err, fi.Mode())
	}
	pub, err := head.ReadPublicKeyFile(filepath.Join(dir, head.PublicKeyFile))
	if err != nil || !pub.Equal(a.PublicKey()) {
		t.Fatalf("public key file: %v", err)
	}
	b, created, err := head.LoadOrCreateSigner(dir)
	if err != nil || created || b.KeyID() != a.KeyID() {
		t.Fatalf("second start: %v, created %v, key %s then %s", err, created, a.KeyID(), b.KeyID())
	}
	if got, err := head.LoadPublicKey(a.PublicKeyBase64()); err != nil || !got.Equal(a.PublicKey()) {
		t.Errorf("LoadPublicKey(base64) = %v", err)
	}
	if err := os.Chmod(filepath.Join(dir, head.KeyFile), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := head.LoadOrCreateSigner(dir); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("a key others may read: %v", err)
	}
}

// chain is a fake ledger: the hash of entry i is chain[i-1].
type chain struct {
	s      *head.Signer
	hashes []string
	noHead bool
	tamper func(*head.Signed)
}

func (c *chain) grow(n int, tag string) {
	for range n {
		c.hashes = append(c.hashes, hashOf(fmt.Sprint(tag, len(c.hashes))))
	}
}

func (c *chain) SignedHead(context.Context) (head.Signed, error) {
	if c.noHead {
		return head.Signed{}, head.ErrNoHeads
	}
	h := head.Head{Hash: head.ZeroHash}
	if n := len(c.hashes); n > 0 {
		h = head.Head{Height: uint64(n), Hash: c.hashes[n-1]}
	}
	s, err := c.s.Sign(h, t0)
	if c.tamper != nil {
		c.tamper(&s)
	}
	return s, err
}

func (c *chain) HashAt(_ context.Context, n uint64) (string, error) {
	if n == 0 {
		return head.ZeroHash, nil
	}
	if n > uint64(len(c.hashes)) {
		return "", errors.New("no such entry")
	}
	return c.hashes[n-1], nil
}

func TestWitness(t *testing.T) {
	ctx := context.Background()
	good := func(t *testing.T) (*chain, string) {
		c := &chain{s: signer(t)}
		c.grow(5, "a")
		return c, filepath.Join(t.TempDir(), "state", "head.json")
	}
	seen := func(t *testing.T, c *chain, path string) {
		t.Helper()
		w, err := head.NewWitness(path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Check(ctx, c); err != nil {
			t.Fatalf("first check: %v", err)
		}
	}
	for _, tc := range []struct {
		name   string
		change func(c *chain)
		want   error // nil: accepted
	}{
		{"unchanged", func(c *chain) {}, nil},
		{"grown", func(c *chain) { c.grow(3, "a") }, nil},
		{"rolled back", func(c *chain) { c.hashes = c.hashes[:4] }, head.ErrRollback},
		{"rolled back and regrown", func(c *chain) { c.hashes = c.hashes[:4]; c.grow(3, "b") }, head.ErrFork},
		{"rewritten at the same height", func(c *chain) { c.hashes = nil; c.grow(5, "b") }, head.ErrFork},
		{"rewritten and longer", func(c *chain) { c.hashes = nil; c.grow(9, "b") }, head.ErrFork},
		{"another key", func(c *chain) { c.s = signer(t) }, head.ErrKeyChanged},
		{"bad signature", func(c *chain) {
			c.tamper = func(s *head.Signed) { s.Signature = base64.StdEncoding.EncodeToString(make([]byte, 64)) }
		}, head.ErrBadSignature},
		{"no heads any more", func(c *chain) { c.noHead = true }, head.ErrNoHeads},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, path := good(t)
			seen(t, c, path)
			tc.change(c)
			// A new process, reading the state file.
			w, err := head.NewWitness(path, nil)
			if err != nil {
				t.Fatal(err)
			}
			before, _ := os.ReadFile(path)
			s, err := w.Check(ctx, c)
			if tc.want == nil {
				if err != nil || s.Height != uint64(len(c.hashes)) {
					t.Fatalf("Check = %v at %d, want accepted at %d", err, s.Height, len(c.hashes))
				}
				if last, _ := w.Last(); last.Head != s.Head {
					t.Errorf("remembered %v, want %v", last.Head, s.Head)
				}
				return
			}
			if !errors.Is(err, tc.want) || !errors.Is(err, head.ErrRefused) {
				t.Fatalf("Check = %v, want %v and ErrRefused", err, tc.want)
			}
			if after, _ := os.ReadFile(path); string(after) != string(before) {
				t.Error("a refused head changed the state file")
			}
		})
	}

	t.Run("a key given pins it from the first head", func(t *testing.T) {
		c, _ := good(t)
		w, err := head.NewWitness("", signer(t).PublicKey())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Check(ctx, c); !errors.Is(err, head.ErrKeyChanged) {
			t.Errorf("Check = %v, want ErrKeyChanged", err)
		}
	})
	t.Run("a ledger never seen that signs nothing", func(t *testing.T) {
		w, _ := head.NewWitness("", nil)
		if _, err := w.Check(ctx, &chain{noHead: true}); !errors.Is(err, head.ErrNoHeads) || errors.Is(err, head.ErrRefused) {
			t.Errorf("Check = %v, want ErrNoHeads alone", err)
		}
	})
	t.Run("a damaged state file is not replaced", func(t *testing.T) {
		c, path := good(t)
		seen(t, c, path)
		data, _ := os.ReadFile(path)
		if err := os.WriteFile(path, []byte(strings.Replace(string(data), `"height":5`, `"height":4`, 1)), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := head.NewWitness(path, nil); !errors.Is(err, head.ErrBadSignature) {
			t.Errorf("NewWitness over an edited state = %v, want ErrBadSignature", err)
		}
		if err := os.WriteFile(path, []byte("{"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := head.NewWitness(path, nil); !errors.Is(err, head.ErrMalformed) {
			t.Errorf("NewWitness over a broken state = %v, want ErrMalformed", err)
		}
	})
}
