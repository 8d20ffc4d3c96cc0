package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ledgerfence/ledgerfence/pkg/ledger/embedded"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/head"
)

// expectFlags are the heads a verified chain must hold.
type expectFlags struct {
	heads    listFlag
	headFile string
	c        *common
}

func (a *app) expectFlags(fs *flag.FlagSet, c *common) *expectFlags {
	e := &expectFlags{c: c}
	fs.Var(&e.heads, "expect-head", "a head HEIGHT:HASH the chain must hold (repeatable)")
	fs.StringVar(&e.headFile, "expect-head-file", "", "a file holding a signed head (GET /v1/ledger/head's JSON, ledgerctl head -o json) the chain must hold; its signature is checked with --head-key or DIR/"+head.PublicKeyFile)
	return e
}

// options reads the expected heads; a signed head must verify under the
// given key or the data directory's.
func (e *expectFlags) options(data string) ([]embedded.VerifyOption, error) {
	var opts []embedded.VerifyOption
	for _, s := range e.heads {
		h, err := head.Parse(s)
		if err != nil {
			return nil, usagef("--expect-head: %v", err)
		}
		opts = append(opts, embedded.ExpectHead(h))
	}
	if e.headFile == "" {
		return opts, nil
	}
	raw, err := os.ReadFile(e.headFile)
	if err != nil {
		return nil, usagef("--expect-head-file: %v", err)
	}
	s, err := head.ParseSigned(raw)
	if err != nil {
		return nil, usagef("--expect-head-file %s: %v", e.headFile, err)
	}
	var key ed25519.PublicKey
	switch {
	case e.c.HeadKey != "":
		if key, err = head.LoadPublicKey(e.c.HeadKey); err != nil {
			return nil, usagef("--head-key: %v", err)
		}
	case data != "":
		if key, err = head.ReadPublicKeyFile(filepath.Join(data, head.PublicKeyFile)); err != nil {
			return nil, usagef("--expect-head-file needs the signer's public key: give --head-key (no %s in %s: %v)", head.PublicKeyFile, data, err)
		}
	default:
		return nil, usagef("--expect-head-file needs the signer's public key: give --head-key")
	}
	if err := s.Verify(key); err != nil {
		return nil, &deniedError{fmt.Sprintf("the signed head in %s is refused: %v", e.headFile, err)}
	}
	return append(opts, embedded.ExpectHead(s.Head)), nil
}

// verify checks an embedded ledger's file, its hash chain and its head file,
// reading them without ever writing to them.
func (a *app) verify(ctx context.Context, args []string) error {
	fs := a.newFlags("verify")
	c := a.commonFlags(fs)
	exp := a.expectFlags(fs, c)
	pos, err := a.parse(fs, args)
	if err != nil {
		return flagErr(err)
	}
	if len(pos) > 0 {
		return usagef("verify takes flags only: verify --data DIR [--expect-head HEIGHT:HASH] [--expect-head-file FILE]")
	}
	if c.Data == "" {
		return usagef("verify needs --data DIR, the embedded ledger's directory (filterd's --data)")
	}
	if c.output != "table" && c.output != "json" {
		return usagef("-o %q: want table or json", c.output)
	}
	path := filepath.Join(c.Data, embedded.FileName)
	if _, err := osStat(path); err != nil {
		return usagef("no embedded ledger at %s", path)
	}
	opts, err := exp.options(c.Data)
	if err != nil {
		return err
	}
	var rep embedded.VerifyReport
	l, err := embedded.OpenReadOnly(path)
	if errors.Is(err, embedded.ErrCorrupt) {
		rep.Problem = err.Error()
	} else if err != nil {
		return fmt.Errorf("%w (stop the filterd that holds it, or verify a copy of the directory)", err)
	} else {
		defer l.Close()
		var verr error
		rep, verr = l.Verify(ctx, opts...)
		if verr != nil && !errors.Is(verr, embedded.ErrTampered) {
			return verr
		}
	}
	if c.output == "json" {
		if err := a.json(rep); err != nil {
			return err
		}
	} else if rep.OK {
		fmt.Fprintf(a.stdout, "ok: %d entries, %d hosts, %d regulations, head %s; %d proposals, %d project bindings, registry version %d\n",
			rep.Height, rep.Hosts, rep.Regulations, rep.ChainHead(), rep.Proposals, rep.Bindings, rep.RegistryVersion)
		if rep.HeadFileBehind > 0 {
			fmt.Fprintf(a.stdout, "note: the head file remembers %s, %d entries behind: filterd stopped before writing it (a crash?); filterd writes it when it opens the ledger\n",
				rep.HeadFile, rep.HeadFileBehind)
		}
	} else {
		fmt.Fprintf(a.stdout, "BROKEN at entry %d: %s\n", rep.BrokenSeq, rep.Problem)
	}
	if !rep.OK {
		return &deniedError{fmt.Sprintf("%s does not verify: %s", path, rep.Problem)}
	}
	return nil
}

// adopt writes the head file of an embedded ledger that has none.
func (a *app) adopt(ctx context.Context, args []string) error {
	fs := a.newFlags("adopt")
	c := a.commonFlags(fs)
	exp := a.expectFlags(fs, c)
	pos, err := a.parse(fs, args)
	if err != nil {
		return flagErr(err)
	}
	if len(pos) > 0 {
		return usagef("adopt takes flags only: adopt --data DIR --expect-head HEIGHT:HASH")
	}
	if c.Data == "" {
		return usagef("adopt needs --data DIR, the embedded ledger's directory (filterd's --data)")
	}
	path := filepath.Join(c.Data, embedded.FileName)
	if _, err := osStat(path); err != nil {
		return usagef("no embedded ledger at %s", path)
	}
	opts, err := exp.options(c.Data)
	if err != nil {
		return err
	}
	rep, err := embedded.Adopt(ctx, path, opts...)
	if errors.Is(err, embedded.ErrTampered) || errors.Is(err, embedded.ErrCorrupt) {
		return &deniedError{fmt.Sprintf("%s is not adopted: %v", path, err)}
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "adopted: %d entries, head %s, head file %s\n", rep.Height, rep.ChainHead(), embedded.HeadFilePath(path))
	if len(opts) == 0 {
		fmt.Fprintln(a.stderr, "ledgerctl: warning: no --expect-head: the head file now trusts the ledger as it is")
	}
	return nil
}
