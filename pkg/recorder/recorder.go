// Package recorder consumes Nova's versioned notifications from RabbitMQ and
// hands each move of a VM between hosts (pkg/nova/notify) to a Sink, which
// writes it on the ledger.
//
// The recorder declares its own durable queue (Config.Queue) and binds it
// to Nova's exchange with the routing keys of versioned notifications, so
// that it sees every notification whether or not another consumer reads
// oslo's default queue. Several replicas consume the same queue and split
// the messages between them.
//
// # Delivery contract
//
// A message is acked only after Sink.Record returned nil for its move, so
// a move is recorded at least once:
//
//   - a body that is not a notification (notify.ErrMalformed,
//     notify.ErrTooLarge), and a notification that places no VM (a
//     notify.Skip), are logged, counted and acked: never redelivered;
//   - a Record error is retried: after a backoff (Config.RetryMin to
//     RetryMax, growing while Record keeps failing) the message is nacked
//     with requeue, and the broker delivers it again, to this replica or
//     another;
//   - a Record error wrapped with Permanent is logged, counted and acked.
//     Messages are handled one at a time, so a move whose Record keeps
//     failing holds up this replica's queue: an error that comes from the
//     move itself, not from the ledger's availability, must be Permanent;
//   - a message in flight when the connection, the channel or the recorder
//     stops is returned to the queue by the broker, and delivered again.
//
// So the Sink sees duplicates (the same MessageID, or the same move sent
// twice by Nova), and moves out of order: a requeued message goes behind
// those already delivered, two replicas record concurrently, and Nova's own
// services send a VM's notifications from different hosts (a live
// migration's destination reports before its source). Idempotence, and
// ordering a VM's placements by Move.Time, are the Sink's job.
//
// The recorder reconnects, with capped exponential backoff, whenever the
// connection or the channel closes, declares and binds its queue again, and
// resumes consuming. Run stops when its context is cancelled: the message
// being recorded is finished or returned, and unacked ones go back to the
// queue.
package recorder

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/zap"

	"github.com/ledgerfence/ledgerfence/pkg/nova/notify"
)

// Sink records a move on the ledger. It must be idempotent: a move may be
// handed over more than once, and out of order (see the package comment).
// A nil error acks the message; any other error returns it to the queue,
// unless wrapped with Permanent. Record honours ctx.
type Sink interface {
	Record(ctx context.Context, m notify.Move) error
}

// SinkFunc adapts a function to Sink.
type SinkFunc func(ctx context.Context, m notify.Move) error

// Record calls f.
func (f SinkFunc) Record(ctx context.Context, m notify.Move) error { return f(ctx, m) }

// PermanentError is a Sink error that retrying cannot cure (the ledger
// refuses the move itself): the message is logged, counted and acked.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return "permanent: " + e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent marks err as permanent; nil stays nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &PermanentError{Err: err}
}

// Recorder consumes notifications and records moves. Make one with New.
type Recorder struct {
	cfg    Config
	sink   Sink
	log    *zap.Logger
	m      *Metrics
	redact redactor
	rand   func() float64
}

// Option configures a Recorder.
type Option func(*Recorder)

// WithLogger sets the logger (none by default).
func WithLogger(l *zap.Logger) Option { return func(r *Recorder) { r.log = l } }

// WithRegisterer registers the recorder's metrics on reg (none by default).
func WithRegisterer(reg prometheus.Registerer) Option {
	return func(r *Recorder) { r.m = NewMetrics(reg) }
}

// New checks cfg, fills its defaults and returns a Recorder; Run starts it.
func New(cfg Config, sink Sink, opts ...Option) (*Recorder, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if sink == nil {
		return nil, errors.New("recorder: no sink")
	}
	r := &Recorder{cfg: c, sink: sink, log: zap.NewNop(), m: NewMetrics(nil), redact: newRedactor(c.URL), rand: rand.Float64}
	for _, o := range opts {
		o(r)
	}
	if r.log == nil {
		r.log = zap.NewNop()
	}
	r.log = r.log.With(zap.String("amqp", RedactURL(c.URL)), zap.String("queue", c.Queue))
	return r, nil
}

// Run consumes until ctx is cancelled, reconnecting as often as it must;
// it returns nil then.
func (r *Recorder) Run(ctx context.Context) error {
	attempt := 0
	for {
		consumed, err := r.session(ctx)
		r.m.setConnected(false)
		if ctx.Err() != nil {
			r.log.Info("recorder stopped")
			return nil
		}
		if consumed {
			attempt = 0
		}
		wait := backoff(r.cfg.ReconnectMin, r.cfg.ReconnectMax, attempt, r.rand)
		attempt++
		r.m.reconnects.Inc()
		level := zap.WarnLevel
		var aerr *amqp.Error
		if errors.As(err, &aerr) && (aerr.Code == amqp.AccessRefused || aerr.Code == amqp.PreconditionFailed) {
			// Wrong credentials or permissions, or a queue or exchange that
			// exists with other arguments: an operator must act.
			level = zap.ErrorLevel
		}
		r.log.Log(level, "AMQP connection lost; reconnecting", zap.Error(r.redact.err(err)),
			zap.Duration("in", wait), zap.Int("attempt", attempt))
		if !sleep(ctx, wait) {
			r.log.Info("recorder stopped")
			return nil
		}
	}
}

// session connects, declares, consumes until the connection or the channel
// closes or ctx is done. consumed reports whether it got as far as
// consuming.
func (r *Recorder) session(ctx context.Context) (consumed bool, err error) {
	conn, err := amqp.DialConfig(r.cfg.URL, amqp.Config{
		Heartbeat:  r.cfg.Heartbeat,
		Locale:     "en_US",
		Dial:       amqp.DefaultDial(10 * time.Second),
		Properties: amqp.Table{"connection_name": r.cfg.ConnectionName},
	})
	if err != nil {
		return false, fmt.Errorf("dial: %w", err)
	}
	defer conn.Close()
	if err := r.declare(conn); err != nil {
		return false, err
	}
	ch, err := conn.Channel()
	if err != nil {
		return false, fmt.Errorf("channel: %w", err)
	}
	defer ch.Close()
	if err := ch.Qos(r.cfg.Prefetch, 0, false); err != nil {
		return false, fmt.Errorf("qos: %w", err)
	}
	deliveries, err := ch.Consume(r.cfg.Queue, "", false, false, false, false, nil)
	if err != nil {
		return false, fmt.Errorf("consume: %w", err)
	}
	connClosed := conn.NotifyClose(make(chan *amqp.Error, 1))
	chClosed := ch.NotifyClose(make(chan *amqp.Error, 1))
	r.m.setConnected(true)
	r.log.Info("consuming Nova's notifications", zap.String("exchange", r.cfg.Exchange),
		zap.Strings("routing_keys", r.cfg.RoutingKeys), zap.Int("prefetch", r.cfg.Prefetch))
	retry := 0
	for {
		select {
		case <-ctx.Done():
			return true, nil
		case d, ok := <-deliveries:
			if !ok {
				return true, closeReason(connClosed, chClosed)
			}
			if ctx.Err() != nil {
				// Stopping: the broker returns d, unacked, when the channel closes.
				return true, nil
			}
			r.handle(ctx, d, &retry)
		}
	}
}

// closeReason says why the deliveries stopped.
func closeReason(conn, ch chan *amqp.Error) error {
	select {
	case e := <-conn:
		if e != nil {
			return fmt.Errorf("connection closed: %w", e)
		}
	default:
	}
	select {
	case e := <-ch:
		if e != nil {
			return fmt.Errorf("channel closed: %w", e)
		}
	default:
	}
	return errors.New("deliveries stopped")
}

// declare makes sure the exchange exists, declares the queue and binds it.
// The exchange is first looked up passively, so that an exchange Nova
// declared is used as it is, whatever its arguments.
func (r *Recorder) declare(conn *amqp.Connection) error {
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("channel: %w", err)
	}
	err = ch.ExchangeDeclarePassive(r.cfg.Exchange, "topic", r.cfg.ExchangeDurable, false, false, false, nil)
	var aerr *amqp.Error
	if errors.As(err, &aerr) && aerr.Code == amqp.NotFound {
		// The passive declaration closed the channel: declare on a new one,
		// as oslo.messaging would.
		if ch, err = conn.Channel(); err != nil {
			return fmt.Errorf("channel: %w", err)
		}
		err = ch.ExchangeDeclare(r.cfg.Exchange, "topic", r.cfg.ExchangeDurable, false, false, false, nil)
		if err == nil {
			r.log.Info("declared Nova's exchange, which did not exist yet", zap.String("exchange", r.cfg.Exchange),
				zap.Bool("durable", r.cfg.ExchangeDurable))
		}
	}
	if err != nil {
		return fmt.Errorf("exchange %s: %w", r.cfg.Exchange, err)
	}
	var args amqp.Table
	if r.cfg.QueueType != "" {
		args = amqp.Table{"x-queue-type": r.cfg.QueueType}
	}
	if _, err := ch.QueueDeclare(r.cfg.Queue, true, false, false, false, args); err != nil {
		return fmt.Errorf("queue %s: %w", r.cfg.Queue, err)
	}
	for _, key := range r.cfg.RoutingKeys {
		if err := ch.QueueBind(r.cfg.Queue, key, r.cfg.Exchange, false, nil); err != nil {
			return fmt.Errorf("bind %s to %s with %s: %w", r.cfg.Queue, r.cfg.Exchange, key, err)
		}
	}
	return ch.Close()
}

// Results of a message, the values of ledgerfence_recorder_messages_total's
// label "result".
const (
	ResultRecorded  = "recorded"  // Record returned nil: acked
	ResultSkipped   = "skipped"   // a notification that places no VM: acked
	ResultMalformed = "malformed" // not a notification the recorder can read: acked
	ResultRetried   = "retried"   // Record failed: nacked, requeued
	ResultRejected  = "rejected"  // Record failed permanently: acked
)

// Results lists every result label.
func Results() []string {
	return []string{ResultRecorded, ResultSkipped, ResultMalformed, ResultRetried, ResultRejected}
}

// handle parses one delivery, records its move, and acks or nacks it.
// retry counts Record's consecutive failures, for the backoff.
func (r *Recorder) handle(ctx context.Context, d amqp.Delivery, retry *int) {
	r.m.inFlight.Inc()
	defer r.m.inFlight.Dec()
	res, err := notify.Parse(d.Body)
	switch {
	case err != nil:
		r.log.Warn("malformed notification acked and dropped", zap.Error(err),
			zap.Int("bytes", len(d.Body)), zap.String("routing_key", d.RoutingKey), zap.Bool("redelivered", d.Redelivered))
		r.ack(d, ResultMalformed)
		return
	case res.Skip != nil:
		r.log.Debug("notification skipped", zap.String("reason", string(res.Skip.Reason)),
			zap.String("event_type", res.Skip.EventType), zap.String("message_id", res.Skip.MessageID))
		r.ack(d, ResultSkipped)
		return
	}
	m := *res.Move
	fields := []zap.Field{zap.String("instance_uuid", m.VM), zap.String("op", string(m.Op)),
		zap.String("state", string(m.State)), zap.String("host", m.Host), zap.String("host_before", m.HostBefore),
		zap.String("request_id", m.RequestID), zap.String("message_id", m.MessageID),
		zap.String("event_type", m.EventType), zap.Bool("redelivered", d.Redelivered)}
	start := time.Now()
	err = r.sink.Record(ctx, m)
	r.m.recordDuration.Observe(time.Since(start).Seconds())
	var perm *PermanentError
	switch {
	case err == nil:
		*retry = 0
		r.log.Info("move recorded", fields...)
		r.ack(d, ResultRecorded)
	case errors.As(err, &perm):
		r.log.Error("move refused permanently; acked and dropped", append(fields, zap.Error(err))...)
		r.ack(d, ResultRejected)
	default:
		wait := backoff(r.cfg.RetryMin, r.cfg.RetryMax, *retry, r.rand)
		*retry++
		r.log.Warn("recording failed; message returned to the queue", append(fields, zap.Error(err),
			zap.Duration("after", wait), zap.Int("failures", *retry))...)
		sleep(ctx, wait)
		r.m.messages.WithLabelValues(ResultRetried).Inc()
		if err := d.Nack(false, true); err != nil {
			r.log.Warn("nack failed; the broker returns the message when the channel closes", zap.Error(r.redact.err(err)))
		}
	}
}

func (r *Recorder) ack(d amqp.Delivery, result string) {
	r.m.messages.WithLabelValues(result).Inc()
	if err := d.Ack(false); err != nil {
		// The channel is gone: the broker delivers the message again.
		r.log.Warn("ack failed; the message will be delivered again", zap.String("result", result),
			zap.Error(r.redact.err(err)))
	}
}

// backoff is the wait after the given failed attempt (0 for the first):
// min doubled per attempt, at most max, with ±20% jitter.
func backoff(min, max time.Duration, attempt int, rnd func() float64) time.Duration {
	d := min
	for i := 0; i < attempt && d < max; i++ {
		d *= 2
	}
	if d > max {
		d = max
	}
	if rnd != nil {
		d = time.Duration(float64(d) * (0.8 + 0.4*rnd()))
	}
	if d > max {
		d = max
	}
	return d
}

// sleep waits d, or less if ctx is done; it reports whether it waited d.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
