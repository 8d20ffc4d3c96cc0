package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"go.uber.org/zap"

	"github.com/ledgerfence/ledgerfence/pkg/cache"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/backend"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/embedded"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/head"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/remote"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/tokens"
)

// headEvery is how often filterd signs its ledger's head again and
// publishes it, besides on every change.
const headEvery = time.Minute

// openEmbedded opens the embedded ledger in cfg.Data, signing its heads with
// the key kept there (made on first start). It refuses a ledger file that is
// not the ledger the directory held (package embedded's Open): filterd never
// serves an empty ledger in its place.
func openEmbedded(cfg config, log *zap.Logger) (*ledgerBackend, error) {
	if err := os.MkdirAll(cfg.Data, 0o750); err != nil {
		return nil, fmt.Errorf("embedded ledger: %w", err)
	}
	signer, created, err := head.LoadOrCreateSigner(cfg.Data)
	if err != nil {
		return nil, fmt.Errorf("embedded ledger in %s: the head signing key: %w", cfg.Data, err)
	}
	opened, err := backend.Open(context.Background(), cfg.Settings, backend.Options{CreateData: true,
		Embedded: []embedded.Option{embedded.WithLogger(log.Named("ledger")), embedded.WithHeadSigner(signer)}})
	if err != nil {
		return nil, err
	}
	l := opened.(*embedded.Ledger)
	msg := "ledger head signing key"
	if created {
		msg = "ledger head signing key created"
	}
	s, err := l.SignedHead(context.Background())
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("embedded ledger in %s: %w", cfg.Data, err)
	}
	log.Info(msg, zap.String("key_id", signer.KeyID()), zap.String("public_key", signer.PublicKeyBase64()),
		zap.String("public_key_file", filepath.Join(cfg.Data, head.PublicKeyFile)))
	if created && s.Height > 0 {
		log.Warn("a new head signing key for a ledger that has entries: clients that remember heads signed by the old key will refuse this filterd",
			zap.Uint64("height", s.Height))
	}
	writers, err := tokens.Open(filepath.Join(cfg.Data, tokens.FileName))
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("embedded ledger in %s: writer tokens: %w", cfg.Data, err)
	}
	return &ledgerBackend{Ledger: l, name: backendEmbedded, writable: true, writers: writers}, nil
}

// SignedHead implements remote.HeadSource: the embedded ledger's signed head;
// the other backends sign none (ErrNotFound).
func (b *ledgerBackend) SignedHead(ctx context.Context) (head.Signed, error) {
	if hs, ok := b.Ledger.(remote.HeadSource); ok {
		return hs.SignedHead(ctx)
	}
	return head.Signed{}, b.noHeads()
}

// HashAt implements remote.HeadSource.
func (b *ledgerBackend) HashAt(ctx context.Context, height uint64) (string, error) {
	if hs, ok := b.Ledger.(remote.HeadSource); ok {
		return hs.HashAt(ctx, height)
	}
	return "", b.noHeads()
}

func (b *ledgerBackend) noHeads() error {
	return ledger.Errorf(ledger.ErrNotFound, head.ErrNoHeads, "the "+b.name+" ledger publishes no signed heads")
}

// Damaged returns why the ledger may no longer be used (the embedded
// ledger found its file damaged while open), nil while it may.
func (b *ledgerBackend) Damaged() error {
	if d, ok := b.Ledger.(interface{ Damaged() error }); ok {
		return d.Damaged()
	}
	return nil
}

// damageGuard keeps filterd from deciding on a ledger whose file was found
// damaged while it ran: it is not ready, and every decision fails closed,
// cached entries included.
type damageGuard struct {
	*cache.Cache
	damaged func() error
}

// Ready implements api.Resolver.
func (g damageGuard) Ready() bool { return g.damaged() == nil && g.Cache.Ready() }

// Resolve implements api.Resolver.
func (g damageGuard) Resolve(ctx context.Context, q *cache.Query) error {
	if err := g.damaged(); err != nil {
		return err
	}
	return g.Cache.Resolve(ctx, q)
}

// publishHeads logs the embedded ledger's signed head when it changes and
// gives it to publish (when set) on every change and, signed again, every
// interval, until ctx ends.
func (b *ledgerBackend) publishHeads(ctx context.Context, log *zap.Logger, every time.Duration) {
	l, ok := b.Ledger.(*embedded.Ledger)
	if !ok {
		return
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	var last head.Head
	resign := false
	for {
		wake := l.Changes()
		sign := l.SignedHead
		if resign {
			sign = l.SignHead
		}
		s, err := sign(ctx)
		switch {
		case err != nil:
			if ctx.Err() == nil {
				log.Warn("the ledger's head cannot be signed", zap.Error(err))
			}
		case s.Head != last:
			log.Info("ledger head", zap.Uint64("height", s.Height), zap.String("hash", s.Hash),
				zap.String("key_id", s.KeyID), zap.Time("signed", s.Time), zap.String("signature", s.Signature))
			last = s.Head
			fallthrough
		case resign:
			if b.publish != nil {
				b.publish(s)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-wake:
			resign = false
		case <-tick.C:
			resign = true
		}
	}
}
