// Package notify publishes ledgerfence's events on NATS and decodes them for
// consumers: every webhook decision that denied a host, every change of the
// ledger, and every violation found by a host agent's sweep.
//
// # Subjects and payloads
//
// Each subject carries one JSON document per message. Every document has a
// field "v", the payload version (Version, now 1). Fields are only ever added
// within a version; a change that removes or re-types a field raises it.
// Consumers should ignore unknown fields and refuse a "v" they do not know.
//
//	ledgerfence.decision.denied  DecisionDenied, one per webhook decision that denied at least one host
//	ledgerfence.ledger.changed   LedgerChanged, one per ledger write (host or regulation, put or delete)
//	ledgerfence.violation        Violation, one per VM found on a host its regulations forbid
//	ledgerfence.ledger.head      LedgerHead, the embedded ledger's signed head, on every change and every minute
//
// An example of ledgerfence.decision.denied:
//
//	{"v":1,"decision_id":"0f6c…","request_id":"req-8a3…","instance_uuid":"6f1c…",
//	 "project_id":"p1","operation":"live_migrate","candidates":3,"allowed":1,
//	 "denied":[{"host":"de-1","reason":"country_not_allowed",
//	            "detail":"country DE is not allowed by vm:6f1c…","regulation":"vm:6f1c…"}],
//	 "summary":"1/3 hosts eligible: 2 country_not_allowed","ledger_height":42,
//	 "time":"2026-11-25T20:41:05.123Z"}
//
// Reasons are pkg/filter's closed set (country_not_allowed,
// organization_not_allowed, host_unregistered, ledger_unavailable,
// vm_unregulated, host_unattested); details are words for people.
//
// # Publishing
//
// Connect never fails because NATS is down: the connection retries for ever in
// the background, and events published meanwhile wait in the client's
// reconnect buffer (core NATS) or in the publisher's queue (JetStream). A
// Publish call never blocks: it puts the event on a bounded queue that one
// goroutine sends from, and when the queue is full the event is dropped and
// counted in ledgerfence_notify_dropped_total{subject}.
//
// With WithJetStream the publisher makes sure a stream (by default
// "ledgerfence", on the subjects "ledgerfence.>") exists, and sends every event
// with a Nats-Msg-Id header: the decision id, the ledger transaction id and
// key, the violation's id, or the head's key, hash and signing time. Several
// filterd replicas that all see the same ledger change therefore store it
// once, within the stream's duplicate window.
//
// # Metrics
//
//	ledgerfence_notify_published_total{subject}  events NATS accepted
//	ledgerfence_notify_dropped_total{subject}    events given up: queue full, closed, or failed to send
//	ledgerfence_notify_queue_length              events waiting to be sent
//	ledgerfence_notify_connected                 1 while connected to a NATS server, else 0
package notify
