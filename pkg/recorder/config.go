package recorder

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Defaults, applied by New to the fields left zero.
const (
	DefaultExchange     = "nova" // oslo.messaging's control_exchange, as Nova sets it
	DefaultQueue        = "ledgerfence-recorder"
	DefaultPrefetch     = 32
	DefaultReconnectMin = 500 * time.Millisecond
	DefaultReconnectMax = 30 * time.Second
	DefaultRetryMin     = 200 * time.Millisecond
	DefaultRetryMax     = 10 * time.Second
	DefaultHeartbeat    = 10 * time.Second
)

// DefaultRoutingKeys are the routing keys oslo.messaging's rabbit driver
// gives Nova's versioned notifications (topic versioned_notifications,
// priorities info and error).
func DefaultRoutingKeys() []string {
	return []string{"versioned_notifications.info", "versioned_notifications.error"}
}

// Config says where the notifications are and how to consume them.
type Config struct {
	// URL is the broker's, amqp:// or amqps://, user and password included
	// (as in Nova's transport_url, with the scheme amqp). Never logged with
	// its password.
	URL string
	// Exchange is Nova's notification exchange (oslo's control_exchange):
	// "nova" unless nova.conf says otherwise.
	Exchange string
	// ExchangeDurable is used only when the exchange does not exist yet and
	// the recorder declares it: it must match oslo.messaging's
	// [oslo_messaging_rabbit] amqp_durable_queues (false by default), or
	// Nova's own declaration fails.
	ExchangeDurable bool
	// Queue is the recorder's durable queue, shared by every replica so that
	// they split the messages. It must not be oslo's own default queue
	// (versioned_notifications.info), which is declared with oslo's
	// arguments and which another consumer may read.
	Queue string
	// QueueType is the queue's x-queue-type: "" (the broker's default,
	// classic), "classic" or "quorum" (replicated across a cluster).
	QueueType string
	// RoutingKeys bind Queue to Exchange; DefaultRoutingKeys when empty.
	RoutingKeys []string
	// Prefetch is how many deliveries the broker sends ahead of the acks.
	Prefetch int
	// ReconnectMin and ReconnectMax bound the exponential backoff between
	// connection attempts.
	ReconnectMin, ReconnectMax time.Duration
	// RetryMin and RetryMax bound the exponential backoff before a message
	// whose Record failed is returned to the queue.
	RetryMin, RetryMax time.Duration
	// Heartbeat is the AMQP heartbeat interval: a dead broker is noticed
	// within about two of them.
	Heartbeat time.Duration
	// ConnectionName is shown in RabbitMQ's management views.
	ConnectionName string
}

// withDefaults returns c with its zero fields set and checked.
func (c Config) withDefaults() (Config, error) {
	if c.URL == "" {
		return c, errors.New("recorder: no AMQP URL")
	}
	if _, err := amqp.ParseURI(c.URL); err != nil {
		// ParseURI's error may quote the URL, password included.
		return c, fmt.Errorf("recorder: AMQP URL %s is not an amqp:// or amqps:// URL", RedactURL(c.URL))
	}
	if c.Exchange == "" {
		c.Exchange = DefaultExchange
	}
	if c.Queue == "" {
		c.Queue = DefaultQueue
	}
	if len(c.RoutingKeys) == 0 {
		c.RoutingKeys = DefaultRoutingKeys()
	}
	switch c.QueueType {
	case "", "classic", "quorum":
	default:
		return c, fmt.Errorf("recorder: queue type %q: want classic or quorum", c.QueueType)
	}
	if c.Prefetch == 0 {
		c.Prefetch = DefaultPrefetch
	}
	if c.Prefetch < 0 || c.Prefetch > 65535 {
		return c, fmt.Errorf("recorder: prefetch %d: want 1 to 65535", c.Prefetch)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.ReconnectMin, DefaultReconnectMin)
	def(&c.ReconnectMax, DefaultReconnectMax)
	def(&c.RetryMin, DefaultRetryMin)
	def(&c.RetryMax, DefaultRetryMax)
	def(&c.Heartbeat, DefaultHeartbeat)
	if c.ReconnectMax < c.ReconnectMin {
		c.ReconnectMax = c.ReconnectMin
	}
	if c.RetryMax < c.RetryMin {
		c.RetryMax = c.RetryMin
	}
	if c.ConnectionName == "" {
		c.ConnectionName = "ledgerfence-recorder"
	}
	return c, nil
}

// RedactURL returns u with its password replaced, fit for a log line; a URL
// that does not parse is not repeated at all.
func RedactURL(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "(unparsable URL)"
	}
	return p.Redacted()
}

// redactor removes a URL's password from text (an error from the AMQP
// client, say), in the forms it may take.
type redactor struct{ secrets []string }

func newRedactor(u string) redactor {
	var r redactor
	p, err := url.Parse(u)
	if err != nil || p.User == nil {
		return r
	}
	if pw, ok := p.User.Password(); ok && pw != "" {
		r.secrets = append(r.secrets, pw)
		if esc := url.QueryEscape(pw); esc != pw {
			r.secrets = append(r.secrets, esc)
		}
		if esc := url.PathEscape(pw); esc != pw {
			r.secrets = append(r.secrets, esc)
		}
	}
	return r
}

func (r redactor) text(s string) string {
	for _, sec := range r.secrets {
		s = strings.ReplaceAll(s, sec, "xxxxx")
	}
	return s
}

// err returns err with the password removed from its text.
func (r redactor) err(err error) error {
	if err == nil || len(r.secrets) == 0 {
		return err
	}
	s := err.Error()
	if t := r.text(s); t != s {
		return errors.New(t)
	}
	return err
}
