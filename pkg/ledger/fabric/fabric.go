// Package fabric is the ledger.Ledger, ledger.Governance and
// ledger.Residency backend over Hyperledger Fabric: it talks to one peer's
// Gateway service (fabric-gateway) with the caller's own X.509 identity, and
// to ledgerfence's chaincode (package chaincode).
//
// Reads are evaluated on the peer; writes are endorsed (by as many
// organisations as the endorsement policy needs), submitted to the orderer
// and waited for until committed. A write whose endorsement shows the record
// unchanged is not submitted at all. A transaction that the peers commit as
// anything but VALID is an error: nothing was written.
//
// Error contract: every error matches, with errors.Is, one of pkg/ledger's
// sentinels. A refusal by the chaincode keeps its kind: ErrForbidden (the
// access rules; also a transaction the network's endorsement policy rejects),
// ErrInvalid (pkg/filter's rules) and ErrNotFound, with the chaincode's
// message, which names the rule. Everything else, an unreachable peer, a
// deadline, a conflicting concurrent write, is ErrUnavailable: the caller may
// retry. The underlying fabric-gateway error is kept for errors.As (e.g.
// *client.EndorseError, *client.CommitError).
package fabric

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/hyperledger/fabric-gateway/pkg/client"
	"github.com/hyperledger/fabric-gateway/pkg/identity"
	"github.com/hyperledger/fabric-protos-go-apiv2/common"
	"github.com/hyperledger/fabric-protos-go-apiv2/peer"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/ledgerfence/ledgerfence/pkg/decide"
	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/fabric/wire"
)

// Defaults of Config and of the options.
const (
	DefaultChannel         = "ledger"
	DefaultChaincode       = "ledgerfence"
	DefaultEvaluateTimeout = 5 * time.Second
	DefaultSubmitTimeout   = 30 * time.Second
)

// Config says where the peer is and who the client is. Paths are PEM files.
type Config struct {
	// PeerEndpoint is the peer's host:port (its Gateway service).
	PeerEndpoint string
	// TLSCAFile is the CA certificate that the peer's TLS certificate chains to.
	TLSCAFile string
	// ServerName overrides the name checked in the peer's TLS certificate
	// (e.g. peer0.org1.example.com when dialling 127.0.0.1).
	ServerName string
	// MSPID is the client's organisation, e.g. Org1MSP.
	MSPID string
	// CertFile and KeyFile are the client's enrolment certificate and key.
	CertFile string
	KeyFile  string
	// Channel and Chaincode default to DefaultChannel and DefaultChaincode.
	Channel   string
	Chaincode string
}

// Validate reports the first missing setting.
func (c Config) Validate() error {
	switch {
	case c.PeerEndpoint == "":
		return errors.New("fabric: the peer endpoint (host:port) is required")
	case c.TLSCAFile == "":
		return errors.New("fabric: the peer's TLS CA certificate file is required")
	case c.MSPID == "":
		return errors.New("fabric: the MSP id is required")
	case c.CertFile == "" || c.KeyFile == "":
		return errors.New("fabric: the client certificate and key files are required")
	}
	return nil
}

// Option tunes a Ledger.
type Option func(*options)

type options struct {
	evaluateTimeout time.Duration
	submitTimeout   time.Duration
	endorsingOrgs   []string
	checkpointFile  string
	reconnect       time.Duration
	log             *zap.Logger
	conn            grpc.ClientConnInterface
}

// WithEvaluateTimeout bounds every read (DefaultEvaluateTimeout); a shorter
// deadline of the caller's context wins.
func WithEvaluateTimeout(d time.Duration) Option { return func(o *options) { o.evaluateTimeout = d } }

// WithSubmitTimeout bounds every write from endorsement to commit status
// (DefaultSubmitTimeout); a shorter deadline of the caller's context wins.
func WithSubmitTimeout(d time.Duration) Option { return func(o *options) { o.submitTimeout = d } }

// WithEndorsingOrganizations asks for endorsements from these organisations
// only, instead of the ones the endorsement policy needs. Meant for tests:
// with too few, the peers invalidate the transaction at commit and the write
// fails with ErrForbidden.
func WithEndorsingOrganizations(mspIDs ...string) Option {
	return func(o *options) { o.endorsingOrgs = mspIDs }
}

// WithCheckpointFile makes Watch record, in this file, the position of every
// event it has handed over (synced to disk), and resume from it.
func WithCheckpointFile(path string) Option { return func(o *options) { o.checkpointFile = path } }

// WithReconnect makes Watch reopen a broken event stream after the given
// pause, from the last event handed over, until its context ends. Without it
// Watch closes its channel when the stream breaks.
func WithReconnect(pause time.Duration) Option { return func(o *options) { o.reconnect = pause } }

// WithLogger sets the logger (default: none).
func WithLogger(l *zap.Logger) Option { return func(o *options) { o.log = l } }

// WithClientConnection uses conn instead of dialling cfg.PeerEndpoint; the
// caller closes it. For tests at the gRPC boundary.
func WithClientConnection(conn grpc.ClientConnInterface) Option {
	return func(o *options) { o.conn = conn }
}

// Ledger is a ledger.Ledger over a Fabric peer. It is safe for concurrent use.
type Ledger struct {
	opts     options
	cfg      Config
	grpcConn *grpc.ClientConn // nil when given by WithClientConnection
	gw       *client.Gateway
	network  *client.Network
	contract *client.Contract
	qscc     *client.Contract

	root   context.Context
	cancel context.CancelFunc

	cpMu sync.Mutex
	cp   *client.FileCheckpointer
}

var _ ledger.Ledger = (*Ledger)(nil)

// Connect returns a Ledger for the peer and identity of cfg. It does not wait
// for the peer: an unreachable peer shows as ErrUnavailable on the first call.
func Connect(cfg Config, opts ...Option) (*Ledger, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Channel == "" {
		cfg.Channel = DefaultChannel
	}
	if cfg.Chaincode == "" {
		cfg.Chaincode = DefaultChaincode
	}
	o := options{evaluateTimeout: DefaultEvaluateTimeout, submitTimeout: DefaultSubmitTimeout, log: zap.NewNop()}
	for _, opt := range opts {
		opt(&o)
	}
	id, sign, err := loadIdentity(cfg)
	if err != nil {
		return nil, err
	}
	l := &Ledger{opts: o, cfg: cfg}
	conn := o.conn
	if conn == nil {
		pem, err := os.ReadFile(cfg.TLSCAFile)
		if err != nil {
			return nil, fmt.Errorf("fabric: TLS CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("fabric: TLS CA %s holds no PEM certificate", cfg.TLSCAFile)
		}
		creds := credentials.NewClientTLSFromCert(pool, cfg.ServerName)
		// Keepalive finds a peer that vanished without closing the connection
		// (a watched event stream would otherwise wait forever); a peer
		// refuses pings more often than its keepalive.minInterval (60s).
		ka := grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 60 * time.Second, Timeout: 20 * time.Second})
		if l.grpcConn, err = grpc.NewClient(cfg.PeerEndpoint, grpc.WithTransportCredentials(creds), ka); err != nil {
			return nil, fmt.Errorf("fabric: peer %s: %w", cfg.PeerEndpoint, err)
		}
		conn = l.grpcConn
	}
	l.gw, err = client.Connect(id, client.WithSign(sign), client.WithClientConnection(conn))
	if err != nil {
		l.closeConn()
		return nil, fmt.Errorf("fabric: gateway: %w", err)
	}
	l.network = l.gw.GetNetwork(cfg.Channel)
	l.contract = l.network.GetContract(cfg.Chaincode)
	l.qscc = l.network.GetContract("qscc")
	if o.checkpointFile != "" {
		if l.cp, err = client.NewFileCheckpointer(o.checkpointFile); err != nil {
			l.gw.Close()
			l.closeConn()
			return nil, fmt.Errorf("fabric: checkpoint file: %w", err)
		}
	}
	l.root, l.cancel = context.WithCancel(context.Background())
	return l, nil
}

func loadIdentity(cfg Config) (*identity.X509Identity, identity.Sign, error) {
	certPEM, err := os.ReadFile(cfg.CertFile)
	if err != nil {
		return nil, nil, fmt.Errorf("fabric: certificate: %w", err)
	}
	cert, err := identity.CertificateFromPEM(certPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("fabric: certificate %s: %w", cfg.CertFile, err)
	}
	id, err := identity.NewX509Identity(cfg.MSPID, cert)
	if err != nil {
		return nil, nil, fmt.Errorf("fabric: identity: %w", err)
	}
	keyPEM, err := os.ReadFile(cfg.KeyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("fabric: key: %w", err)
	}
	key, err := identity.PrivateKeyFromPEM(keyPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("fabric: key %s: %w", cfg.KeyFile, err)
	}
	sign, err := identity.NewPrivateKeySign(key)
	if err != nil {
		return nil, nil, fmt.Errorf("fabric: key %s: %w", cfg.KeyFile, err)
	}
	return id, sign, nil
}

func (l *Ledger) closeConn() {
	if l.grpcConn != nil {
		l.grpcConn.Close()
	}
}

// Close cancels every call in flight and every Watch, and releases the
// connection and the checkpoint file.
func (l *Ledger) Close() error {
	l.cancel()
	l.gw.Close()
	l.closeConn()
	l.cpMu.Lock()
	defer l.cpMu.Unlock()
	if l.cp != nil {
		err := l.cp.Close()
		l.cp = nil
		return err
	}
	return nil
}

// callCtx derives a call's context: the caller's, bounded by timeout, and
// cancelled by Close.
func (l *Ledger) callCtx(ctx context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	stop := context.AfterFunc(l.root, cancel)
	return ctx, func() { stop(); cancel() }
}

// evaluate runs a read-only transaction on the peer.
func (l *Ledger) evaluate(ctx context.Context, contract *client.Contract, name string, args ...string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, unavailable(ctx, name, err)
	}
	ctx, cancel := l.callCtx(ctx, l.opts.evaluateTimeout)
	defer cancel()
	p, err := contract.NewProposal(name, client.WithArguments(args...))
	if err != nil {
		return nil, ledger.Errorf(ledger.ErrUnavailable, err, "could not build the "+name+" proposal")
	}
	out, err := p.EvaluateWithContext(ctx)
	if err != nil {
		return nil, mapError(ctx, name, err)
	}
	return out, nil
}

// submitted is what a write did.
type submitted struct {
	result    []byte
	committed bool   // false when changed(result) said there was nothing to write
	block     uint64 // the block that holds it, when committed
}

// Retries of a write that the network could not take for a passing reason:
// peers whose endorsements differ because one has not yet committed the
// previous block, or a read conflict at commit. Nothing was written then.
const (
	writeAttempts = 6
	firstPause    = 5 * time.Millisecond
)

// Retries of a write the chaincode refused (invalid, not found, forbidden).
// Its endorsement may come from another organisation's peer that has not
// yet committed the writes it depends on (a regulation just written, a
// project just bound): the refusal is tried again for about 0.7 s before it
// is returned. A refusal that stands costs that much more.
const (
	refusalAttempts = 4
	refusalPause    = 100 * time.Millisecond
)

// submit endorses a transaction and, unless changed says its result needs no
// write, submits it and waits until it is committed VALID. It retries, with a
// new transaction, when the peers' endorsements differ or the commit hits a
// read conflict.
func (l *Ledger) submit(ctx context.Context, name string, changed func([]byte) (bool, error), args ...string) (submitted, error) {
	if err := ctx.Err(); err != nil {
		return submitted{}, unavailable(ctx, name, err)
	}
	ctx, cancel := l.callCtx(ctx, l.opts.submitTimeout)
	defer cancel()
	pause, refusals, refusalWait := firstPause, 0, refusalPause
	for attempt := 1; ; attempt++ {
		res, err := l.submitOnce(ctx, name, changed, args)
		wait := pause
		switch {
		case err == nil:
			return res, nil
		case chaincodeRefusal(err):
			refusals++
			if refusals == refusalAttempts {
				return res, err
			}
			wait, refusalWait = refusalWait, 2*refusalWait
		case attempt >= writeAttempts || !transient(err):
			return res, err
		default:
			pause *= 2
		}
		l.opts.log.Debug("retrying a write", zap.String("tx", name), zap.Int("attempt", attempt), zap.Error(err))
		select {
		case <-ctx.Done():
			return res, err
		case <-time.After(wait):
		}
	}
}

// chaincodeRefusal reports whether err is the chaincode's refusal at endorsement.
func chaincodeRefusal(err error) bool {
	var ee *client.EndorseError
	return errors.As(err, &ee) && (errors.Is(err, ledger.ErrForbidden) || errors.Is(err, ledger.ErrInvalid) || errors.Is(err, ledger.ErrNotFound))
}

// transient reports whether a failed write may succeed when tried again at once.
func transient(err error) bool {
	var ce *client.CommitError
	if errors.As(err, &ce) {
		return ce.Code == peer.TxValidationCode_MVCC_READ_CONFLICT || ce.Code == peer.TxValidationCode_PHANTOM_READ_CONFLICT
	}
	var ee *client.EndorseError
	if errors.As(err, &ee) && !errors.Is(err, ledger.ErrForbidden) && !errors.Is(err, ledger.ErrInvalid) && !errors.Is(err, ledger.ErrNotFound) {
		return status.Code(ee) == codes.Aborted
	}
	return false
}

func (l *Ledger) submitOnce(ctx context.Context, name string, changed func([]byte) (bool, error), args []string) (submitted, error) {
	popts := []client.ProposalOption{client.WithArguments(args...)}
	if len(l.opts.endorsingOrgs) > 0 {
		popts = append(popts, client.WithEndorsingOrganizations(l.opts.endorsingOrgs...))
	}
	p, err := l.contract.NewProposal(name, popts...)
	if err != nil {
		return submitted{}, ledger.Errorf(ledger.ErrUnavailable, err, "could not build the "+name+" proposal")
	}
	tx, err := p.EndorseWithContext(ctx)
	if err != nil {
		return submitted{}, mapError(ctx, name, err)
	}
	res := submitted{result: tx.Result()}
	if changed != nil {
		ch, err := changed(res.result)
		if err != nil {
			return res, ledger.Errorf(ledger.ErrUnavailable, err, "unreadable "+name+" result")
		}
		if !ch {
			return res, nil
		}
	}
	commit, err := tx.SubmitWithContext(ctx)
	if err != nil {
		return res, mapError(ctx, name, err)
	}
	st, err := commit.StatusWithContext(ctx)
	if err != nil {
		return res, mapError(ctx, name, err)
	}
	if !st.Successful {
		return res, mapError(ctx, name, &client.CommitError{TransactionID: st.TransactionID, Code: st.Code})
	}
	res.committed, res.block = true, st.BlockNumber
	l.opts.log.Debug("committed", zap.String("tx", name), zap.String("tx_id", st.TransactionID), zap.Uint64("block", st.BlockNumber))
	return res, nil
}

func decode[T any](name string, b []byte) (T, error) {
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		return v, ledger.Errorf(ledger.ErrUnavailable, err, "unreadable "+name+" result")
	}
	return v, nil
}

// GetHost implements ledger.Ledger.
func (l *Ledger) GetHost(ctx context.Context, name string) (ledger.HostRecord, error) {
	out, err := l.evaluate(ctx, l.contract, wire.TxGetHost, name)
	if err != nil {
		return ledger.HostRecord{}, err
	}
	return decode[ledger.HostRecord](wire.TxGetHost, out)
}

// ListHosts implements ledger.Ledger. A limit above wire.MaxPage returns a
// page of wire.MaxPage hosts; 0 or less wire.DefaultPage.
func (l *Ledger) ListHosts(ctx context.Context, after string, limit int) (ledger.HostPage, error) {
	if limit <= 0 {
		limit = wire.DefaultPage
	}
	limit = min(limit, wire.MaxPage)
	out, err := l.evaluate(ctx, l.contract, wire.TxListHosts, after, strconv.Itoa(limit))
	if err != nil {
		return ledger.HostPage{}, err
	}
	return decode[ledger.HostPage](wire.TxListHosts, out)
}

// PutHost implements ledger.Ledger: the chaincode validates h and checks that
// the client's identity may write it.
func (l *Ledger) PutHost(ctx context.Context, h filter.Host) (ledger.HostRecord, bool, error) {
	body, err := json.Marshal(h)
	if err != nil {
		return ledger.HostRecord{}, false, ledger.Errorf(ledger.ErrInvalid, err, "host cannot be encoded")
	}
	var r wire.PutHostResult
	changed := func(b []byte) (bool, error) {
		err := json.Unmarshal(b, &r)
		return r.Changed, err
	}
	if _, err := l.submit(ctx, wire.TxPutHost, changed, string(body)); err != nil {
		return ledger.HostRecord{}, false, err
	}
	return r.Record, r.Changed, nil
}

// GetRegulation implements ledger.Ledger.
func (l *Ledger) GetRegulation(ctx context.Context, subject filter.Subject) (ledger.RegulationRecord, error) {
	out, err := l.evaluate(ctx, l.contract, wire.TxGetRegulation, string(subject))
	if err != nil {
		return ledger.RegulationRecord{}, err
	}
	return decode[ledger.RegulationRecord](wire.TxGetRegulation, out)
}

// PutRegulation implements ledger.Ledger.
func (l *Ledger) PutRegulation(ctx context.Context, subject filter.Subject, terms filter.Terms) (ledger.RegulationRecord, bool, error) {
	body, err := json.Marshal(terms)
	if err != nil {
		return ledger.RegulationRecord{}, false, ledger.Errorf(ledger.ErrInvalid, err, "regulation cannot be encoded")
	}
	return l.PutRegulationJSON(ctx, subject, body)
}

// PutRegulationJSON is PutRegulation with the regulation in any of DESIGN.md's
// input forms, validated by the chaincode.
func (l *Ledger) PutRegulationJSON(ctx context.Context, subject filter.Subject, body []byte) (ledger.RegulationRecord, bool, error) {
	var r wire.PutRegulationResult
	changed := func(b []byte) (bool, error) {
		err := json.Unmarshal(b, &r)
		return r.Changed, err
	}
	if _, err := l.submit(ctx, wire.TxPutRegulation, changed, string(subject), string(body)); err != nil {
		return ledger.RegulationRecord{}, false, err
	}
	return r.Record, r.Changed, nil
}

// DeleteRegulation implements ledger.Ledger.
func (l *Ledger) DeleteRegulation(ctx context.Context, subject filter.Subject) error {
	_, err := l.submit(ctx, wire.TxDeleteRegulation, nil, string(subject))
	return err
}

// Lookup implements ledger.Ledger in one evaluate per wire.MaxBatch hosts.
// Regulations are keyed by the subjects' canonical form; RequireAttested is
// the registry's setting as the first evaluate read it. The chaincode
// cannot see the block height, so Height is the channel's height read just
// before: the records returned are at least that new, so an event of an
// older block can never replace them in a cache.
func (l *Ledger) Lookup(ctx context.Context, subjects []filter.Subject, hosts []string) (ledger.Lookup, error) {
	height, err := l.Height(ctx)
	if err != nil {
		return ledger.Lookup{}, err
	}
	res := ledger.Lookup{Height: height, Regulations: map[filter.Subject]ledger.RegulationRecord{}, Hosts: map[string]ledger.HostRecord{}}
	subj := make([]string, len(subjects))
	for i, s := range subjects {
		subj[i] = string(s)
	}
	// The subjects go with the first batch of hosts.
	for first := true; first || len(hosts) > 0; first = false {
		n := min(len(hosts), wire.MaxBatch)
		sj, _ := json.Marshal(subj)
		hj, _ := json.Marshal(append([]string{}, hosts[:n]...))
		hosts = hosts[n:]
		out, err := l.evaluate(ctx, l.contract, wire.TxLookup, string(sj), string(hj))
		if err != nil {
			return ledger.Lookup{}, err
		}
		r, err := decode[wire.LookupResult](wire.TxLookup, out)
		if err != nil {
			return ledger.Lookup{}, err
		}
		maps.Copy(res.Regulations, r.Regulations)
		maps.Copy(res.Hosts, r.Hosts)
		if first {
			res.RequireAttested = r.RequireAttested
		}
		subj = []string{}
	}
	return res, nil
}

// Check evaluates the chaincode's read-only check: pkg/filter's decision
// for a VM (its own and its project's regulations; either may be empty) over
// hosts (every registered host when empty), made on the peer from the
// ledger's current state. It is how a cached decision can be compared with
// the ledger's.
func (l *Ledger) Check(ctx context.Context, instanceUUID, projectID string, hosts []string, opts filter.Options) (decide.Report, error) {
	if len(hosts) > wire.MaxBatch {
		return decide.Report{}, ledger.Errorf(ledger.ErrInvalid, nil, fmt.Sprintf("at most %d hosts per check", wire.MaxBatch))
	}
	if hosts == nil {
		hosts = []string{}
	}
	hj, _ := json.Marshal(hosts)
	out, err := l.evaluate(ctx, l.contract, wire.TxCheck, instanceUUID, projectID, string(hj), strconv.FormatBool(opts.DenyUnregulated))
	if err != nil {
		return decide.Report{}, err
	}
	return decode[decide.Report](wire.TxCheck, out)
}

// History implements ledger.Ledger. Fabric's history does not carry block
// numbers: each change's Block is looked up from its transaction (one query
// per change, for histories of up to historyBlocks changes; 0 beyond).
func (l *Ledger) History(ctx context.Context, kind ledger.Kind, key string) ([]ledger.Change, error) {
	out, err := l.evaluate(ctx, l.contract, wire.TxHistory, string(kind), key)
	if err != nil {
		return nil, err
	}
	changes, err := decode[[]ledger.Change](wire.TxHistory, out)
	if err != nil || len(changes) > historyBlocks {
		return changes, err
	}
	for i := range changes {
		b, err := l.evaluate(ctx, l.qscc, "GetBlockByTxID", l.cfg.Channel, changes[i].TxID)
		if err != nil {
			return nil, err
		}
		var block common.Block
		if err := proto.Unmarshal(b, &block); err != nil {
			return nil, ledger.Errorf(ledger.ErrUnavailable, err, "unreadable block")
		}
		changes[i].Block = block.GetHeader().GetNumber()
	}
	return changes, nil
}

// historyBlocks is the longest history whose block numbers History looks up.
const historyBlocks = 100

// Height implements ledger.Ledger: the number of the channel's last block,
// from the peer's query system chaincode.
func (l *Ledger) Height(ctx context.Context) (uint64, error) {
	out, err := l.evaluate(ctx, l.qscc, "GetChainInfo", l.cfg.Channel)
	if err != nil {
		return 0, err
	}
	var info common.BlockchainInfo
	if err := proto.Unmarshal(out, &info); err != nil {
		return 0, ledger.Errorf(ledger.ErrUnavailable, err, "unreadable chain info")
	}
	if info.GetHeight() == 0 {
		return 0, nil
	}
	return info.GetHeight() - 1, nil
}
