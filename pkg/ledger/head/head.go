// Package head is the published state of ledgerfence's embedded ledger: a
// head (the height of its hash chain and the hash of the last entry), signed
// with the Ed25519 key of the filterd that keeps the ledger, and a witness
// that remembers the last signed head it saw and refuses a ledger whose chain
// does not extend it, as a Certificate Transparency or Rekor client refuses
// a log that forked or went back.
//
// A hash chain commits to everything before its last entry, so a head names
// one history: a chain that contains the head (height, hash) has exactly
// that history up to that height. A chain rewritten with recomputed hashes,
// or rolled back past the height, does not contain it, and whoever kept the
// head finds out.
//
//	s := signer.Sign(head.Head{Height: 42, Hash: "9f2c…"}, time.Now())
//	err := s.Verify(signer.PublicKey())
//
//	w, err := head.NewWitness("/var/lib/agent/head.json", nil)
//	signed, err := w.Check(ctx, client) // client serves its signed head and the hash at any height
//
// Errors: a head that cannot be trusted matches ErrRefused and one of
// ErrBadSignature, ErrKeyChanged, ErrRollback or ErrFork; a ledger that
// serves no signed heads at all gives ErrNoHeads.
package head

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ledgerfence/ledgerfence/pkg/filter"
)

// HashSize is the length of a head's hash in bytes (SHA-256).
const HashSize = sha256.Size

// ZeroHash is the hash of the head of an empty ledger, in hex: the previous
// hash of its first entry.
var ZeroHash = strings.Repeat("0", 2*HashSize)

// Errors.
var (
	// ErrRefused is matched by every head the witness does not accept.
	ErrRefused = errors.New("head: refused")
	// ErrBadSignature: the signature does not verify under the key.
	ErrBadSignature = errors.New("head: the signature does not verify")
	// ErrKeyChanged: the head is signed with another key than the one
	// remembered or given.
	ErrKeyChanged = errors.New("head: signed with another key")
	// ErrRollback: the ledger is shorter than a head seen before.
	ErrRollback = errors.New("head: the ledger went back past a head seen before")
	// ErrFork: the ledger holds another entry at the height of a head seen
	// before: its history was rewritten.
	ErrFork = errors.New("head: the ledger's history differs from a head seen before")
	// ErrNoHeads: the ledger serves no signed heads (a filterd on Fabric).
	ErrNoHeads = errors.New("head: the ledger serves no signed heads")
	// ErrMalformed: a head, a key or a state file that cannot be read.
	ErrMalformed = errors.New("head: malformed")
)

// refused makes an error that matches ErrRefused and kind.
func refused(kind error, format string, args ...any) error {
	return fmt.Errorf("%w: %w: %s", ErrRefused, kind, fmt.Sprintf(format, args...))
}

// Head is a ledger's state after a write: the number of its last entry and
// that entry's hash (hex SHA-256; ZeroHash at height 0).
type Head struct {
	Height uint64 `json:"height"`
	Hash   string `json:"hash"`
}

// String is the form Parse reads: HEIGHT:HASH.
func (h Head) String() string { return strconv.FormatUint(h.Height, 10) + ":" + h.Hash }

// Validate checks that Hash is 64 lower-case hex digits, and ZeroHash at
// height 0.
func (h Head) Validate() error {
	if len(h.Hash) != 2*HashSize || strings.ToLower(h.Hash) != h.Hash {
		return fmt.Errorf("%w: hash %q is not %d lower-case hex digits", ErrMalformed, filter.Clip(h.Hash), 2*HashSize)
	}
	if _, err := hex.DecodeString(h.Hash); err != nil {
		return fmt.Errorf("%w: hash %q is not hex", ErrMalformed, filter.Clip(h.Hash))
	}
	if h.Height == 0 && h.Hash != ZeroHash {
		return fmt.Errorf("%w: the head at height 0 has the zero hash", ErrMalformed)
	}
	return nil
}

// Parse reads HEIGHT:HASH (the hash in hex, either case).
func Parse(s string) (Head, error) {
	hs, hash, ok := strings.Cut(strings.TrimSpace(s), ":")
	if !ok {
		return Head{}, fmt.Errorf("%w: %q is not HEIGHT:HASH", ErrMalformed, filter.Clip(s))
	}
	n, err := strconv.ParseUint(hs, 10, 64)
	if err != nil {
		return Head{}, fmt.Errorf("%w: height %q is not a number", ErrMalformed, filter.Clip(hs))
	}
	h := Head{Height: n, Hash: strings.ToLower(hash)}
	return h, h.Validate()
}

// Signed is a head signed by the filterd that keeps the ledger, as served at
// GET /v1/ledger/head and published on NATS.
type Signed struct {
	Head
	// Time is when it was signed (the head may be older).
	Time time.Time `json:"time"`
	// KeyID names the key: the first 16 hex digits of the SHA-256 of the
	// public key.
	KeyID string `json:"key_id"`
	// PublicKey is the Ed25519 public key, base64 (standard, padded).
	PublicKey string `json:"public_key"`
	// Signature is the Ed25519 signature of the head's message, base64.
	Signature string `json:"signature"`
}

// signedDomain starts every signed message, so that a head's signature is
// never mistaken for the signature of anything else.
const signedDomain = "ledgerfence/embedded/head/v1\n"

// message is what is signed: the domain, the height (8 bytes, big endian),
// the hash (32 bytes) and the time (Unix nanoseconds, 8 bytes, big endian).
func message(h Head, t time.Time) ([]byte, error) {
	if err := h.Validate(); err != nil {
		return nil, err
	}
	raw, _ := hex.DecodeString(h.Hash)
	m := make([]byte, 0, len(signedDomain)+8+HashSize+8)
	m = append(m, signedDomain...)
	m = binary.BigEndian.AppendUint64(m, h.Height)
	m = append(m, raw...)
	return binary.BigEndian.AppendUint64(m, uint64(t.UnixNano())), nil
}

// KeyID is the id of an Ed25519 public key: the first 16 hex digits of its
// SHA-256.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}

// Key returns the public key the head says it is signed with.
func (s Signed) Key() (ed25519.PublicKey, error) {
	return ParsePublicKey(s.PublicKey)
}

// Verify checks the signature under pub, which must also be the key the head
// names. Errors match ErrRefused with ErrBadSignature or ErrKeyChanged, or
// ErrMalformed.
func (s Signed) Verify(pub ed25519.PublicKey) error {
	if len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("%w: the public key is not an Ed25519 key", ErrMalformed)
	}
	named, err := s.Key()
	if err != nil {
		return err
	}
	if !bytes.Equal(named, pub) {
		return refused(ErrKeyChanged, "the head names key %s, the expected key is %s", KeyID(named), KeyID(pub))
	}
	if s.KeyID != KeyID(pub) {
		return refused(ErrBadSignature, "key id %q does not name the key %s", filter.Clip(s.KeyID), KeyID(pub))
	}
	sig, err := base64.StdEncoding.DecodeString(s.Signature)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return refused(ErrBadSignature, "the signature is not %d bytes of base64", ed25519.SignatureSize)
	}
	msg, err := message(s.Head, s.Time)
	if err != nil {
		return err
	}
	if !ed25519.Verify(pub, msg, sig) {
		return refused(ErrBadSignature, "head %s signed at %s by key %s", s.Head, s.Time.UTC().Format(time.RFC3339Nano), s.KeyID)
	}
	return nil
}

// ParseSigned reads a signed head as JSON (GET /v1/ledger/head's answer, or
// a file holding it). It does not check the signature.
func ParseSigned(data []byte) (Signed, error) {
	var s Signed
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&s); err != nil {
		return Signed{}, fmt.Errorf("%w: not a signed head: %v", ErrMalformed, err)
	}
	if err := s.Head.Validate(); err != nil {
		return Signed{}, err
	}
	if s.Signature == "" || s.PublicKey == "" {
		return Signed{}, fmt.Errorf("%w: the head carries no signature or no public key", ErrMalformed)
	}
	return s, nil
}

// WriteFile writes data to path atomically: to a temporary file in the same
// directory, synced, renamed over path, and the directory synced, so that
// path holds either its old or its new content, whole, even after a crash.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := f.Chmod(perm); err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	ok = true
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
