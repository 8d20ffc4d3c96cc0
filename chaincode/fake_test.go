package chaincode

import (
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/hyperledger/fabric-chaincode-go/v2/pkg/cid"
	"github.com/hyperledger/fabric-chaincode-go/v2/shim"
	"github.com/hyperledger/fabric-protos-go-apiv2/ledger/queryresult"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// ledgerState is a small fake of a peer's world state and history database:
// a transaction reads the committed state (as on Fabric, it does not see its
// own writes) and its writes and event apply only if it succeeds.
type ledgerState struct {
	state   map[string][]byte
	history map[string][]*queryresult.KeyModification // oldest first
	events  []event
	txs     int
	clock   time.Time
}

type event struct {
	name    string
	payload []byte
}

func newLedgerState() *ledgerState {
	return &ledgerState{
		state:   map[string][]byte{},
		history: map[string][]*queryresult.KeyModification{},
		clock:   time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
	}
}

// fakeStub is one transaction's stub. Methods the contract does not use
// panic through the nil embedded interface.
type fakeStub struct {
	shim.ChaincodeStubInterface
	l      *ledgerState
	txID   string
	at     time.Time
	writes map[string][]byte
	order  []string
	event  *event
}

func (s *fakeStub) GetTxID() string { return s.txID }
func (s *fakeStub) GetTxTimestamp() (*timestamppb.Timestamp, error) {
	return timestamppb.New(s.at), nil
}

func (s *fakeStub) GetState(key string) ([]byte, error) { return s.l.state[key], nil }

func (s *fakeStub) GetMultipleStates(keys ...string) ([][]byte, error) {
	out := make([][]byte, len(keys))
	for i, k := range keys {
		out[i] = s.l.state[k]
	}
	return out, nil
}

func (s *fakeStub) PutState(key string, value []byte) error {
	if _, ok := s.writes[key]; !ok {
		s.order = append(s.order, key)
	}
	s.writes[key] = value
	return nil
}

func (s *fakeStub) SetEvent(name string, payload []byte) error {
	s.event = &event{name: name, payload: payload}
	return nil
}

func (s *fakeStub) GetStateByRange(start, end string) (shim.StateQueryIteratorInterface, error) {
	var keys []string
	for k := range s.l.state {
		if k >= start && k < end {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	it := &rangeIter{}
	for _, k := range keys {
		it.kvs = append(it.kvs, &queryresult.KV{Key: k, Value: s.l.state[k]})
	}
	return it, nil
}

func (s *fakeStub) GetHistoryForKey(key string) (shim.HistoryQueryIteratorInterface, error) {
	h := s.l.history[key]
	it := &historyIter{}
	for i := len(h) - 1; i >= 0; i-- { // newest first, as Fabric 2 returns it
		it.mods = append(it.mods, h[i])
	}
	return it, nil
}

type rangeIter struct {
	kvs []*queryresult.KV
	i   int
}

func (it *rangeIter) HasNext() bool { return it.i < len(it.kvs) }
func (it *rangeIter) Close() error  { return nil }
func (it *rangeIter) Next() (*queryresult.KV, error) {
	if it.i >= len(it.kvs) {
		return nil, errors.New("no more")
	}
	it.i++
	return it.kvs[it.i-1], nil
}

type historyIter struct {
	mods []*queryresult.KeyModification
	i    int
}

func (it *historyIter) HasNext() bool { return it.i < len(it.mods) }
func (it *historyIter) Close() error  { return nil }
func (it *historyIter) Next() (*queryresult.KeyModification, error) {
	if it.i >= len(it.mods) {
		return nil, errors.New("no more")
	}
	it.i++
	return it.mods[it.i-1], nil
}

// fakeIdentity is a client identity with an MSP, a subject and attributes.
type fakeIdentity struct {
	msp   string
	cn    string
	attrs map[string]string
}

func (f fakeIdentity) GetID() (string, error) {
	id := fmt.Sprintf("x509::CN=%s,OU=client::CN=ca.%s", f.cn, f.msp)
	return base64.StdEncoding.EncodeToString([]byte(id)), nil
}
func (f fakeIdentity) GetMSPID() (string, error) { return f.msp, nil }
func (f fakeIdentity) GetAttributeValue(name string) (string, bool, error) {
	v, ok := f.attrs[name]
	return v, ok, nil
}
func (f fakeIdentity) AssertAttributeValue(name, value string) error {
	if v, ok := f.attrs[name]; !ok || v != value {
		return fmt.Errorf("attribute %s is not %s", name, value)
	}
	return nil
}
func (f fakeIdentity) GetX509Certificate() (*x509.Certificate, error) { return nil, nil }

// fakeCtx is a transaction context over a fake stub and identity.
type fakeCtx struct {
	stub *fakeStub
	id   cid.ClientIdentity
}

func (c *fakeCtx) GetStub() shim.ChaincodeStubInterface  { return c.stub }
func (c *fakeCtx) GetClientIdentity() cid.ClientIdentity { return c.id }

// tx runs one transaction as id and, if it succeeds, commits its writes and
// event. It returns what the transaction wrote, for assertions.
func (l *ledgerState) tx(id fakeIdentity, fn func(ctx Ctx) error) (writes []string, ev *event, err error) {
	l.txs++
	l.clock = l.clock.Add(time.Second)
	stub := &fakeStub{l: l, txID: fmt.Sprintf("tx%03d", l.txs), at: l.clock, writes: map[string][]byte{}}
	if err := fn(&fakeCtx{stub: stub, id: id}); err != nil {
		return nil, nil, err
	}
	for _, k := range stub.order {
		v := stub.writes[k]
		l.state[k] = v
		l.history[k] = append(l.history[k], &queryresult.KeyModification{TxId: stub.txID, Value: v, Timestamp: timestamppb.New(stub.at)})
	}
	if stub.event != nil {
		l.events = append(l.events, *stub.event)
	}
	return stub.order, stub.event, nil
}

// must fails the test when err is not nil.
func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
