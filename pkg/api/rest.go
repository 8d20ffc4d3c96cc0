package api

import (
	"context"
	"errors"
	"net/http"
	"strconv"

	"go.uber.org/zap"

	"github.com/ledgerfence/ledgerfence/pkg/decide"
	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/remote"
)

// maxCheckHosts bounds the hosts of one check, named or listed.
const maxCheckHosts = 100_000

// checkInput is the body of POST /v1/check.
type checkInput struct {
	InstanceUUID string   `json:"instance_uuid"`
	ProjectID    string   `json:"project_id"`
	Hosts        []string `json:"hosts"`
}

// check answers "which of these hosts may this VM go to, and why not the
// others", with the webhook's own decision path.
func (s *Server) check(w http.ResponseWriter, r *http.Request) {
	var in checkInput
	if remote.DecodeBody(w, r, s.cfg.MaxBodyBytes, &in) != nil {
		return
	}
	if in.InstanceUUID == "" && in.ProjectID == "" {
		remote.WriteError(w, http.StatusBadRequest, "give instance_uuid, project_id or both")
		return
	}
	if _, err := decide.Subjects(in.InstanceUUID, in.ProjectID); err != nil {
		remote.WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	names := in.Hosts
	if names == nil {
		var err error
		if names, err = s.allHosts(r); err != nil {
			if errors.Is(err, errTooManyHosts) {
				remote.WriteError(w, http.StatusBadRequest, err.Error())
				return
			}
			remote.LedgerError(s.log, w, r, err)
			return
		}
	}
	if len(names) > maxCheckHosts {
		remote.WriteError(w, http.StatusBadRequest, errTooManyHosts.Error())
		return
	}
	sc := s.getScratch()
	defer s.putScratch(sc)
	seen := make(map[string]bool, len(names))
	for _, n := range names {
		if err := filter.ValidateHostName(n); err != nil {
			remote.ValidationError(w, err)
			return
		}
		if !seen[n] { // a repeated host is decided once
			seen[n] = true
			sc.q.Candidates = append(sc.q.Candidates, filter.Candidate{Name: n})
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.DecisionTimeout)
	defer cancel()
	dec, err := s.decide(ctx, sc, in.InstanceUUID, in.ProjectID)
	if err != nil {
		s.log.Warn("check: the ledger could not answer", zap.String("instance_uuid", in.InstanceUUID), zap.String("project_id", in.ProjectID), zap.Error(err))
		remote.WriteError(w, http.StatusServiceUnavailable, "the ledger could not answer for this VM; retry later")
		return
	}
	remote.WriteJSON(w, http.StatusOK, dec.Report(sc.q.Candidates))
}

var errTooManyHosts = errors.New("a check covers at most " + strconv.Itoa(maxCheckHosts) + " hosts: name the hosts to check")

// allHosts lists every host the ledger knows.
func (s *Server) allHosts(r *http.Request) ([]string, error) {
	var names []string
	after := ""
	for {
		page, err := s.ledger.ListHosts(r.Context(), after, 1000)
		if err != nil {
			return nil, err
		}
		for _, h := range page.Hosts {
			names = append(names, h.Name)
		}
		if len(names) > maxCheckHosts {
			return nil, errTooManyHosts
		}
		if page.Next == "" || len(page.Hosts) == 0 {
			return names, nil
		}
		after = page.Next
	}
}
