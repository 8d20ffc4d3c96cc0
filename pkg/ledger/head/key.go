package head

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ledgerfence/ledgerfence/pkg/filter"
)

// Files of a signer in its directory (filterd's data directory).
const (
	// KeyFile holds the Ed25519 private key, PEM (PKCS #8), mode 0600.
	KeyFile = "head.key"
	// PublicKeyFile holds its public key, PEM (PKIX), for ledgerctl verify.
	PublicKeyFile = "head.pub"
)

// Signer signs heads with an Ed25519 key. It is safe for concurrent use.
type Signer struct {
	priv ed25519.PrivateKey
	pub  ed25519.PublicKey
	id   string
	b64  string
}

// NewSigner signs with priv.
func NewSigner(priv ed25519.PrivateKey) *Signer {
	pub := priv.Public().(ed25519.PublicKey)
	return &Signer{priv: priv, pub: pub, id: KeyID(pub), b64: base64.StdEncoding.EncodeToString(pub)}
}

// PublicKey returns the public key.
func (s *Signer) PublicKey() ed25519.PublicKey { return s.pub }

// KeyID returns the key's id.
func (s *Signer) KeyID() string { return s.id }

// PublicKeyBase64 returns the public key as Signed.PublicKey carries it.
func (s *Signer) PublicKeyBase64() string { return s.b64 }

// Sign signs h at time t.
func (s *Signer) Sign(h Head, t time.Time) (Signed, error) {
	t = t.UTC().Round(0)
	msg, err := message(h, t)
	if err != nil {
		return Signed{}, err
	}
	return Signed{
		Head: h, Time: t, KeyID: s.id, PublicKey: s.b64,
		Signature: base64.StdEncoding.EncodeToString(ed25519.Sign(s.priv, msg)),
	}, nil
}

// LoadOrCreateSigner reads the key in dir (KeyFile), or makes one if dir
// holds none, writing KeyFile (0600) and PublicKeyFile. It refuses a key file
// that others than its owner may read or write.
func LoadOrCreateSigner(dir string) (s *Signer, created bool, err error) {
	path := filepath.Join(dir, KeyFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, false, err
		}
		der, err := x509.MarshalPKCS8PrivateKey(priv)
		if err != nil {
			return nil, false, err
		}
		s := NewSigner(priv)
		// The public key first: a directory with a private key always has
		// its public key too.
		if err := WriteFile(filepath.Join(dir, PublicKeyFile), EncodePublicKey(s.pub), 0o644); err != nil {
			return nil, false, fmt.Errorf("writing the head public key: %w", err)
		}
		if err := WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
			return nil, false, fmt.Errorf("writing the head signing key: %w", err)
		}
		return s, true, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("reading the head signing key: %w", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, false, err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, false, fmt.Errorf("the head signing key %s has mode %04o: others may read or change it (chmod 600 it)", path, fi.Mode().Perm())
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, false, fmt.Errorf("%w: %s is not a PEM private key", ErrMalformed, path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, false, fmt.Errorf("%w: %s: %v", ErrMalformed, path, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, false, fmt.Errorf("%w: %s is not an Ed25519 key", ErrMalformed, path)
	}
	s = NewSigner(priv)
	// Keep the public key file in step with the key.
	pubPath := filepath.Join(dir, PublicKeyFile)
	if cur, err := ReadPublicKeyFile(pubPath); err != nil || !cur.Equal(s.pub) {
		if err := WriteFile(pubPath, EncodePublicKey(s.pub), 0o644); err != nil {
			return nil, false, fmt.Errorf("writing the head public key: %w", err)
		}
	}
	return s, false, nil
}

// EncodePublicKey returns pub as PEM (PKIX "PUBLIC KEY").
func EncodePublicKey(pub ed25519.PublicKey) []byte {
	der, _ := x509.MarshalPKIXPublicKey(pub)
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// ParsePublicKey reads an Ed25519 public key given as base64 (the form of
// Signed.PublicKey) or as PEM.
func ParsePublicKey(s string) (ed25519.PublicKey, error) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "-----BEGIN") {
		block, _ := pem.Decode([]byte(s))
		if block == nil || block.Type != "PUBLIC KEY" {
			return nil, fmt.Errorf("%w: not a PEM public key", ErrMalformed)
		}
		k, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		pub, ok := k.(ed25519.PublicKey)
		if !ok {
			return nil, fmt.Errorf("%w: not an Ed25519 public key", ErrMalformed)
		}
		return pub, nil
	}
	raw, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(raw) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: %q is not an Ed25519 public key (base64 of %d bytes, or PEM)", ErrMalformed, filter.Clip(s), ed25519.PublicKeySize)
	}
	return ed25519.PublicKey(raw), nil
}

// ReadPublicKeyFile reads a public key file (PEM or base64).
func ReadPublicKeyFile(path string) (ed25519.PublicKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pub, err := ParsePublicKey(string(data))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return pub, nil
}

// LoadPublicKey reads a key given as base64, as PEM, or as the name of a
// file holding either.
func LoadPublicKey(s string) (ed25519.PublicKey, error) {
	if pub, err := ParsePublicKey(s); err == nil {
		return pub, nil
	}
	return ReadPublicKeyFile(s)
}
