package residency

import (
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// WriteJSON writes r as JSON, the form Verify reads back.
func WriteJSON(w io.Writer, r Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// ReadJSON reads a report written by WriteJSON, refusing unknown fields and
// trailing data.
func ReadJSON(rd io.Reader) (Report, error) {
	dec := json.NewDecoder(rd)
	dec.DisallowUnknownFields()
	var r Report
	if err := dec.Decode(&r); err != nil {
		return Report{}, fmt.Errorf("residency report: %w", err)
	}
	if dec.More() {
		return Report{}, fmt.Errorf("residency report: trailing data after the JSON object")
	}
	return r, nil
}

// WriteTable writes r as a table for a terminal.
func WriteTable(w io.Writer, r Report) error {
	fmt.Fprintf(w, "residency of %s from %s to %s (as of %s): %d intervals, %d violations, %d discrepancies\n",
		r.Subject, stamp(r.From), stamp(r.To), stamp(r.AsOf), len(r.Intervals), r.Violations, r.Discrepancies)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VM\tHOST\tCOUNTRY\tORGANIZATIONS\tFROM\tTO\tOP\tVERDICT\tREGULATIONS\tWITNESSES\tTX")
	for _, iv := range r.Intervals {
		country, orgs := "-", "-"
		if v := iv.Verdict; v != nil {
			country, orgs = dash(v.Country), dash(strings.Join(v.Organizations, ","))
		}
		to := stamp(iv.To)
		if iv.Open {
			to += " (open)"
		}
		wit := strings.Join(iv.Witnesses, "+")
		if iv.Discrepancy != "" {
			wit += " !"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", iv.VM, iv.Host, country, orgs, stamp(iv.From), to,
			iv.Op, verdictWord(iv), regulations(iv), wit, txs(iv))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for i, iv := range r.Intervals {
		if iv.Discrepancy != "" {
			fmt.Fprintf(w, "! interval %d (%s on %s from %s): %s\n", i+1, iv.VM, iv.Host, stamp(iv.From), iv.Discrepancy)
		}
	}
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func regulations(iv Interval) string {
	if iv.Verdict == nil || len(iv.Verdict.Regulations) == 0 {
		return "-"
	}
	var parts []string
	for _, r := range iv.Verdict.Regulations {
		parts = append(parts, fmt.Sprintf("%s@v%d", r.Subject, r.Version))
	}
	return strings.Join(parts, ",")
}

func txs(iv Interval) string {
	var parts []string
	for _, e := range iv.Evidence {
		tx := e.TxID
		if len(tx) > 12 {
			tx = tx[:12]
		}
		parts = append(parts, tx)
	}
	return strings.Join(parts, ",")
}

// WriteHTML writes r as one self-contained page (no script, no asset
// fetched): a timeline per VM and the table of intervals with their
// evidence, violations and discrepancies marked.
func WriteHTML(w io.Writer, r Report) error {
	return page.Execute(w, view(r))
}

type htmlView struct {
	Report
	VMs []vmView
}

type vmView struct {
	VM   string
	Bars []bar
}

type bar struct {
	Left, Width float64 // percent of the period
	Class       string
	Title       string
}

func view(r Report) htmlView {
	v := htmlView{Report: r}
	span := r.To.Sub(r.From).Seconds()
	idx := map[string]int{}
	for _, iv := range r.Intervals {
		i, ok := idx[iv.VM]
		if !ok {
			i = len(v.VMs)
			idx[iv.VM] = i
			v.VMs = append(v.VMs, vmView{VM: iv.VM})
		}
		b := bar{Class: "ok", Title: fmt.Sprintf("%s %s to %s: %s", iv.Host, stamp(iv.From), stamp(iv.To), verdictWord(iv))}
		if span > 0 {
			b.Left = 100 * iv.From.Sub(r.From).Seconds() / span
			b.Width = max(0.2, 100*iv.To.Sub(iv.From).Seconds()/span)
		}
		switch {
		case iv.Violation:
			b.Class = "violation"
		case iv.Discrepancy != "":
			b.Class = "discrepancy"
		}
		v.VMs[i].Bars = append(v.VMs[i].Bars, b)
	}
	return v
}

var page = template.Must(template.New("residency").Funcs(template.FuncMap{
	"stamp":   func(t time.Time) string { return stamp(t) },
	"verdict": verdictWord,
	"regs":    regulations,
	"join":    strings.Join,
	"pct":     func(f float64) string { return fmt.Sprintf("%.3f%%", f) },
}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Residency of {{.Subject}}</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #ddd;padding:4px 6px;text-align:left;vertical-align:top}
tr.violation td{background:#fde2e2}tr.discrepancy td{background:#fff4d6}
.line{position:relative;height:18px;background:#f2f2f2;margin:4px 0 10px}
.line span{position:absolute;top:0;height:18px}
.ok{background:#4a9a5b}.violation{background:#c0392b}.discrepancy{background:#e0a800}
code{font-size:12px}
</style></head><body>
<h1>Residency of {{.Subject}}</h1>
<p>From {{stamp .From}} to {{stamp .To}}, as of {{stamp .AsOf}}: {{len .Intervals}} intervals,
<strong>{{.Violations}} violations</strong>, {{.Discrepancies}} discrepancies (witnesses more than {{.Bound}} apart).</p>
{{range .VMs}}<h2>VM {{.VM}}</h2><div class="line">{{range .Bars}}<span class="{{.Class}}" style="left:{{pct .Left}};width:{{pct .Width}}" title="{{.Title}}"></span>{{end}}</div>{{end}}
<table><thead><tr><th>VM</th><th>Host</th><th>Country</th><th>Organisations</th><th>From</th><th>To</th><th>Operation</th><th>Verdict</th><th>Regulations</th><th>Witnesses</th><th>Evidence</th></tr></thead><tbody>
{{range .Intervals}}<tr class="{{if .Violation}}violation{{else if .Discrepancy}}discrepancy{{end}}">
<td><code>{{.VM}}</code></td><td>{{.Host}}</td><td>{{with .Verdict}}{{.Country}}{{end}}</td><td>{{with .Verdict}}{{join .Organizations ", "}}{{end}}</td>
<td>{{stamp .From}}</td><td>{{stamp .To}}{{if .Open}} (open){{end}}</td><td>{{.Op}}</td><td>{{verdict .}}</td><td>{{regs .}}</td>
<td>{{join .Witnesses " + "}}{{with .Discrepancy}}<br><em>{{.}}</em>{{end}}</td>
<td>{{range .Evidence}}<code>{{.Witness}} {{.TxID}}</code><br>{{end}}</td></tr>
{{end}}</tbody></table>
</body></html>
`))
