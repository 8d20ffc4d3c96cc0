package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
)

func (a *app) host(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return usagef("host: want list, get, history, attest or pending")
	}
	verb, args := args[0], args[1:]
	fs := a.newFlags("host " + verb)
	c := a.commonFlags(fs)
	var country string
	var orgs listFlag
	if verb == "attest" {
		fs.StringVar(&country, "country", "", "the country attested (ISO 3166-1 alpha-2): what you verified, which must be the record's now")
		fs.Var(&orgs, "organizations", "the organisations attested, comma-separated")
	}
	pos, err := a.parse(fs, args)
	if err != nil {
		return flagErr(err)
	}
	var name string
	switch verb {
	case "list", "pending":
		if len(pos) > 0 {
			return usagef("host %s takes no argument", verb)
		}
	case "get", "history", "attest":
		if len(pos) != 1 {
			return usagef("host %s NAME", verb)
		}
		name = pos[0]
		if err := filter.ValidateHostName(name); err != nil {
			return usagef("%v", err)
		}
	default:
		return usagef("host %s: want list, get, history, attest or pending", verb)
	}
	var facts filter.Host
	if verb == "attest" {
		if country == "" || len(orgs) == 0 {
			return usagef("host attest NAME --country CC --organizations ORG,...: name the facts you verified")
		}
		if facts, err = ledger.NormalizeAttestation(name, country, orgs); err != nil {
			return usagef("%v", err)
		}
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
	case "pending":
		hosts, err := listHosts(cctx, l)
		if err != nil {
			return err
		}
		return a.printHosts(c, slices.DeleteFunc(hosts, func(h ledger.HostRecord) bool { return h.Attested() }))
	case "attest":
		rec, changed, err := l.AttestHost(cctx, name, facts.Country, facts.Organizations)
		if err != nil {
			return fmt.Errorf("attesting host %s: %w", name, err)
		}
		if err := a.printHosts(c, []ledger.HostRecord{rec}); err != nil {
			return err
		}
		if !changed && c.output != "json" {
			fmt.Fprintln(a.stderr, "unchanged: these facts were already attested; nothing written")
		}
		return nil
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
	fmt.Fprintln(tw, "HOST\tCOUNTRY\tORGANIZATIONS\tREGION\tWRITER\tFACTS\tATTESTED BY\tUPDATED")
	for _, h := range hosts {
		facts, by := "claimed", "-"
		if h.Attested() {
			facts, by = "attested", h.Attestation.Writer.String()+" "+stamp(h.Attestation.At)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", h.Name, h.Country, strings.Join(h.Organizations, ","), dash(h.Region),
			dash(h.Writer.String()), facts, by, stamp(h.UpdatedAt))
	}
	return tw.Flush()
}
