package api

import (
	"net/http"
	"strings"
	"time"

	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/remote"
	"github.com/ledgerfence/ledgerfence/pkg/residency"
)

// Settle is how far behind the present a report is made: placements
// recorded in the last Settle may still be committing, and a report must be
// one that residency.Verify can read again whole.
const Settle = 5 * time.Second

// residencyReport answers GET /v1/residency/vm/{uuid} and
// /v1/residency/project/{id}: the residency report of the subject over
// [from, to) (RFC 3339; to defaults to now, from to 30 days before to), as
// JSON, or as a page with format=html.
func (s *Server) residencyReport(kind string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		subject, err := filter.ParseSubject(kind + ":" + id)
		if err != nil {
			remote.WriteError(w, http.StatusBadRequest, err.Error())
			return
		}
		q, err := residencyQuery(r, subject, time.Now())
		if err != nil {
			remote.WriteError(w, http.StatusBadRequest, err.Error())
			return
		}
		rep, err := residency.Read(r.Context(), s.ledger, q, time.Now().Add(-Settle))
		if err != nil {
			remote.LedgerError(s.log, w, r, err)
			return
		}
		switch r.URL.Query().Get("format") {
		case "", "json":
			remote.WriteJSON(w, http.StatusOK, rep)
		case "html":
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
			if err := residency.WriteHTML(w, rep); err != nil {
				s.log.Warn("writing a residency page failed")
			}
		default:
			remote.WriteError(w, http.StatusBadRequest, "format: want json or html")
		}
	}
}

// residencyQuery reads from, to and bound of a report's request.
func residencyQuery(r *http.Request, subject filter.Subject, now time.Time) (residency.Query, error) {
	q := residency.Query{Subject: subject, To: now.UTC()}
	v := r.URL.Query()
	if s := v.Get("to"); s != "" {
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			return q, ledger.Errorf(ledger.ErrInvalid, err, "to: want an RFC 3339 time, like 2026-12-01T00:00:00Z")
		}
		q.To = t
	}
	q.From = q.To.AddDate(0, 0, -30)
	if s := v.Get("from"); s != "" {
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			return q, ledger.Errorf(ledger.ErrInvalid, err, "from: want an RFC 3339 time, like 2026-11-01T00:00:00Z")
		}
		q.From = t
	}
	if s := v.Get("bound"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			return q, ledger.Errorf(ledger.ErrInvalid, err, "bound: want a duration, like 15m")
		}
		q.Bound = d
	}
	for k := range v {
		if !strings.Contains(" from to bound format ", " "+k+" ") {
			return q, ledger.Errorf(ledger.ErrInvalid, nil, "unknown parameter "+filter.Clip(k)+": want from, to, bound or format")
		}
	}
	return q.Normalize()
}
