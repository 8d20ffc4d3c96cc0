package main

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"go.uber.org/zap"

	"github.com/ledgerfence/ledgerfence/pkg/hostagent"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/head"
)

// headWitness checks the filterd's signed head before every registration
// (hostagent.HeadChecker): it must be signed by the same key and extend the
// last head seen, which is kept in --head-state.
type headWitness struct {
	w   *head.Witness
	src head.Source
	log *zap.Logger

	mu      sync.Mutex
	last    head.Head
	unheard bool // logged that the ledger signs no heads
}

var _ hostagent.HeadChecker = (*headWitness)(nil)

// newHeadWitness returns the witness of the filterd that l talks to; nil for
// a ledger that is not a filterd (Fabric).
func newHeadWitness(cfg hostagent.Config, l ledger.Ledger, log *zap.Logger) (*headWitness, error) {
	src, ok := l.(head.Source)
	if !ok {
		return nil, nil
	}
	var key []byte
	if cfg.HeadKey != "" {
		k, err := head.LoadPublicKey(cfg.HeadKey)
		if err != nil {
			return nil, fmt.Errorf("%w: --head-key: %v", hostagent.ErrUsage, err)
		}
		key = k
	}
	state := cfg.HeadState
	if state == "none" {
		state = ""
	}
	w, err := head.NewWitness(state, key)
	if err != nil {
		return nil, fmt.Errorf("the ledger's last head seen cannot be read: %w", err)
	}
	if state == "" {
		log.Warn("no --head-state: the ledger's last signed head is remembered only while this agent runs, so a ledger rolled back or rewritten between runs is not noticed")
	} else if last, ok := w.Last(); ok {
		log.Info("last ledger head seen", zap.String("head_state", state), zap.Uint64("height", last.Height), zap.String("hash", last.Hash), zap.String("key_id", last.KeyID))
	}
	return &headWitness{w: w, src: src, log: log}, nil
}

// CheckHead implements hostagent.HeadChecker.
func (h *headWitness) CheckHead(ctx context.Context) error {
	s, err := h.w.Check(ctx, h.src)
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case errors.Is(err, head.ErrRefused):
		h.log.Error("the ledger is refused: its signed head does not extend the last one this agent saw; nothing is written to it (if it was replaced on purpose, remove --head-state's file)",
			zap.String("head_state", h.w.Path()), zap.Error(err))
		return err
	case errors.Is(err, head.ErrNoHeads):
		if !h.unheard {
			h.unheard = true
			h.log.Info("the ledger signs no heads (a filterd on Fabric): none is checked")
		}
		return nil
	case err != nil:
		return err
	}
	if s.Head != h.last {
		h.last = s.Head
		h.log.Info("ledger head checked", zap.Uint64("height", s.Height), zap.String("hash", s.Hash), zap.String("key_id", s.KeyID))
	}
	return nil
}
