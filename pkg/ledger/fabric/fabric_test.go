package fabric

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hyperledger/fabric-gateway/pkg/client"
	"github.com/hyperledger/fabric-protos-go-apiv2/common"
	"github.com/hyperledger/fabric-protos-go-apiv2/gateway"
	"github.com/hyperledger/fabric-protos-go-apiv2/peer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/proto"

	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/fabric/wire"
)

// fakeGateway is a peer's Gateway service whose answers a test scripts.
type fakeGateway struct {
	gateway.UnimplementedGatewayServer

	mu        sync.Mutex
	evaluate  func(ctx context.Context) (*gateway.EvaluateResponse, error)
	endorse   []func() (*gateway.EndorseResponse, error) // one per call, the last repeats
	commits   []peer.TxValidationCode                    // one per call, the last repeats
	endorsed  int
	submitted int
}

func (f *fakeGateway) Evaluate(ctx context.Context, _ *gateway.EvaluateRequest) (*gateway.EvaluateResponse, error) {
	return f.evaluate(ctx)
}

func (f *fakeGateway) Endorse(context.Context, *gateway.EndorseRequest) (*gateway.EndorseResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn := f.endorse[min(f.endorsed, len(f.endorse)-1)]
	f.endorsed++
	return fn()
}

func (f *fakeGateway) Submit(context.Context, *gateway.SubmitRequest) (*gateway.SubmitResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.submitted++
	return &gateway.SubmitResponse{}, nil
}

func (f *fakeGateway) CommitStatus(context.Context, *gateway.SignedCommitStatusRequest) (*gateway.CommitStatusResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	code := f.commits[min(f.submitted-1, len(f.commits)-1)]
	return &gateway.CommitStatusResponse{Result: code, BlockNumber: 7}, nil
}

// refused is the status a gateway returns when the chaincode refuses: the
// chaincode's message is in the details, not in the status message.
func refused(code codes.Code, msg string) error {
	st, _ := status.New(code, "evaluate call to endorser returned error: see details").WithDetails(
		&gateway.ErrorDetail{Address: "peer0:7051", MspId: "Org1MSP", Message: "chaincode response 500, " + msg})
	return st.Err()
}

// endorsed is an Endorse answer whose transaction carries result.
func endorsed(t *testing.T, result any) func() (*gateway.EndorseResponse, error) {
	b, err := json.Marshal(result)
	if err != nil {
		t.Fatal(err)
	}
	m := func(msg proto.Message) []byte {
		out, err := proto.Marshal(msg)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	action := &peer.ChaincodeAction{Response: &peer.Response{Status: 200, Payload: b}}
	prp := &peer.ProposalResponsePayload{Extension: m(action)}
	cap := &peer.ChaincodeActionPayload{Action: &peer.ChaincodeEndorsedAction{ProposalResponsePayload: m(prp)}}
	tx := &peer.Transaction{Actions: []*peer.TransactionAction{{Payload: m(cap)}}}
	payload := &common.Payload{
		Header: &common.Header{ChannelHeader: m(&common.ChannelHeader{ChannelId: "ledger"})},
		Data:   m(tx),
	}
	env := &common.Envelope{Payload: m(payload)}
	return func() (*gateway.EndorseResponse, error) {
		return &gateway.EndorseResponse{PreparedTransaction: env}, nil
	}
}

// newTestLedger serves fake over an in-memory connection and connects a
// Ledger to it with a throwaway identity.
func newTestLedger(t *testing.T, fake *fakeGateway, opts ...Option) *Ledger {
	t.Helper()
	return newTestLedgerWith(t, fake, opts...)
}

// newTestLedgerWith serves any Gateway service.
func newTestLedgerWith(t *testing.T, fake gateway.GatewayServer, opts ...Option) *Ledger {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer()
	gateway.RegisterGatewayServer(srv, fake)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	cfg := identityFiles(t)
	l, err := Connect(cfg, append([]Option{WithClientConnection(conn)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func identityFiles(t *testing.T) Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := Config{
		PeerEndpoint: "bufnet", TLSCAFile: filepath.Join(dir, "unused.pem"), MSPID: "Org1MSP",
		CertFile: filepath.Join(dir, "cert.pem"), KeyFile: filepath.Join(dir, "key.pem"),
	}
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(cfg.CertFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	must(os.WriteFile(cfg.KeyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk}), 0o600))
	return cfg
}

func TestEvaluateErrors(t *testing.T) {
	tests := []struct {
		name    string
		answer  error
		timeout time.Duration // of the caller's context; the fake then never answers
		kind    error
		text    string // the client-safe message
		ctxErr  error
	}{
		{name: "not found", answer: refused(codes.Unknown, "ledgerfence/not_found: host hm9 is not registered"), kind: ledger.ErrNotFound, text: "ledger: not found: host hm9 is not registered"},
		{name: "forbidden", answer: refused(codes.Unknown, "ledgerfence/forbidden: a host agent may write only its own host"), kind: ledger.ErrForbidden, text: "ledger: forbidden: a host agent may write only its own host"},
		{name: "invalid", answer: refused(codes.Aborted, "ledgerfence/invalid: country: \"XX\" is not an ISO 3166-1 alpha-2 country code"), kind: ledger.ErrInvalid, text: "country"},
		{name: "foreign chaincode error", answer: refused(codes.Unknown, "Function Nope not found in contract"), kind: ledger.ErrUnavailable, text: "could not serve"},
		{name: "peer unreachable", answer: status.Error(codes.Unavailable, "connection refused"), kind: ledger.ErrUnavailable, text: "unreachable"},
		{name: "identity refused by the peer", answer: status.Error(codes.PermissionDenied, "access denied"), kind: ledger.ErrForbidden, text: "refused this identity"},
		{name: "caller's deadline", timeout: 50 * time.Millisecond, kind: ledger.ErrUnavailable, text: "did not answer in time", ctxErr: context.DeadlineExceeded},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fake := &fakeGateway{evaluate: func(ctx context.Context) (*gateway.EvaluateResponse, error) {
				if tc.answer == nil {
					<-ctx.Done()
					return nil, status.FromContextError(ctx.Err()).Err()
				}
				return nil, tc.answer
			}}
			l := newTestLedger(t, fake)
			c := context.Background()
			if tc.timeout > 0 {
				var cancel context.CancelFunc
				c, cancel = context.WithTimeout(c, tc.timeout)
				defer cancel()
			}
			_, err := l.GetHost(c, "hm9")
			if !errors.Is(err, tc.kind) {
				t.Fatalf("want %v, got %v", tc.kind, err)
			}
			var le *ledger.Error
			if !errors.As(err, &le) || !strings.Contains(le.Error(), tc.text) {
				t.Errorf("message %q does not say %q", err, tc.text)
			}
			if strings.Contains(le.Error(), "peer0:7051") || strings.Contains(le.Error(), "chaincode response") {
				t.Errorf("message %q leaks the gateway's detail", le.Error())
			}
			if tc.ctxErr != nil && !errors.Is(err, tc.ctxErr) {
				t.Errorf("%v does not match %v", err, tc.ctxErr)
			}
		})
	}
}

func TestEvaluateTimeoutBoundsTheCall(t *testing.T) {
	fake := &fakeGateway{evaluate: func(ctx context.Context) (*gateway.EvaluateResponse, error) {
		<-ctx.Done()
		return nil, status.FromContextError(ctx.Err()).Err()
	}}
	l := newTestLedger(t, fake, WithEvaluateTimeout(30*time.Millisecond))
	_, err := l.GetHost(context.Background(), "hm1")
	if !errors.Is(err, ledger.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v", err)
	}
}

func TestCloseCancelsCalls(t *testing.T) {
	started := make(chan struct{})
	fake := &fakeGateway{evaluate: func(ctx context.Context) (*gateway.EvaluateResponse, error) {
		close(started)
		<-ctx.Done()
		return nil, status.FromContextError(ctx.Err()).Err()
	}}
	l := newTestLedger(t, fake)
	done := make(chan error, 1)
	go func() { _, err := l.GetHost(context.Background(), "hm1"); done <- err }()
	<-started
	l.Close()
	if err := <-done; !errors.Is(err, ledger.ErrUnavailable) {
		t.Fatalf("got %v", err)
	}
}

func TestEvaluateDecodes(t *testing.T) {
	rec := ledger.HostRecord{Host: filter.Host{Name: "hm1", Country: "JP", Organizations: []string{"A"}}, TxID: "t1"}
	b, _ := json.Marshal(rec)
	fake := &fakeGateway{evaluate: func(context.Context) (*gateway.EvaluateResponse, error) {
		return &gateway.EvaluateResponse{Result: &peer.Response{Status: 200, Payload: b}}, nil
	}}
	got, err := newTestLedger(t, fake).GetHost(context.Background(), "hm1")
	if err != nil || !got.Host.Equal(rec.Host) || got.TxID != "t1" {
		t.Fatalf("got %+v, %v", got, err)
	}
}

func TestSubmit(t *testing.T) {
	h := filter.Host{Name: "hm1", Country: "JP", Organizations: []string{"A"}}
	rec := ledger.HostRecord{Host: h, TxID: "t1"}
	changed := wire.PutHostResult{Record: rec, Changed: true}
	unchanged := wire.PutHostResult{Record: rec, Changed: false}
	mismatch := func() (*gateway.EndorseResponse, error) {
		return nil, status.Error(codes.Aborted, "failed to collect enough transaction endorsements")
	}
	denied := func() (*gateway.EndorseResponse, error) {
		return nil, refused(codes.Aborted, "ledgerfence/forbidden: host hm1 was registered through Org2MSP")
	}
	valid, policy, mvcc := peer.TxValidationCode_VALID, peer.TxValidationCode_ENDORSEMENT_POLICY_FAILURE, peer.TxValidationCode_MVCC_READ_CONFLICT
	tests := []struct {
		name                string
		endorse             []func() (*gateway.EndorseResponse, error)
		commits             []peer.TxValidationCode
		kind                error // nil: success
		changed             bool
		endorsed, submitted int
	}{
		{name: "committed", endorse: []func() (*gateway.EndorseResponse, error){endorsed(t, changed)}, commits: []peer.TxValidationCode{valid}, changed: true, endorsed: 1, submitted: 1},
		{name: "unchanged is not submitted", endorse: []func() (*gateway.EndorseResponse, error){endorsed(t, unchanged)}, commits: []peer.TxValidationCode{valid}, endorsed: 1},
		{name: "endorsement policy failure at commit", endorse: []func() (*gateway.EndorseResponse, error){endorsed(t, changed)}, commits: []peer.TxValidationCode{policy}, kind: ledger.ErrForbidden, endorsed: 1, submitted: 1},
		{name: "refused by the chaincode, tried again, refused", endorse: []func() (*gateway.EndorseResponse, error){denied}, kind: ledger.ErrForbidden, endorsed: refusalAttempts},
		{name: "refused by a peer behind, then endorsed", endorse: []func() (*gateway.EndorseResponse, error){denied, endorsed(t, changed)}, commits: []peer.TxValidationCode{valid}, changed: true, endorsed: 2, submitted: 1},
		{name: "endorsements differ, then agree", endorse: []func() (*gateway.EndorseResponse, error){mismatch, mismatch, endorsed(t, changed)}, commits: []peer.TxValidationCode{valid}, changed: true, endorsed: 3, submitted: 1},
		{name: "read conflict, then committed", endorse: []func() (*gateway.EndorseResponse, error){endorsed(t, changed)}, commits: []peer.TxValidationCode{mvcc, valid}, changed: true, endorsed: 2, submitted: 2},
		{name: "endorsements never agree", endorse: []func() (*gateway.EndorseResponse, error){mismatch}, kind: ledger.ErrUnavailable, endorsed: writeAttempts},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fake := &fakeGateway{endorse: tc.endorse, commits: tc.commits}
			l := newTestLedger(t, fake)
			got, ch, err := l.PutHost(context.Background(), h)
			if tc.kind == nil && err != nil || tc.kind != nil && !errors.Is(err, tc.kind) {
				t.Fatalf("want %v, got %v", tc.kind, err)
			}
			if err == nil && (ch != tc.changed || got.TxID != "t1") {
				t.Errorf("changed %v, record %+v", ch, got)
			}
			if fake.endorsed != tc.endorsed || fake.submitted != tc.submitted {
				t.Errorf("endorsed %d, submitted %d; want %d, %d", fake.endorsed, fake.submitted, tc.endorsed, tc.submitted)
			}
			if tc.name == "endorsement policy failure at commit" {
				var ce *client.CommitError
				if !errors.As(err, &ce) || ce.Code != policy {
					t.Errorf("the commit error is not kept: %v", err)
				}
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	full := Config{PeerEndpoint: "p:1", TLSCAFile: "ca", MSPID: "Org1MSP", CertFile: "c", KeyFile: "k"}
	if err := full.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mod := range map[string]func(*Config){
		"peer endpoint": func(c *Config) { c.PeerEndpoint = "" },
		"TLS CA":        func(c *Config) { c.TLSCAFile = "" },
		"MSP id":        func(c *Config) { c.MSPID = "" },
		"certificate":   func(c *Config) { c.CertFile = "" },
		"key":           func(c *Config) { c.KeyFile = "" },
	} {
		c := full
		mod(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("no error without the %s", name)
		}
	}
}
