// Package tokens keeps the writer tokens of an embedded ledger: one bearer
// token per identity, which names the identity's role (package access) and,
// for a host agent, the one host it may write. filterd authenticates REST
// writes with them and records the identity and role of the token in the
// ledger's history; the embedded ledger applies package access's rules to
// it, as the chaincode applies them to a Fabric certificate.
//
// The tokens live in a JSON file of the ledger's data directory (FileName),
// which ledgerctl changes (Issue, Revoke) and filterd reads (Store), again
// whenever it changes, so that a token issued or revoked takes effect with
// the next request, without a restart. The file keeps no token: only the
// SHA-256 of each, which suffices for a secret of 256 random bits (no one can
// find a token from its hash, so no slow hash is needed). A token is shown
// once, by Issue.
//
//	secret, tok, err := tokens.Issue(path, access.Identity{ID: "hostagent-hm1", Role: access.RoleHostAgent, Host: "hm1"}, time.Now())
//	store, err := tokens.Open(path)
//	who, err := store.Authenticate(secret) // access.Identity{ID: "hostagent-hm1", Role: "hostagent", Host: "hm1"}
package tokens

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/access"
)

// FileName is the name of the tokens file within a data directory.
const FileName = "tokens.json"

// Prefix starts every token, so that a token found where it should not be
// (a log, a repository) is recognised.
const Prefix = "lfw_"

// MaxIDLen bounds an identity's name.
const MaxIDLen = 128

// formatVersion is the file's layout; other versions are refused.
const formatVersion = 1

// Errors; match with errors.Is.
var (
	// ErrInvalid: an identity name, role or host that cannot be issued.
	ErrInvalid = errors.New("tokens: invalid")
	// ErrExists: the identity already holds a token that is not revoked.
	ErrExists = errors.New("tokens: the identity already holds a token")
	// ErrNoIdentity: no token was issued to the identity, or all are revoked.
	ErrNoIdentity = errors.New("tokens: no such identity")
	// ErrUnknown: a token that was never issued.
	ErrUnknown = errors.New("tokens: unknown token")
	// ErrRevoked: a token that was revoked.
	ErrRevoked = errors.New("tokens: revoked token")
	// ErrFile: the file cannot be read, is not a tokens file, or may be
	// written by others; no token is accepted until it is mended.
	ErrFile = errors.New("tokens: the tokens file is unusable")
)

// reserved are names of writers that hold no token: the writers recorded
// for filterd's admin token (api.DefaultWriter) and by the embedded ledger
// when a write names none (embedded.DefaultWriterID). A token of that name
// would own their regulations.
var reserved = []string{"filterd-admin", "embedded"}

// Token is what the file keeps of one token: never the token itself.
type Token struct {
	ID   string `json:"id"`
	Role string `json:"role"`
	// Host is the host a host agent's token may write.
	Host string `json:"host,omitempty"`
	// SHA256 is the hex SHA-256 of the token.
	SHA256  string     `json:"sha256"`
	Issued  time.Time  `json:"issued"`
	Revoked *time.Time `json:"revoked,omitempty"`
}

// Identity is the token's identity as the access rules see it (MSP "": the
// embedded ledger's one organisation).
func (t Token) Identity() access.Identity {
	return access.Identity{ID: t.ID, Role: t.Role, Host: t.Host}
}

// file is the tokens file's JSON.
type file struct {
	Version int     `json:"version"`
	Tokens  []Token `json:"tokens"`
}

// DefaultID is the name a token of role for host gets when none is given:
// hostagent-<host> for a host agent, none for the other roles.
func DefaultID(role, host string) string {
	if role == access.RoleHostAgent && host != "" && len("hostagent-"+host) <= MaxIDLen {
		return "hostagent-" + host
	}
	return ""
}

// validate checks what Issue is asked to issue.
func validate(who access.Identity) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
	}
	if who.MSP != "" {
		return bad("the embedded ledger has one organisation: a token names no MSP")
	}
	if who.ID == "" || len(who.ID) > MaxIDLen {
		return bad("an identity's name has 1 to %d characters", MaxIDLen)
	}
	for i := 0; i < len(who.ID); i++ {
		c := who.ID[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-' || c == '@') {
			return bad("identity %q has a character outside [A-Za-z0-9._@-]", filter.Clip(who.ID))
		}
	}
	if slices.Contains(reserved, who.ID) {
		return bad("%q is the name of the operator's own writes; choose another", who.ID)
	}
	if !access.KnownRole(who.Role) {
		return bad("role %q: want one of %s", filter.Clip(who.Role), strings.Join(access.Roles(), ", "))
	}
	switch {
	case who.Role == access.RoleHostAgent && who.Host == "":
		return bad("a %s token names the one host it may write", access.RoleHostAgent)
	case who.Role != access.RoleHostAgent && who.Host != "":
		return bad("only a %s token names a host; a %s writes no host of its own", access.RoleHostAgent, who.Role)
	}
	if who.Host != "" {
		if err := filter.ValidateHostName(who.Host); err != nil {
			return fmt.Errorf("%w: %v", ErrInvalid, err)
		}
	}
	return nil
}

// newSecret is a fresh token: Prefix and 256 random bits.
func newSecret() string {
	b := make([]byte, 32)
	rand.Read(b) //nolint:errcheck // crypto/rand.Read does not fail
	return Prefix + base64.RawURLEncoding.EncodeToString(b)
}

func digest(secret string) [sha256.Size]byte { return sha256.Sum256([]byte(secret)) }

// Issue makes a token for who (MSP "", an ID, a known role and, for a host
// agent, its host) in the tokens file at path, creating the file, and
// returns the token (shown once: the file keeps only its hash). An identity
// holds one token at a time: Issue fails with ErrExists while its last one
// is not revoked. Errors: ErrInvalid, ErrExists, ErrFile, or the file's
// I/O error.
func Issue(path string, who access.Identity, now time.Time) (string, Token, error) {
	if err := validate(who); err != nil {
		return "", Token{}, err
	}
	var secret string
	var tok Token
	err := change(path, func(f *file) error {
		for _, t := range f.Tokens {
			if t.ID == who.ID && t.Revoked == nil {
				return fmt.Errorf("%w: %s (issued %s); revoke it first", ErrExists, who.ID, t.Issued.Format(time.RFC3339))
			}
		}
		secret = newSecret()
		sum := digest(secret)
		tok = Token{ID: who.ID, Role: who.Role, Host: who.Host, SHA256: hex.EncodeToString(sum[:]), Issued: now.UTC().Round(0)}
		f.Tokens = append(f.Tokens, tok)
		return nil
	})
	if err != nil {
		return "", Token{}, err
	}
	return secret, tok, nil
}

// Revoke revokes the token of identity id in the file at path: filterd
// refuses it from its next request on. Errors: ErrNoIdentity, ErrFile, or
// the file's I/O error.
func Revoke(path, id string, now time.Time) (Token, error) {
	var tok Token
	err := change(path, func(f *file) error {
		for i := len(f.Tokens) - 1; i >= 0; i-- {
			if f.Tokens[i].ID == id && f.Tokens[i].Revoked == nil {
				at := now.UTC().Round(0)
				f.Tokens[i].Revoked = &at
				tok = f.Tokens[i]
				return nil
			}
		}
		return fmt.Errorf("%w: no token of %q is in force", ErrNoIdentity, filter.Clip(id))
	})
	return tok, err
}

// List returns every token of the file at path, revoked ones included, in
// the order they were issued; none when there is no file.
func List(path string) ([]Token, error) {
	f, _, err := read(path)
	if err != nil {
		return nil, err
	}
	return f.Tokens, nil
}

// read reads and checks the file; a missing file is an empty one.
func read(path string) (file, os.FileInfo, error) {
	fd, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return file{Version: formatVersion}, nil, nil
	}
	if err != nil {
		return file{}, nil, fmt.Errorf("%w: %v", ErrFile, err)
	}
	defer fd.Close()
	fi, err := fd.Stat()
	if err != nil {
		return file{}, nil, fmt.Errorf("%w: %v", ErrFile, err)
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return file{}, fi, fmt.Errorf("%w: %s may be written by others (mode %04o): whoever can write it can make tokens; chmod go-w it", ErrFile, path, fi.Mode().Perm())
	}
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(fd); err != nil {
		return file{}, fi, fmt.Errorf("%w: %v", ErrFile, err)
	}
	var f file
	dec := json.NewDecoder(&buf)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return file{}, fi, fmt.Errorf("%w: %s is not a tokens file: %v", ErrFile, path, err)
	}
	if f.Version != formatVersion {
		return file{}, fi, fmt.Errorf("%w: %s has format %d, want %d", ErrFile, path, f.Version, formatVersion)
	}
	for _, t := range f.Tokens {
		if b, err := hex.DecodeString(t.SHA256); err != nil || len(b) != sha256.Size {
			return file{}, fi, fmt.Errorf("%w: %s: the token of %q has no SHA-256", ErrFile, path, filter.Clip(t.ID))
		}
	}
	return f, fi, nil
}

// change applies edit to the file at path under its lock and writes it
// back atomically (a synced temporary file renamed over it), mode 0600.
// Run as root, the new file belongs to the owner of its directory (filterd's
// user), so that filterd can read it.
func change(path string, edit func(f *file) error) error {
	unlock, err := lock(path + ".lock")
	if err != nil {
		return fmt.Errorf("lock %s: %w", path, err)
	}
	defer unlock()
	f, _, err := read(path)
	if err != nil {
		return err
	}
	if err := edit(&f); err != nil {
		return err
	}
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	return writeFile(path, append(data, '\n'))
}

func writeFile(path string, data []byte) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	chownLike(tmp, dir)
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Store authenticates tokens against a tokens file, read again whenever it
// changes (another inode, size or modification time), so that a token
// issued or revoked counts from the next request. It is safe for concurrent
// use.
type Store struct {
	path string

	mu     sync.Mutex
	fi     os.FileInfo // of the file last read; nil: none was there
	byHash map[[sha256.Size]byte]Token
	err    error // why the file last read is unusable
}

// Open reads the tokens file at path (none there: no token is accepted
// until one is issued). Errors: ErrFile.
func Open(path string) (*Store, error) {
	s := &Store{path: path}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.load(); err != nil {
		return nil, err
	}
	return s, nil
}

// Path is the tokens file.
func (s *Store) Path() string { return s.path }

// load reads the file into the store; on error no token is accepted.
func (s *Store) load() error {
	f, fi, err := read(s.path)
	s.fi = fi
	if err != nil {
		s.byHash, s.err = nil, err
		return err
	}
	by := make(map[[sha256.Size]byte]Token, len(f.Tokens))
	for _, t := range f.Tokens {
		var h [sha256.Size]byte
		hex.Decode(h[:], []byte(t.SHA256)) //nolint:errcheck // read checked it
		by[h] = t
	}
	s.byHash, s.err = by, nil
	return nil
}

// fresh reloads the file when it changed since it was read last.
func (s *Store) fresh() error {
	fi, err := os.Stat(s.path)
	switch {
	case errors.Is(err, os.ErrNotExist) && s.fi == nil && s.err == nil:
		return nil
	case err == nil && s.fi != nil && os.SameFile(fi, s.fi) && fi.Size() == s.fi.Size() && fi.ModTime().Equal(s.fi.ModTime()) && fi.Mode() == s.fi.Mode():
		return s.err
	}
	return s.load()
}

// Authenticate returns the identity whose token secret is. The token's hash
// is looked up, then compared in constant time (a lookup by hash tells an
// attacker nothing of the tokens: finding a token with a given hash is out
// of reach). Errors: ErrUnknown, ErrRevoked (with the identity's name),
// ErrFile (the file cannot be used: no token is accepted).
func (s *Store) Authenticate(secret string) (access.Identity, error) {
	sum := digest(secret)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.fresh(); err != nil {
		return access.Identity{}, err
	}
	t, ok := s.byHash[sum]
	if !ok {
		return access.Identity{}, ErrUnknown
	}
	var want [sha256.Size]byte
	hex.Decode(want[:], []byte(t.SHA256)) //nolint:errcheck // read checked it
	if subtle.ConstantTimeCompare(sum[:], want[:]) != 1 {
		return access.Identity{}, ErrUnknown
	}
	if t.Revoked != nil {
		return access.Identity{}, fmt.Errorf("%w: the token of %s was revoked at %s", ErrRevoked, t.ID, t.Revoked.Format(time.RFC3339))
	}
	return t.Identity(), nil
}
