package main

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/ledgerfence/ledgerfence/pkg/cloud"
	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
)

// checkRow is one host's line of a check.
type checkRow struct {
	Host          string         `json:"host"`
	Country       string         `json:"country,omitempty"`
	Organizations []string       `json:"organizations,omitempty"`
	Allowed       bool           `json:"allowed"`
	Reason        filter.Reason  `json:"reason,omitempty"`
	Regulation    filter.Subject `json:"regulation,omitempty"`
	Detail        string         `json:"detail"`
}

// checkResult is a what-if decision for a VM over hosts.
type checkResult struct {
	InstanceUUID string           `json:"instance_uuid"`
	ProjectID    string           `json:"project_id,omitempty"`
	Regulations  []filter.Subject `json:"regulations"`
	Regulated    bool             `json:"regulated"`
	Height       uint64           `json:"ledger_height"`
	Summary      string           `json:"summary"`
	Hosts        []checkRow       `json:"hosts"`
}

// decide reads the VM's and its project's regulations and the hosts' records
// in one lookup (all known hosts when hosts is empty) and decides with
// filter.Evaluate.
func decide(ctx context.Context, l ledger.Ledger, vm, project string, hosts []string) (checkResult, error) {
	subjects := []filter.Subject{filter.VMSubject(vm)}
	if project != "" {
		subjects = append([]filter.Subject{filter.ProjectSubject(project)}, subjects...)
	}
	if len(hosts) == 0 {
		recs, err := listHosts(ctx, l)
		if err != nil {
			return checkResult{}, err
		}
		for _, r := range recs {
			hosts = append(hosts, r.Name)
		}
	}
	lk, err := l.Lookup(ctx, subjects, hosts)
	if err != nil {
		return checkResult{}, fmt.Errorf("reading the ledger: %w", err)
	}
	res := checkResult{InstanceUUID: vm, ProjectID: project, Height: lk.Height, Regulations: []filter.Subject{}}
	var regs []filter.Regulation
	for _, s := range subjects {
		if r, ok := lk.Regulations[s]; ok {
			regs = append(regs, r.Regulation)
			res.Regulations = append(res.Regulations, s)
		}
	}
	cands := make([]filter.Candidate, len(hosts))
	for i, h := range hosts {
		cands[i] = filter.Candidate{Name: h}
		if rec, ok := lk.Hosts[h]; ok {
			hh := rec.Host
			cands[i].Host = &hh
		}
	}
	out := filter.Evaluate(regs, cands, filter.Options{})
	res.Regulated, res.Summary = out.Regulated, out.Summary()
	for i, v := range out.Verdicts {
		row := checkRow{Host: v.Host, Allowed: v.Allowed, Reason: v.Reason, Regulation: v.Subject, Detail: v.Detail()}
		if h := cands[i].Host; h != nil {
			row.Country, row.Organizations = h.Country, h.Organizations
		}
		res.Hosts = append(res.Hosts, row)
	}
	return res, nil
}

func (res checkResult) denied() []checkRow {
	var d []checkRow
	for _, r := range res.Hosts {
		if !r.Allowed {
			d = append(d, r)
		}
	}
	return d
}

func (a *app) check(ctx context.Context, args []string) error {
	fs := a.newFlags("check")
	c := a.commonFlags(fs)
	vm := fs.String("vm", "", "the VM's instance UUID (required)")
	project := fs.String("project", "", "the VM's project id (default: asked of Nova when OpenStack credentials are set)")
	var hosts listFlag
	fs.Var(&hosts, "host", "a host to check (repeatable; default: every host in the ledger)")
	pos, err := parse(fs, args)
	if err != nil {
		return flagErr(err)
	}
	if len(pos) > 0 {
		return usagef("check takes flags only: check --vm UUID [--project ID] [--host H ...]")
	}
	uuid, err := vmArg(*vm)
	if err != nil {
		return err
	}
	if *project != "" {
		if _, err := filter.ParseSubject(string(filter.ProjectSubject(*project))); err != nil {
			return usagef("--project: %v", err)
		}
	}
	for _, h := range hosts {
		if err := filter.ValidateHostName(h); err != nil {
			return usagef("--host: %v", err)
		}
	}
	cctx, cancel := a.callCtx(ctx, c)
	defer cancel()
	if *project == "" {
		if cloud.HasCredentials(a.getenv) {
			n, err := a.openNova(cctx)
			if err != nil {
				return err
			}
			srv, err := n.GetServer(cctx, uuid)
			if err != nil {
				return err
			}
			*project = srv.ProjectID
		} else {
			fmt.Fprintln(a.stderr, "note: no --project and no OpenStack credentials: only the VM's own regulation is checked")
		}
	}
	l, _, err := a.ledger(ctx, c)
	if err != nil {
		return err
	}
	defer l.Close()
	res, err := decide(cctx, l, uuid, *project, hosts)
	if err != nil {
		return err
	}
	if err := a.printCheck(c, res); err != nil {
		return err
	}
	if d := res.denied(); len(d) > 0 {
		return &deniedError{fmt.Sprintf("%s: %s", uuid, res.Summary)}
	}
	return nil
}

func vmArg(vm string) (string, error) {
	if vm == "" {
		return "", usagef("--vm UUID is required")
	}
	u, err := filter.NormalizeUUID(vm)
	if err != nil {
		return "", usagef("--vm: %v", err)
	}
	return u, nil
}

func (a *app) printCheck(c *common, res checkResult) error {
	if c.output == "json" {
		if res.Hosts == nil {
			res.Hosts = []checkRow{}
		}
		return a.json(res)
	}
	regs := "none (unregulated: every host passes)"
	if len(res.Regulations) > 0 {
		s := make([]string, len(res.Regulations))
		for i, r := range res.Regulations {
			s[i] = string(r)
		}
		regs = strings.Join(s, ", ")
	}
	fmt.Fprintf(a.stdout, "VM %s, regulations: %s, ledger height %d\n", res.InstanceUUID, regs, res.Height)
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tCOUNTRY\tORGANIZATIONS\tVERDICT\tREASON\tDETAIL")
	for _, r := range res.Hosts {
		verdict := "allowed"
		if !r.Allowed {
			verdict = "denied"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Host, dash(r.Country), dash(strings.Join(r.Organizations, ",")), verdict, dash(string(r.Reason)), r.Detail)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(a.stdout, res.Summary)
	return nil
}
