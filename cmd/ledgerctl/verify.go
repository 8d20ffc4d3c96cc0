package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/ledgerfence/ledgerfence/pkg/ledger/embedded"
)

// verify checks an embedded ledger's hash chain, reading its file directly.
func (a *app) verify(ctx context.Context, args []string) error {
	fs := a.newFlags("verify")
	c := a.commonFlags(fs)
	pos, err := parse(fs, args)
	if err != nil {
		return flagErr(err)
	}
	if len(pos) > 0 {
		return usagef("verify takes flags only: verify --data DIR")
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
	l, err := embedded.Open(path)
	if err != nil {
		return fmt.Errorf("%w (stop the filterd that holds it, or verify a copy of the file)", err)
	}
	defer l.Close()
	rep, verr := l.Verify(ctx)
	if verr != nil && !errors.Is(verr, embedded.ErrTampered) {
		return verr
	}
	if c.output == "json" {
		if err := a.json(rep); err != nil {
			return err
		}
	} else if rep.OK {
		fmt.Fprintf(a.stdout, "ok: %d entries, %d hosts, %d regulations, head %s\n", rep.Height, rep.Hosts, rep.Regulations, rep.Head)
	} else {
		fmt.Fprintf(a.stdout, "BROKEN at entry %d: %s\n", rep.BrokenSeq, rep.Problem)
	}
	if !rep.OK {
		return &deniedError{fmt.Sprintf("%s does not match its hash chain: %s", path, rep.Problem)}
	}
	return nil
}
