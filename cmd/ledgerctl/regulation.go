package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
)

func (a *app) regulation(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return usagef("regulation: want set, get, delete or history")
	}
	verb, args := args[0], args[1:]
	fs := a.newFlags("regulation " + verb)
	c := a.commonFlags(fs)
	vm := fs.String("vm", "", "the subject vm:<UUID>")
	project := fs.String("project", "", "the subject project:<ID>")
	var allow, countries, orgs listFlag
	var file, vmProject string
	var requireAttested bool
	if verb == "set" {
		fs.BoolVar(&requireAttested, "require-attested", false, "deny hosts whose facts no second organisation has attested")
		fs.StringVar(&vmProject, "vm-project", "", "the project of the VM (with --vm), recorded with its regulation")
		fs.Var(&allow, "allow", "an allowed CountryCode.OrganizationCode, * or All for any (repeatable)")
		fs.Var(&countries, "countries", "allowed countries, comma-separated (with --organizations: every pair)")
		fs.Var(&orgs, "organizations", "allowed organisations, comma-separated")
		fs.StringVar(&file, "file", "", "a regulation JSON file in any of the three forms (- for standard input)")
	}
	pos, err := a.parse(fs, args)
	if err != nil {
		return flagErr(err)
	}
	subject, err := subjectArg(pos, *vm, *project)
	if err != nil {
		return err
	}
	var terms filter.Terms
	if verb == "set" {
		// Validate the input before the ledger is touched.
		if terms, err = a.termsFromFlags(allow, countries, orgs, file); err != nil {
			return err
		}
		if requireAttested {
			terms.RequireAttested = true
		}
		if vmProject != "" {
			terms.Project = vmProject
		}
		if terms, err = filter.NormalizeTerms(subject, terms); err != nil {
			return usagef("invalid regulation: %v", err)
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
	case "set":
		rec, changed, err := l.PutRegulation(cctx, subject, terms)
		if err != nil {
			return fmt.Errorf("setting %s: %w", subject, err)
		}
		return a.printRegulation(c, rec, &changed)
	case "get":
		rec, err := l.GetRegulation(cctx, subject)
		if err != nil {
			return fmt.Errorf("%s: %w", subject, err)
		}
		return a.printRegulation(c, rec, nil)
	case "delete":
		if err := l.DeleteRegulation(cctx, subject); err != nil {
			return fmt.Errorf("deleting %s: %w", subject, err)
		}
		if c.output == "json" {
			return a.json(map[string]any{"subject": subject, "deleted": true})
		}
		fmt.Fprintf(a.stdout, "deleted the regulation of %s\n", subject)
		return nil
	case "history":
		changes, err := l.History(cctx, ledger.KindRegulation, string(subject))
		if err != nil {
			return fmt.Errorf("history of %s: %w", subject, err)
		}
		if len(changes) == 0 {
			return fmt.Errorf("%s: %w", subject, ledger.Errorf(ledger.ErrNotFound, nil, "no history"))
		}
		return a.printHistory(c, changes)
	}
	return usagef("regulation %s: want set, get, delete or history", verb)
}

// termsFromFlags builds a regulation body from one of the three input
// forms and parses it with filter.ParseTerms.
func (a *app) termsFromFlags(allow, countries, orgs listFlag, file string) (filter.Terms, error) {
	forms := 0
	if len(allow) > 0 {
		forms++
	}
	if len(countries) > 0 || len(orgs) > 0 {
		forms++
	}
	if file != "" {
		forms++
	}
	if forms != 1 {
		return filter.Terms{}, usagef("regulation set: give exactly one of --allow, --countries with --organizations, or --file")
	}
	var body []byte
	switch {
	case file != "":
		var err error
		if file == "-" {
			body, err = io.ReadAll(io.LimitReader(os.Stdin, 4<<20))
		} else {
			body, err = os.ReadFile(file)
		}
		if err != nil {
			return filter.Terms{}, usagef("--file: %v", err)
		}
	case len(allow) > 0:
		body, _ = json.Marshal(map[string]any{"allow": []string(allow)})
	default:
		if len(countries) == 0 || len(orgs) == 0 {
			return filter.Terms{}, usagef("--countries and --organizations go together")
		}
		body, _ = json.Marshal(map[string]any{"countries": []string(countries), "organizations": []string(orgs)})
	}
	terms, err := filter.ParseTerms(body)
	if err != nil {
		return filter.Terms{}, usagef("invalid regulation: %v", err)
	}
	return terms, nil
}

func rulesString(rules []filter.Rule) string {
	s := make([]string, len(rules))
	for i, r := range rules {
		s[i] = r.String()
	}
	return strings.Join(s, ",")
}

func (a *app) printRegulation(c *common, rec ledger.RegulationRecord, changed *bool) error {
	if c.output == "json" {
		if changed != nil {
			return a.json(struct {
				ledger.RegulationRecord
				Changed bool `json:"changed"`
			}{rec, *changed})
		}
		return a.json(rec)
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SUBJECT\tVERSION\tOWNER\tALLOW\tATTESTED ONLY\tPROJECT\tWRITER\tUPDATED\tTX")
	fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%v\t%s\t%s\t%s\t%s\n", rec.Subject, rec.Version, dash(rec.Owner), rulesString(rec.Allow),
		rec.RequireAttested, dash(rec.Project), dash(rec.Writer.String()), stamp(rec.UpdatedAt), short(rec.TxID))
	if err := tw.Flush(); err != nil {
		return err
	}
	if changed != nil && !*changed {
		fmt.Fprintln(a.stderr, "unchanged: the ledger already held this regulation; nothing written")
	}
	return nil
}

func (a *app) printHistory(c *common, changes []ledger.Change) error {
	if c.output == "json" {
		return a.json(changes)
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tBLOCK\tOP\tWRITER\tWHAT\tTX")
	for _, ch := range changes {
		what := "-"
		switch {
		case ch.Host != nil && ch.Op == ledger.OpAttest && ch.Host.Attestation != nil:
			at := ch.Host.Attestation
			what = fmt.Sprintf("attested %s %s by %s", at.Country, strings.Join(at.Organizations, ","), at.Writer)
		case ch.Host != nil:
			what = fmt.Sprintf("%s %s %s", ch.Host.Country, strings.Join(ch.Host.Organizations, ","), ch.Host.Region)
		case ch.Regulation != nil:
			what = fmt.Sprintf("v%d %s", ch.Regulation.Version, rulesString(ch.Regulation.Allow))
			if ch.Regulation.RequireAttested {
				what += " attested-only"
			}
		case ch.Registry != nil:
			what = fmt.Sprintf("registry v%d from proposal %s", ch.Registry.Version, short(ch.Registry.Proposal))
		case ch.Proposal != nil:
			what = fmt.Sprintf("%s %s, waiting for %s", ch.Proposal.Kind, ch.Proposal.State, dash(strings.Join(ch.Proposal.Missing(), ",")))
		case ch.Binding != nil:
			what = fmt.Sprintf("project %s bound to %s", ch.Binding.Project, dash(ch.Binding.MSP))
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\n", stamp(ch.Time), ch.Block, ch.Op, dash(ch.Writer.String()), strings.TrimSpace(what), short(ch.TxID))
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func short(tx string) string {
	if len(tx) > 16 {
		return tx[:16]
	}
	return dash(tx)
}
