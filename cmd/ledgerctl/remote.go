package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"

	"github.com/ledgerfence/ledgerfence/pkg/ledger"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/backend"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/head"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/remote"
)

// openRemote is a client of the filterd at o.Ledger, which serves the
// embedded ledger. Its signed head is checked first against the last one
// seen (checkHead): a ledger that forked or went back is refused.
func openRemote(ctx context.Context, o ledgerOpts) (ledger.Ledger, error) {
	l, err := backend.Open(ctx, o.Settings, backend.Options{})
	if err != nil {
		return nil, err
	}
	c := l.(*remote.Client)
	if _, err := checkHead(ctx, c, o); err != nil && !errors.Is(err, head.ErrNoHeads) {
		c.Close()
		return nil, err
	}
	return c, nil
}

// checkHead checks the ledger's signed head with a witness that remembers
// the last one in o.HeadState. Errors: head.ErrNoHeads from a filterd that
// signs none and was never seen signing (a Fabric backend); refusals
// (head.ErrRefused) say what was seen and where it is kept.
func checkHead(ctx context.Context, src head.Source, o ledgerOpts) (head.Signed, error) {
	var key []byte
	if o.HeadKey != "" {
		k, err := head.LoadPublicKey(o.HeadKey)
		if err != nil {
			return head.Signed{}, usagef("--head-key: %v", err)
		}
		key = k
	}
	state := o.HeadState
	if state == "none" {
		state = ""
	}
	w, err := head.NewWitness(state, key)
	if err != nil {
		return head.Signed{}, fmt.Errorf("the ledger at %s is refused: %w", o.Ledger, err)
	}
	s, err := w.Check(ctx, src)
	if errors.Is(err, head.ErrRefused) {
		where := "the last head seen is not kept (--head-state none)"
		if state != "" {
			where = "the last head seen is kept in " + state + "; if the ledger was replaced on purpose, remove that file"
		}
		return head.Signed{}, fmt.Errorf("the ledger at %s is refused: %w (%s)", o.Ledger, err, where)
	}
	return s, err
}

// defaultHeadState is where the last signed head of the filterd at
// ledgerURL is kept: one file per URL under $XDG_STATE_HOME (or
// ~/.local/state)/ledgerfence/heads; "" when neither is known, or the ledger
// is not a filterd.
func defaultHeadState(getenv func(string) string, ledgerURL string) string {
	u, err := url.Parse(ledgerURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return ""
	}
	base := getenv("XDG_STATE_HOME")
	if base == "" {
		home := getenv("HOME")
		if home == "" {
			return ""
		}
		base = filepath.Join(home, ".local", "state")
	}
	sum := sha256.Sum256([]byte(strings.TrimSuffix(ledgerURL, "/")))
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' {
			return r
		}
		return '_'
	}, u.Host)
	return filepath.Join(base, "ledgerfence", "heads", name+"-"+hex.EncodeToString(sum[:4])+".json")
}

// head prints the signed head of the filterd at --ledger, checked against
// the last one seen.
func (a *app) head(ctx context.Context, args []string) error {
	fs := a.newFlags("head")
	c := a.commonFlags(fs)
	pos, err := a.parse(fs, args)
	if err != nil {
		return flagErr(err)
	}
	if len(pos) > 0 {
		return usagef("head takes flags only: head --ledger URL")
	}
	if c.output != "table" && c.output != "json" {
		return usagef("-o %q: want table or json", c.output)
	}
	if !strings.HasPrefix(c.Ledger, "http://") && !strings.HasPrefix(c.Ledger, "https://") {
		return usagef("head needs --ledger URL, a filterd serving the embedded ledger (for the file itself: verify --data DIR)")
	}
	if c.HeadState == "" {
		c.HeadState = defaultHeadState(a.getenv, c.Ledger)
	}
	cl, err := remote.New(c.Ledger, remote.WithToken(c.Token))
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := a.callCtx(ctx, c)
	defer cancel()
	s, err := checkHead(ctx, cl, c.ledgerOpts)
	if err != nil {
		return err
	}
	if c.output == "json" {
		return a.json(s)
	}
	fmt.Fprintf(a.stdout, "head %s\nsigned %s by key %s (%s)\n", s.Head, s.Time.Format("2006-01-02T15:04:05.000Z07:00"), s.KeyID, s.PublicKey)
	return nil
}
