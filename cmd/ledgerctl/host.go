package main

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
)

func (a *app) host(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return usagef("host: want list, get or history")
	}
	verb, args := args[0], args[1:]
	fs := a.newFlags("host " + verb)
	c := a.commonFlags(fs)
	pos, err := a.parse(fs, args)
	if err != nil {
		return flagErr(err)
	}
	var name string
	switch verb {
	case "list":
		if len(pos) > 0 {
			return usagef("host list takes no argument")
		}
	case "get", "history":
		if len(pos) != 1 {
			return usagef("host %s NAME", verb)
		}
		name = pos[0]
		if err := filter.ValidateHostName(name); err != nil {
			return usagef("%v", err)
		}
	default:
		return usagef("host %s: want list, get or history", verb)
	}
	l, ctx, err := a.ledger(ctx, c)
	if err != nil {
		return err
	}
	defer l.Close()
	cctx, cancel := a.callCtx(ctx, c)
	defer cancel()
	switch verb {
	case "list":
		hosts, err := listHosts(cctx, l)
		if err != nil {
			return err
		}
		return a.printHosts(c, hosts)
	case "get":
		rec, err := l.GetHost(cctx, name)
		if err != nil {
			return fmt.Errorf("host %s: %w", name, err)
		}
		return a.printHosts(c, []ledger.HostRecord{rec})
	default:
		changes, err := l.History(cctx, ledger.KindHost, name)
		if err != nil {
			return fmt.Errorf("history of host %s: %w", name, err)
		}
		if len(changes) == 0 {
			return fmt.Errorf("host %s: %w", name, ledger.Errorf(ledger.ErrNotFound, nil, "no history"))
		}
		return a.printHistory(c, changes)
	}
}

// listHosts reads every page of the host listing.
func listHosts(ctx context.Context, l ledger.Ledger) ([]ledger.HostRecord, error) {
	var all []ledger.HostRecord
	after := ""
	for {
		page, err := l.ListHosts(ctx, after, 0)
		if err != nil {
			return nil, fmt.Errorf("listing hosts: %w", err)
		}
		all = append(all, page.Hosts...)
		if page.Next == "" || page.Next == after {
			return all, nil
		}
		after = page.Next
	}
}

func (a *app) printHosts(c *common, hosts []ledger.HostRecord) error {
	if c.output == "json" {
		if hosts == nil {
			hosts = []ledger.HostRecord{}
		}
		return a.json(hosts)
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tCOUNTRY\tORGANIZATIONS\tREGION\tWRITER\tUPDATED")
	for _, h := range hosts {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", h.Name, h.Country, strings.Join(h.Organizations, ","), dash(h.Region), dash(h.Writer.String()), stamp(h.UpdatedAt))
	}
	return tw.Flush()
}
