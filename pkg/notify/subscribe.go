package notify

import (
	"fmt"

	"github.com/nats-io/nats.go"
)

// Subscribe calls handle with every event of type T (DecisionDenied,
// LedgerChanged or Violation) published on its subject, in nats.go's
// callback goroutine for the subscription. A message that does not decode is
// passed to onError, or skipped when onError is nil.
//
//	sub, err := notify.Subscribe(nc, func(d notify.DecisionDenied) {
//		log.Printf("%s denied %d hosts", d.DecisionID, len(d.Denied))
//	}, nil)
func Subscribe[T Event](nc *nats.Conn, handle func(T), onError func(*nats.Msg, error)) (*nats.Subscription, error) {
	var zero T
	sub, err := nc.Subscribe(zero.Subject(), func(m *nats.Msg) {
		ev, err := Decode[T](m.Data)
		if err != nil {
			if onError != nil {
				onError(m, err)
			}
			return
		}
		handle(ev)
	})
	if err != nil {
		return nil, fmt.Errorf("notify: subscribe %s: %w", zero.Subject(), err)
	}
	return sub, nil
}
