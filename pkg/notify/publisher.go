package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// Defaults.
const (
	DefaultQueueSize      = 1024
	DefaultPublishTimeout = 5 * time.Second
	DefaultStream         = "ledgerfence"
	DefaultStreamSubjects = "ledgerfence.>"
	DefaultStreamMaxAge   = 7 * 24 * time.Hour
	DefaultDuplicates     = 2 * time.Minute

	// maxAttempts bounds the JetStream sends of one event while connected.
	maxAttempts = 5
)

// ErrInvalidConfig is returned by Connect for options that cannot work.
var ErrInvalidConfig = errors.New("notify: invalid configuration")

// JetStream configures the stream that WithJetStream makes sure exists. Zero
// fields take the defaults. An existing stream of that name is used as it is.
type JetStream struct {
	// Stream is the stream's name (DefaultStream).
	Stream string
	// Subjects the stream stores ([DefaultStreamSubjects]).
	Subjects []string
	// MaxAge is how long the stream keeps an event (DefaultStreamMaxAge).
	MaxAge time.Duration
	// Duplicates is the window in which a repeated Nats-Msg-Id is stored
	// once (DefaultDuplicates).
	Duplicates time.Duration
	// Replicas in a clustered JetStream (1).
	Replicas int
	// Memory keeps the stream in memory instead of on disk.
	Memory bool
}

func (j JetStream) withDefaults() JetStream {
	if j.Stream == "" {
		j.Stream = DefaultStream
	}
	if len(j.Subjects) == 0 {
		j.Subjects = []string{DefaultStreamSubjects}
	}
	if j.MaxAge == 0 {
		j.MaxAge = DefaultStreamMaxAge
	}
	if j.Duplicates == 0 {
		j.Duplicates = DefaultDuplicates
	}
	if j.Replicas == 0 {
		j.Replicas = 1
	}
	return j
}

func (j JetStream) streamConfig() jetstream.StreamConfig {
	storage := jetstream.FileStorage
	if j.Memory {
		storage = jetstream.MemoryStorage
	}
	return jetstream.StreamConfig{
		Name:        j.Stream,
		Description: "ledgerfence decisions, ledger changes and violations",
		Subjects:    j.Subjects,
		MaxAge:      j.MaxAge,
		Duplicates:  j.Duplicates,
		Replicas:    j.Replicas,
		Storage:     storage,
	}
}

type config struct {
	name           string
	logger         *zap.Logger
	reg            prometheus.Registerer
	queueSize      int
	publishTimeout time.Duration
	js             *JetStream
	natsOpts       []nats.Option
}

// Option configures a Publisher.
type Option func(*config)

// WithName sets the client name the NATS server shows (e.g. "filterd").
func WithName(name string) Option { return func(c *config) { c.name = name } }

// WithLogger sets the logger; the default discards.
func WithLogger(l *zap.Logger) Option { return func(c *config) { c.logger = l } }

// WithRegisterer registers the publisher's metrics on reg; without it they
// are kept but not exposed.
func WithRegisterer(reg prometheus.Registerer) Option { return func(c *config) { c.reg = reg } }

// WithQueueSize sets how many events may wait to be sent (DefaultQueueSize).
func WithQueueSize(n int) Option { return func(c *config) { c.queueSize = n } }

// WithPublishTimeout bounds the wait for a JetStream acknowledgement
// (DefaultPublishTimeout).
func WithPublishTimeout(d time.Duration) Option { return func(c *config) { c.publishTimeout = d } }

// WithJetStream publishes into a JetStream stream with duplicate detection
// instead of core NATS.
func WithJetStream(js JetStream) Option {
	return func(c *config) { j := js.withDefaults(); c.js = &j }
}

// WithNATSOptions passes options to nats.Connect (credentials, TLS, ...).
// Reconnection and the connection's event handlers are the publisher's own
// and override those given here.
func WithNATSOptions(opts ...nats.Option) Option {
	return func(c *config) { c.natsOpts = append(c.natsOpts, opts...) }
}

// Publisher sends events to NATS from one goroutine, fed by a bounded queue.
// Its methods are safe for concurrent use. A nil *Publisher drops every event
// silently, for a daemon run without NATS.
type Publisher struct {
	cfg config
	log *zap.Logger
	nc  *nats.Conn
	js  jetstream.JetStream

	mu     sync.RWMutex // guards closed against Publish
	closed bool
	queue  chan Event

	wake  chan struct{} // a (re)connect happened
	stop  chan struct{} // closed by Close: send what is queued, then exit
	done  chan struct{} // closed when the sender has exited
	abort context.Context
	quit  context.CancelFunc // gives up on sending

	published  *prometheus.CounterVec
	dropped    *prometheus.CounterVec
	collectors []prometheus.Collector // registered on cfg.reg
	dropping   atomic.Bool            // a drop was logged and no event was sent since

	streamReady bool // sender goroutine only

	// beforeSend, when set (tests), runs in the sender before each event.
	beforeSend func(Event)
}

// Connect starts a publisher for the NATS server(s) at url (comma-separated
// for a cluster). It does not fail when no server can be reached: the
// connection retries for ever and events wait meanwhile. It fails only for an
// invalid configuration or when its metrics cannot be registered.
func Connect(url string, opts ...Option) (*Publisher, error) {
	cfg := config{queueSize: DefaultQueueSize, publishTimeout: DefaultPublishTimeout}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.queueSize < 1 {
		return nil, fmt.Errorf("%w: queue size %d", ErrInvalidConfig, cfg.queueSize)
	}
	if cfg.publishTimeout <= 0 {
		return nil, fmt.Errorf("%w: publish timeout %v", ErrInvalidConfig, cfg.publishTimeout)
	}
	if cfg.logger == nil {
		cfg.logger = zap.NewNop()
	}
	p := &Publisher{
		cfg:   cfg,
		log:   cfg.logger.With(zap.String("component", "notify")),
		queue: make(chan Event, cfg.queueSize),
		wake:  make(chan struct{}, 1),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	p.abort, p.quit = context.WithCancel(context.Background())
	if err := p.registerMetrics(cfg.reg); err != nil {
		return nil, err
	}

	nopts := append([]nats.Option{}, cfg.natsOpts...)
	nopts = append(nopts,
		nats.Name(cfg.name),
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.ConnectHandler(func(c *nats.Conn) {
			p.log.Info("connected to NATS", zap.String("server", c.ConnectedUrlRedacted()))
			p.signal()
		}),
		nats.ReconnectHandler(func(c *nats.Conn) {
			p.log.Info("reconnected to NATS", zap.String("server", c.ConnectedUrlRedacted()))
			p.signal()
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				p.log.Warn("disconnected from NATS; events wait until it is back", zap.Error(err))
			}
		}),
	)
	nc, err := nats.Connect(url, nopts...)
	if err != nil {
		p.quit()
		p.unregisterMetrics(cfg.reg)
		return nil, fmt.Errorf("notify: connect %s: %w", url, err)
	}
	p.mu.Lock()
	p.nc = nc
	p.mu.Unlock()
	if cfg.js != nil {
		js, err := jetstream.New(nc)
		if err != nil {
			nc.Close()
			p.quit()
			p.unregisterMetrics(cfg.reg)
			return nil, fmt.Errorf("notify: jetstream: %w", err)
		}
		p.js = js
	}
	go p.run()
	return p, nil
}

func (p *Publisher) registerMetrics(reg prometheus.Registerer) error {
	p.published = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ledgerfence_notify_published_total",
		Help: "Events accepted by NATS (the client's buffer on core NATS, the stream's acknowledgement on JetStream), by subject.",
	}, []string{"subject"})
	p.dropped = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ledgerfence_notify_dropped_total",
		Help: "Events given up without being published (queue full, publisher closed, or sending failed), by subject.",
	}, []string{"subject"})
	for _, s := range Subjects() {
		p.published.WithLabelValues(s)
		p.dropped.WithLabelValues(s)
	}
	if reg == nil {
		return nil
	}
	cs := []prometheus.Collector{
		p.published,
		p.dropped,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "ledgerfence_notify_queue_length",
			Help: "Events waiting to be sent to NATS.",
		}, func() float64 { return float64(len(p.queue)) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "ledgerfence_notify_connected",
			Help: "1 while connected to a NATS server, else 0.",
		}, func() float64 {
			if nc := p.conn(); nc != nil && nc.IsConnected() {
				return 1
			}
			return 0
		}),
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			p.unregisterMetrics(reg)
			return fmt.Errorf("notify: register metrics: %w", err)
		}
		p.collectors = append(p.collectors, c)
	}
	return nil
}

func (p *Publisher) unregisterMetrics(reg prometheus.Registerer) {
	for _, c := range p.collectors {
		reg.Unregister(c)
	}
	p.collectors = nil
}

func (p *Publisher) conn() *nats.Conn {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.nc
}

func (p *Publisher) signal() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// Publish queues ev to be sent and returns at once. It reports whether ev was
// queued; when the queue is full or the publisher is closed, ev is dropped
// and counted. The publisher owns ev from then on: do not change its slices.
func (p *Publisher) Publish(ev Event) bool {
	if p == nil {
		return false
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		p.drop(ev, "publisher closed", nil)
		return false
	}
	select {
	case p.queue <- ev:
		return true
	default:
		p.drop(ev, "queue full", nil)
		return false
	}
}

// Connected reports whether the publisher is connected to a NATS server now.
func (p *Publisher) Connected() bool {
	if p == nil {
		return false
	}
	nc := p.conn()
	return nc != nil && nc.IsConnected()
}

// Close stops taking events, sends those queued until ctx ends, flushes and
// closes the connection. Events still queued when ctx ends are dropped and
// counted; the error then wraps ctx's.
func (p *Publisher) Close(ctx context.Context) error {
	if p == nil {
		return nil
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()

	close(p.stop)
	var err error
	select {
	case <-p.done:
	case <-ctx.Done():
		p.quit()
		<-p.done
		err = fmt.Errorf("notify: close: events left unsent: %w", ctx.Err())
	}
	if p.js == nil && p.nc.IsConnected() && err == nil {
		fctx, cancel := ctx, context.CancelFunc(func() {})
		if _, ok := ctx.Deadline(); !ok {
			fctx, cancel = context.WithTimeout(ctx, p.cfg.publishTimeout)
		}
		if ferr := p.nc.FlushWithContext(fctx); ferr != nil {
			err = fmt.Errorf("notify: close: flush: %w", ferr)
		}
		cancel()
	}
	p.quit()
	p.nc.Close()
	return err
}

func (p *Publisher) run() {
	defer close(p.done)
	for {
		select {
		case ev := <-p.queue:
			p.send(ev)
		case <-p.stop:
			for {
				select {
				case ev := <-p.queue:
					p.send(ev)
				default:
					return
				}
			}
		}
	}
}

func (p *Publisher) send(ev Event) {
	if p.beforeSend != nil {
		p.beforeSend(ev)
	}
	if p.abort.Err() != nil {
		p.drop(ev, "publisher closed before sending", nil)
		return
	}
	data, err := json.Marshal(ev)
	if err != nil {
		p.drop(ev, "cannot encode", err)
		return
	}
	if p.js == nil {
		if err := p.nc.PublishMsg(&nats.Msg{Subject: ev.Subject(), Data: data}); err != nil {
			p.drop(ev, "publish failed", err)
			return
		}
		p.sent(ev)
		return
	}
	p.sendJetStream(ev, data)
}

// sendJetStream sends one event until the stream acknowledges it. While the
// connection is down it waits for it; while connected it tries maxAttempts
// times. Every try carries the same Nats-Msg-Id, so a retry whose first try
// was stored after all is not stored twice.
func (p *Publisher) sendJetStream(ev Event, data []byte) {
	var err error
	for attempt := 1; attempt <= maxAttempts; attempt++ {
		if !p.waitConnected() {
			p.drop(ev, "publisher closed before sending", nil)
			return
		}
		if !p.streamReady {
			if err = p.ensureStream(); err != nil {
				p.log.Warn("cannot make sure the JetStream stream exists", zap.String("stream", p.cfg.js.Stream), zap.Error(err))
				if !p.backoff(attempt) {
					break
				}
				continue
			}
			p.streamReady = true
		}
		ctx, cancel := context.WithTimeout(p.abort, p.cfg.publishTimeout)
		msg := &nats.Msg{Subject: ev.Subject(), Data: data}
		_, err = p.js.PublishMsg(ctx, msg, jetstream.WithMsgID(ev.MsgID()))
		cancel()
		if err == nil {
			p.sent(ev)
			return
		}
		if errors.Is(err, jetstream.ErrNoStreamResponse) {
			p.streamReady = false // the stream may be gone (a server without its storage)
		}
		if !p.nc.IsConnected() {
			attempt-- // not a failure of this event: wait for the connection
		}
		if !p.backoff(attempt) {
			break
		}
	}
	p.drop(ev, "publish failed", err)
}

func (p *Publisher) ensureStream() error {
	ctx, cancel := context.WithTimeout(p.abort, p.cfg.publishTimeout)
	defer cancel()
	_, err := p.js.Stream(ctx, p.cfg.js.Stream)
	if err == nil {
		return nil
	}
	if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return err
	}
	_, err = p.js.CreateStream(ctx, p.cfg.js.streamConfig())
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return nil
	}
	if err == nil {
		p.log.Info("created JetStream stream", zap.String("stream", p.cfg.js.Stream), zap.Strings("subjects", p.cfg.js.Subjects))
	}
	return err
}

// waitConnected waits until the connection is up; false when giving up.
func (p *Publisher) waitConnected() bool {
	for !p.nc.IsConnected() {
		select {
		case <-p.wake:
		case <-p.abort.Done():
			return false
		}
	}
	return p.abort.Err() == nil
}

// backoff waits before another try; false when giving up.
func (p *Publisher) backoff(attempt int) bool {
	d := 100 * time.Millisecond << min(max(attempt, 0), 4)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-p.abort.Done():
		return false
	}
}

func (p *Publisher) sent(ev Event) {
	p.published.WithLabelValues(ev.Subject()).Inc()
	if p.dropping.Swap(false) {
		p.log.Info("publishing events again")
	}
}

func (p *Publisher) drop(ev Event, why string, err error) {
	p.dropped.WithLabelValues(ev.Subject()).Inc()
	if err != nil {
		p.log.Warn("event dropped", zap.String("subject", ev.Subject()), zap.String("msg_id", ev.MsgID()), zap.String("why", why), zap.Error(err))
		return
	}
	// Log a run of drops (a full queue) once, not once per event.
	if !p.dropping.Swap(true) {
		p.log.Warn("dropping events", zap.String("subject", ev.Subject()), zap.String("why", why))
	}
}
