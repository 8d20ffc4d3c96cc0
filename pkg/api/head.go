package api

import (
	"context"
	"net/http"
	"strconv"

	ledgerhead "github.com/ledgerfence/ledgerfence/pkg/ledger/head"
)

// HeadSource is a ledger that signs its heads: the embedded ledger (through
// filterd's backend). A ledger that is not one, or answers SignedHead with
// ledger.ErrNotFound, serves no heads (404).
type HeadSource interface {
	// SignedHead returns the latest signed head.
	SignedHead(ctx context.Context) (ledgerhead.Signed, error)
	// HashAt returns the hash of the entry at height (ErrNotFound above
	// the ledger's height).
	HashAt(ctx context.Context, height uint64) (string, error)
}

// ledgerHead serves GET /v1/ledger/head: the latest signed head (height,
// hash, time, key id, public key, signature), and with ?at=N the hash of the
// ledger's entry at height N ({"height": N, "hash": "..."}, unsigned), with
// which a client that remembers a head checks that the ledger still holds
// it.
func (s *Server) ledgerHead(w http.ResponseWriter, r *http.Request) {
	hs, ok := s.ledger.(HeadSource)
	if !ok {
		writeError(w, http.StatusNotFound, "this filterd's "+s.cfg.Backend+" ledger publishes no signed heads")
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	if v := r.URL.Query().Get("at"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			writeError(w, http.StatusBadRequest, "at must be a height (a block number)")
			return
		}
		hash, err := hs.HashAt(r.Context(), n)
		if err != nil {
			s.ledgerError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, ledgerhead.Head{Height: n, Hash: hash})
		return
	}
	sh, err := hs.SignedHead(r.Context())
	if err != nil {
		s.ledgerError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, sh)
}
