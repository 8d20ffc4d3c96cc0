package notify

import (
	"time"

	"github.com/ledgerfence/ledgerfence/pkg/ledger/head"
)

// SubjectLedgerHead carries the embedded ledger's signed heads.
const SubjectLedgerHead = "ledgerfence.ledger.head"

var _ Event = LedgerHead{}

// LedgerHead is the payload of ledgerfence.ledger.head: the embedded
// ledger's head (height, hash of the last entry), signed by the filterd that
// keeps it, published on every change and periodically. A subscriber that
// keeps the heads it received can later check the ledger against them
// (ledgerctl verify --expect-head, or a head.Witness): a chain rewritten or
// rolled back past a kept head no longer holds it. Verify the signature with
// head.Signed's Verify and the filterd's public key (its head.pub).
type LedgerHead struct {
	V         int       `json:"v"`
	Height    uint64    `json:"height"`
	Hash      string    `json:"hash"`
	Time      time.Time `json:"time"`
	KeyID     string    `json:"key_id"`
	PublicKey string    `json:"public_key"`
	Signature string    `json:"signature"`
}

// Subject implements Event.
func (LedgerHead) Subject() string { return SubjectLedgerHead }

// MsgID implements Event: the head and the time it was signed.
func (h LedgerHead) MsgID() string {
	return "head:" + h.KeyID + ":" + h.Hash + ":" + h.Time.UTC().Format(time.RFC3339Nano)
}

// NewLedgerHead builds the event for a signed head.
func NewLedgerHead(s head.Signed) LedgerHead {
	return LedgerHead{
		V: Version, Height: s.Height, Hash: s.Hash, Time: s.Time.UTC(),
		KeyID: s.KeyID, PublicKey: s.PublicKey, Signature: s.Signature,
	}
}

// Signed returns the signed head the event carries.
func (h LedgerHead) Signed() head.Signed {
	return head.Signed{
		Head: head.Head{Height: h.Height, Hash: h.Hash}, Time: h.Time,
		KeyID: h.KeyID, PublicKey: h.PublicKey, Signature: h.Signature,
	}
}
