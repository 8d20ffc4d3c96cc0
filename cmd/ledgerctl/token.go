package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ledgerfence/ledgerfence/pkg/ledger/access"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/tokens"
)

// tokenInfo is a token as ledgerctl shows it: never the hash, and the
// token itself only when it was just issued.
type tokenInfo struct {
	ID      string     `json:"id"`
	Role    string     `json:"role"`
	Host    string     `json:"host,omitempty"`
	Issued  time.Time  `json:"issued"`
	Revoked *time.Time `json:"revoked,omitempty"`
	Token   string     `json:"token,omitempty"`
}

func infoOf(t tokens.Token) tokenInfo {
	return tokenInfo{ID: t.ID, Role: t.Role, Host: t.Host, Issued: t.Issued, Revoked: t.Revoked}
}

// token issues, revokes and lists the writer tokens of the embedded ledger
// in --data DIR, filterd's data directory. filterd reads the tokens file
// again when it changes: no restart is needed.
func (a *app) token(_ context.Context, args []string) error {
	if len(args) == 0 {
		return usagef("token: want issue, revoke or list")
	}
	verb, args := args[0], args[1:]
	fs := a.newFlags("token " + verb)
	c := a.commonFlags(fs)
	var role, host, id string
	if verb == "issue" {
		fs.StringVar(&role, "role", "", "the identity's role: "+strings.Join(access.Roles(), ", "))
		fs.StringVar(&host, "host", "", "the one host a hostagent token may write (Nova's name of the compute host)")
		fs.StringVar(&id, "id", "", "the identity's name, recorded as the writer of its writes and the owner of the regulations it creates: [A-Za-z0-9._@-] (default for a hostagent: hostagent-HOST)")
	}
	pos, err := a.parse(fs, args)
	if err != nil {
		return flagErr(err)
	}
	if c.output != "table" && c.output != "json" {
		return usagef("-o %q: want table or json", c.output)
	}
	if c.Data == "" {
		return usagef("token %s needs --data DIR, the embedded ledger's directory (filterd's --data)", verb)
	}
	if fi, err := os.Stat(c.Data); err != nil || !fi.IsDir() {
		return usagef("--data %s: not a directory", c.Data)
	}
	path := filepath.Join(c.Data, tokens.FileName)
	switch verb {
	case "issue":
		if len(pos) > 0 {
			return usagef("token issue takes flags only: token issue --role ROLE [--host HOST] [--id NAME]")
		}
		if id == "" {
			id = tokens.DefaultID(role, host)
		}
		if id == "" {
			return usagef("token issue --role %s needs --id NAME", role)
		}
		secret, tok, err := tokens.Issue(path, access.Identity{ID: id, Role: role, Host: host}, a.now())
		if err != nil {
			return tokenErr(err)
		}
		if c.output == "json" {
			info := infoOf(tok)
			info.Token = secret
			return a.json(info)
		}
		fmt.Fprintln(a.stdout, secret)
		what := tok.Role
		if tok.Host != "" {
			what += " of host " + tok.Host
		}
		fmt.Fprintf(a.stderr, "ledgerctl: issued the token of %s (%s). It is shown this once; %s keeps only its hash. "+
			"Give it to its holder over a safe channel (LEDGERFENCE_TOKEN); filterd accepts it from its next request.\n", tok.ID, what, path)
		return nil
	case "revoke":
		if len(pos) != 1 {
			return usagef("token revoke ID")
		}
		tok, err := tokens.Revoke(path, pos[0], a.now())
		if err != nil {
			return tokenErr(err)
		}
		if c.output == "json" {
			return a.json(infoOf(tok))
		}
		fmt.Fprintf(a.stdout, "revoked the token of %s (%s); filterd refuses it from its next request\n", tok.ID, tok.Role)
		return nil
	case "list":
		if len(pos) > 0 {
			return usagef("token list takes no argument")
		}
		list, err := tokens.List(path)
		if err != nil {
			return tokenErr(err)
		}
		infos := make([]tokenInfo, 0, len(list))
		for _, t := range list {
			infos = append(infos, infoOf(t))
		}
		if c.output == "json" {
			return a.json(infos)
		}
		tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tROLE\tHOST\tISSUED\tREVOKED")
		for _, t := range infos {
			revoked := "-"
			if t.Revoked != nil {
				revoked = t.Revoked.Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", t.ID, t.Role, dash(t.Host), t.Issued.Format(time.RFC3339), revoked)
		}
		return tw.Flush()
	}
	return usagef("token %s: want issue, revoke or list", verb)
}

// tokenErr maps the tokens file's errors to ledgerctl's exit codes: a
// request that cannot be issued is a usage error (2), the rest errors (1).
func tokenErr(err error) error {
	if errors.Is(err, tokens.ErrInvalid) {
		return usagef("%v", err)
	}
	return err
}
