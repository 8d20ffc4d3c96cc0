package main

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/ledgerfence/ledgerfence/pkg/hostagent"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/backend"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/fabric"
	"github.com/ledgerfence/ledgerfence/pkg/notify"
)

// openLedger opens the ledger of --ledger: a filterd URL or fabric
// (pkg/ledger/backend).
func openLedger(ctx context.Context, cfg hostagent.Config, log *zap.Logger) (ledger.Ledger, error) {
	return backend.Open(ctx, cfg.Settings, backend.Options{
		Fabric: []fabric.Option{fabric.WithLogger(log), fabric.WithEvaluateTimeout(cfg.AttemptTimeout), fabric.WithSubmitTimeout(2 * cfg.AttemptTimeout)},
	})
}

// violationPublisher sends the sweep's violations to NATS.
type violationPublisher struct{ p *notify.Publisher }

func newPublisher(url string, log *zap.Logger, reg prometheus.Registerer) (*violationPublisher, error) {
	p, err := notify.Connect(url, notify.WithName("ledgerfence-hostagent"), notify.WithLogger(log), notify.WithRegisterer(reg))
	if err != nil {
		return nil, fmt.Errorf("%w: --nats: %v", hostagent.ErrUsage, err)
	}
	return &violationPublisher{p: p}, nil
}

func (v *violationPublisher) PublishViolation(vio hostagent.Violation) bool {
	return v.p.Publish(notify.NewViolation(vio.InstanceUUID, vio.ProjectID, vio.Verdict, vio.Time))
}

func (v *violationPublisher) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	v.p.Close(ctx) //nolint:errcheck
}
