package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
)

// maxRegistryFile bounds a registry file read by `registry propose`.
const maxRegistryFile = 4 << 20

// registry: show the registry in force, or propose a new one.
func (a *app) registry(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return usagef("registry: want show, propose or history")
	}
	verb, args := args[0], args[1:]
	fs := a.newFlags("registry " + verb)
	c := a.commonFlags(fs)
	var file string
	if verb == "propose" {
		fs.StringVar(&file, "file", "", "the registry proposed, JSON {\"members\": {MSP: {\"organizations\": [...], \"host_patterns\": [...]}}, \"require_attested\": bool} (- for standard input)")
	}
	pos, err := a.parse(fs, args)
	if err != nil {
		return flagErr(err)
	}
	if len(pos) > 0 {
		return usagef("registry %s takes no argument", verb)
	}
	var proposed ledger.Registry
	switch verb {
	case "show", "history":
	case "propose":
		if file == "" {
			return usagef("registry propose --file FILE")
		}
		if proposed, err = readRegistry(file); err != nil {
			return err
		}
	default:
		return usagef("registry %s: want show, propose or history", verb)
	}
	l, ctx, err := a.ledger(ctx, c)
	if err != nil {
		return err
	}
	defer l.Close()
	g := ledger.Governance(l)
	cctx, cancel := a.callCtx(ctx, c)
	defer cancel()
	switch verb {
	case "show":
		rec, err := g.Registry(cctx)
		if err != nil {
			return fmt.Errorf("registry: %w", err)
		}
		return a.printRegistry(c, rec)
	case "history":
		changes, err := l.History(cctx, ledger.KindRegistry, ledger.RegistryKey)
		if err != nil {
			return fmt.Errorf("history of the registry: %w", err)
		}
		return a.printHistory(c, changes)
	}
	p, err := g.Propose(cctx, ledger.Proposal{Kind: ledger.ProposeRegistry, Registry: &proposed})
	if err != nil {
		return fmt.Errorf("proposing a registry: %w", err)
	}
	return a.printProposals(c, []ledger.ProposalRecord{p})
}

func readRegistry(file string) (ledger.Registry, error) {
	var r io.Reader
	if file == "-" {
		r = os.Stdin
	} else {
		f, err := os.Open(file)
		if err != nil {
			return ledger.Registry{}, usagef("--file: %v", err)
		}
		defer f.Close()
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, maxRegistryFile+1))
	if err != nil {
		return ledger.Registry{}, usagef("--file: %v", err)
	}
	if len(data) > maxRegistryFile {
		return ledger.Registry{}, usagef("--file: larger than %d bytes", maxRegistryFile)
	}
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	var reg ledger.Registry
	if err := dec.Decode(&reg); err != nil || dec.More() {
		return ledger.Registry{}, usagef("--file: want one JSON object {\"members\": {MSP: {\"organizations\": [...]}}, \"require_attested\": bool}: %v", err)
	}
	return reg, nil
}

// proposal: list the open proposals, show or approve one.
func (a *app) proposal(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return usagef("proposal: want list, show or approve")
	}
	verb, args := args[0], args[1:]
	fs := a.newFlags("proposal " + verb)
	c := a.commonFlags(fs)
	pos, err := a.parse(fs, args)
	if err != nil {
		return flagErr(err)
	}
	switch verb {
	case "list":
		if len(pos) != 0 {
			return usagef("proposal list takes no argument")
		}
	case "show", "approve", "history":
		if len(pos) != 1 || pos[0] == "" || len(pos[0]) > 256 {
			return usagef("proposal %s ID", verb)
		}
	default:
		return usagef("proposal %s: want list, show, approve or history", verb)
	}
	l, ctx, err := a.ledger(ctx, c)
	if err != nil {
		return err
	}
	defer l.Close()
	g := ledger.Governance(l)
	cctx, cancel := a.callCtx(ctx, c)
	defer cancel()
	switch verb {
	case "list":
		ps, err := g.ListProposals(cctx)
		if err != nil {
			return fmt.Errorf("proposals: %w", err)
		}
		return a.printProposals(c, ps)
	case "show":
		p, err := g.GetProposal(cctx, pos[0])
		if err != nil {
			return fmt.Errorf("proposal %s: %w", pos[0], err)
		}
		return a.printProposals(c, []ledger.ProposalRecord{p})
	case "history":
		changes, err := l.History(cctx, ledger.KindProposal, pos[0])
		if err != nil {
			return fmt.Errorf("history of proposal %s: %w", pos[0], err)
		}
		return a.printHistory(c, changes)
	}
	p, err := g.Approve(cctx, pos[0])
	if err != nil {
		return fmt.Errorf("approving %s: %w", pos[0], err)
	}
	return a.printProposals(c, []ledger.ProposalRecord{p})
}

// project: bind a project to the writer's organisation, show its binding,
// or propose to move it to another organisation.
func (a *app) project(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return usagef("project: want bind, show, move or history")
	}
	verb, args := args[0], args[1:]
	fs := a.newFlags("project " + verb)
	c := a.commonFlags(fs)
	var to string
	if verb == "move" {
		fs.StringVar(&to, "to", "", "the MSP the project is to be bound to")
	}
	pos, err := a.parse(fs, args)
	if err != nil {
		return flagErr(err)
	}
	if len(pos) != 1 {
		return usagef("project %s PROJECT_ID", verb)
	}
	project, err := filter.NormalizeProjectID(strings.TrimPrefix(pos[0], filter.KindProject+":"))
	if err != nil {
		return usagef("%v", err)
	}
	switch verb {
	case "bind", "show", "history":
	case "move":
		if to == "" {
			return usagef("project move PROJECT_ID --to MSP")
		}
	default:
		return usagef("project %s: want bind, show, move or history", verb)
	}
	l, ctx, err := a.ledger(ctx, c)
	if err != nil {
		return err
	}
	defer l.Close()
	g := ledger.Governance(l)
	cctx, cancel := a.callCtx(ctx, c)
	defer cancel()
	switch verb {
	case "bind":
		rec, changed, err := g.BindProject(cctx, project)
		if err != nil {
			return fmt.Errorf("binding project %s: %w", project, err)
		}
		if err := a.printBinding(c, rec); err != nil {
			return err
		}
		if !changed && c.output != "json" {
			fmt.Fprintln(a.stderr, "unchanged: the project was already bound to this organisation; nothing written")
		}
		return nil
	case "show":
		rec, err := g.GetBinding(cctx, project)
		if err != nil {
			return fmt.Errorf("project %s: %w", project, err)
		}
		return a.printBinding(c, rec)
	case "history":
		changes, err := l.History(cctx, ledger.KindBinding, project)
		if err != nil {
			return fmt.Errorf("history of project %s: %w", project, err)
		}
		return a.printHistory(c, changes)
	}
	p, err := g.Propose(cctx, ledger.Proposal{Kind: ledger.ProposeBinding, Binding: &ledger.Binding{Project: project, MSP: to}})
	if err != nil {
		return fmt.Errorf("proposing to move project %s: %w", project, err)
	}
	return a.printProposals(c, []ledger.ProposalRecord{p})
}

func (a *app) printRegistry(c *common, rec ledger.RegistryRecord) error {
	if c.output == "json" {
		return a.json(rec)
	}
	fmt.Fprintf(a.stdout, "registry version %d (proposal %s, %s), attested host facts required: %v\n",
		rec.Version, short(rec.Proposal), stamp(rec.UpdatedAt), rec.RequireAttested)
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MSP\tORGANIZATIONS\tHOST PATTERNS")
	msps := make([]string, 0, len(rec.Members))
	for msp := range rec.Members {
		msps = append(msps, msp)
	}
	slices.Sort(msps)
	for _, msp := range msps {
		m := rec.Members[msp]
		fmt.Fprintf(tw, "%s\t%s\t%s\n", dash(msp), strings.Join(m.Organizations, ","), dash(strings.Join(m.HostPatterns, ",")))
	}
	return tw.Flush()
}

func (a *app) printProposals(c *common, ps []ledger.ProposalRecord) error {
	if c.output == "json" {
		if ps == nil {
			ps = []ledger.ProposalRecord{}
		}
		return a.json(ps)
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tKIND\tSTATE\tWHAT\tAPPROVED BY\tWAITING FOR\tUPDATED")
	for _, p := range ps {
		what := "-"
		switch {
		case p.Registry != nil:
			msps := make([]string, 0, len(p.Registry.Members))
			for msp := range p.Registry.Members {
				msps = append(msps, dash(msp))
			}
			slices.Sort(msps)
			what = fmt.Sprintf("members %s, attested required %v", strings.Join(msps, ","), p.Registry.RequireAttested)
		case p.Binding != nil:
			what = fmt.Sprintf("project %s to %s", p.Binding.Project, p.Binding.MSP)
		}
		var by []string
		for _, ap := range p.Approvals {
			by = append(by, dash(ap.Writer.MSP))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.ID, p.Kind, p.State, what,
			dash(strings.Join(by, ",")), dash(strings.Join(p.Missing(), ",")), stamp(p.UpdatedAt))
	}
	return tw.Flush()
}

func (a *app) printBinding(c *common, rec ledger.BindingRecord) error {
	if c.output == "json" {
		return a.json(rec)
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PROJECT\tMSP\tVERSION\tWRITER\tPROPOSAL\tUPDATED\tTX")
	fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\n", rec.Project, dash(rec.MSP), rec.Version, dash(rec.Writer.String()),
		dash(rec.Proposal), stamp(rec.UpdatedAt), short(rec.TxID))
	return tw.Flush()
}
