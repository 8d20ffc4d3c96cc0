package recorder_test

import (
	"context"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/ledgerfence/ledgerfence/pkg/recorder/rabbittest"
)

// TestRabbitNode: the private node starts, keeps a durable queue's
// persistent message across a restart, and answers on the same URL after it.
func TestRabbitNode(t *testing.T) {
	n := rabbittest.Start(t)
	c, err := amqp.Dial(n.URL)
	if err != nil {
		t.Fatal(err)
	}
	ch, err := c.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare("q", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.PublishWithContext(context.Background(), "", "q", false, false,
		amqp.Publishing{DeliveryMode: amqp.Persistent, Body: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if err := n.Restart(); err != nil {
		t.Fatal(err)
	}
	ready, _, err := n.QueueDepth(context.Background(), "q")
	if err != nil {
		t.Fatal(err)
	}
	if ready != 1 {
		t.Fatalf("%d messages ready after the restart, want 1", ready)
	}
}
