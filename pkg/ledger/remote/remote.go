// Package remote is a ledger.Ledger that talks to a filterd serving the
// embedded ledger, over filterd's REST API. The host agent and ledgerctl use
// it when pointed at a filterd (--ledger URL --token T).
//
//	l, err := remote.New("https://filterd.example:8787", remote.WithToken(token))
//	rec, changed, err := l.PutHost(ctx, filter.Host{Name: "hm1", Country: "JP", Organizations: []string{"CompanyA"}})
//
// Error contract: every error matches one of package ledger's sentinels. The
// HTTP status of filterd's answer is mapped back: 400 and 413 to
// ErrInvalid, 404 to ErrNotFound, 401 and 403 to ErrForbidden (a missing or
// wrong token, or a filterd whose backend it does not write to), 5xx and 429,
// a broken connection, a deadline and an answer that cannot be read to
// ErrUnavailable. The message is filterd's {"error": "..."} text.
//
// Writes are made by the holder of the token: filterd records the identity
// and role of the writer token (ledgerctl token issue) and applies package
// access's rules to it; a client cannot name another writer. A token is
// sent over plain http only to a loopback address (127.0.0.0/8, ::1,
// localhost): New refuses an http:// URL of any other host when a token is
// given, so use https there. Redirects are not followed, so that the token
// never goes anywhere but the URL given.
//
// Placements (placement.go, ledger.Residency): POST and GET
// /v1/placements.
//
// Governance (governance.go): the registry, proposals and approvals,
// project bindings and attestations over filterd's /v1/registry,
// /v1/proposals, /v1/bindings and /v1/hosts/{host}/attest.
//
// SignedHead and HashAt read filterd's signed heads (GET /v1/ledger/head),
// for a head.Witness.
//
// Watch streams filterd's GET /v1/events (JSON lines). filterd writes an
// empty line after every idle interval (15 s by default); a stream that stays
// silent for the watch idle timeout (45 s by default) is taken as dead and its
// channel closed, and the caller resumes with the Block of the last event it
// handled, as with every backend.
package remote

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/head"
)

// Defaults.
const (
	// DefaultTimeout bounds each call but Watch.
	DefaultTimeout = 30 * time.Second
	// DefaultWatchIdle is how long a silent event stream is trusted.
	DefaultWatchIdle = 45 * time.Second
	// maxListLimit is filterd's largest page.
	maxListLimit = 1000
	// maxAnswer bounds an answer read into memory, and one event line.
	maxAnswer = 64 << 20
	maxLine   = 8 << 20
	// maxMessage bounds the text of an error answer passed on.
	maxMessage = 1 << 10
)

// headerChanged is filterd's answer to a write (package api).
const headerChanged = "X-Ledgerfence-Changed"

// Client is a ledger.Ledger over a filterd's REST API. It is safe for
// concurrent use.
type Client struct {
	base      *url.URL
	hc        *http.Client
	token     string
	timeout   time.Duration
	watchIdle time.Duration

	// ctx is cancelled by Close: calls and streams in flight end with it.
	ctx    context.Context
	cancel context.CancelFunc
}

var _ ledger.Ledger = (*Client)(nil)

// Option configures New.
type Option func(*options)

type options struct {
	token     string
	hc        *http.Client
	tlsConfig *tls.Config
	timeout   time.Duration
	watchIdle time.Duration
}

// WithToken sets the bearer token sent with every request: a writer token
// (ledgerctl token issue), which also reads, or a read token for a client
// that only reads where filterd requires one.
func WithToken(token string) Option { return func(o *options) { o.token = token } }

// WithHTTPClient sets the HTTP client. Its Timeout should be zero: it would
// cut event streams; per-call deadlines come from WithTimeout. The client is
// used as a copy that follows no redirect.
func WithHTTPClient(hc *http.Client) Option {
	return func(o *options) {
		if hc != nil {
			o.hc = hc
		}
	}
}

// WithTLSConfig sets the TLS configuration of the default HTTP client (for
// a filterd whose certificate a private CA signed).
func WithTLSConfig(cfg *tls.Config) Option { return func(o *options) { o.tlsConfig = cfg } }

// WithTimeout bounds each call but Watch (DefaultTimeout when d <= 0).
func WithTimeout(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.timeout = d
		}
	}
}

// WithWatchIdleTimeout sets how long an event stream may stay silent before
// it is taken as dead (DefaultWatchIdle when d <= 0). It should exceed
// filterd's heartbeat interval.
func WithWatchIdleTimeout(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.watchIdle = d
		}
	}
}

// New returns a client of the filterd at baseURL (http or https, with no
// path, or the path filterd is served under). Errors: ErrInvalid for a URL
// that is not one, or an http:// URL of a host that is not a loopback address
// when a token is given (use https).
func New(baseURL string, opts ...Option) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, ledger.Errorf(ledger.ErrInvalid, err, "remote: "+strconv.Quote(filter.Clip(baseURL))+" is not an http(s) URL")
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	o := options{timeout: DefaultTimeout, watchIdle: DefaultWatchIdle}
	for _, opt := range opts {
		opt(&o)
	}
	if o.token != "" && u.Scheme == "http" && !loopback(u.Hostname()) {
		return nil, ledger.Errorf(ledger.ErrInvalid, nil, "remote: refusing to send a token over plain http to "+filter.Clip(u.Host)+
			": a token goes over http only to a loopback address (127.0.0.1, ::1, localhost); use https://"+filter.Clip(u.Host))
	}
	if o.hc != nil {
		hc := *o.hc
		o.hc = &hc
	} else {
		o.hc = &http.Client{Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSClientConfig:       o.tlsConfig,
			TLSHandshakeTimeout:   10 * time.Second,
			ResponseHeaderTimeout: o.timeout,
			MaxIdleConnsPerHost:   8,
			IdleConnTimeout:       90 * time.Second,
			ForceAttemptHTTP2:     true,
		}}
	}
	o.hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	c := &Client{base: u, hc: o.hc, token: o.token, timeout: o.timeout, watchIdle: o.watchIdle}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	return c, nil
}

// Close ends the calls and event streams in flight; later calls fail with
// ErrUnavailable.
func (c *Client) Close() error {
	c.cancel()
	c.hc.CloseIdleConnections()
	return nil
}

// callContext bounds a call by ctx, the client's lifetime and the timeout.
func (c *Client) callContext(ctx context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	if timeout > 0 {
		ctx, cancelT := context.WithTimeout(ctx, timeout)
		stop := context.AfterFunc(c.ctx, cancelT)
		return ctx, func() { stop(); cancelT() }
	}
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(c.ctx, cancel)
	return ctx, func() { stop(); cancel() }
}

func (c *Client) url(path string, query url.Values) string {
	u := *c.base
	u.Path = c.base.Path + path
	u.RawPath = ""
	if query != nil {
		u.RawQuery = query.Encode()
	}
	return u.String()
}

// do sends a request and returns the answer of a 2xx status; any other
// status is an error of its kind.
func (c *Client) do(ctx context.Context, method, path string, query url.Values, body any) (*http.Response, []byte, error) {
	return c.doLimit(ctx, method, path, query, body, maxAnswer)
}

// doLimit is do reading an answer of at most limit bytes; a longer one is
// an error.
func (c *Client) doLimit(ctx context.Context, method, path string, query url.Values, body any, limit int64) (*http.Response, []byte, error) {
	if err := c.ctx.Err(); err != nil {
		return nil, nil, ledger.Errorf(ledger.ErrUnavailable, err, "remote: client closed")
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, ledger.Errorf(ledger.ErrUnavailable, err, "remote: "+err.Error())
	}
	ctx, cancel := c.callContext(ctx, c.timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, nil, ledger.Errorf(ledger.ErrInvalid, err, "remote: request cannot be encoded")
		}
		rd = bytes.NewReader(b)
	}
	req, err := c.newRequest(ctx, method, c.url(path, query), rd)
	if err != nil {
		return nil, nil, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, nil, unreachable(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, nil, unreachable(err)
	}
	if int64(len(data)) > limit {
		return nil, nil, ledger.Errorf(ledger.ErrUnavailable, nil, "remote: filterd's answer is longer than "+strconv.FormatInt(limit, 10)+" bytes")
	}
	if resp.StatusCode/100 != 2 {
		return nil, nil, statusError(resp.StatusCode, data)
	}
	return resp, data, nil
}

func (c *Client) newRequest(ctx context.Context, method, u string, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, ledger.Errorf(ledger.ErrInvalid, err, "remote: bad request")
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	return req, nil
}

// loopback reports whether host (a URL's host name) is a loopback address,
// or localhost.
func loopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func unreachable(err error) error {
	return ledger.Errorf(ledger.ErrUnavailable, err, "remote: filterd could not be reached: "+filter.Clip(err.Error()))
}

// statusError maps a non-2xx answer to the error of its kind.
func statusError(status int, body []byte) error {
	var eb struct {
		Error string `json:"error"`
	}
	msg := ""
	if json.Unmarshal(body, &eb) == nil && eb.Error != "" {
		msg = eb.Error
	} else {
		msg = http.StatusText(status)
	}
	var kind error
	switch {
	case status == http.StatusBadRequest, status == http.StatusRequestEntityTooLarge:
		kind = ledger.ErrInvalid
	case status == http.StatusNotFound:
		kind = ledger.ErrNotFound
	case status == http.StatusUnauthorized, status == http.StatusForbidden, status == http.StatusMethodNotAllowed:
		kind = ledger.ErrForbidden
	default:
		kind = ledger.ErrUnavailable
	}
	// filterd's messages of ledger errors already start with the kind.
	msg = strings.TrimPrefix(msg, kind.Error()+": ")
	if len(msg) > maxMessage {
		// filterd's own messages are shorter (they name a rule and what it
		// saw, e.g. an access refusal with a subject and an owner), and are
		// passed on whole; a longer one is not filterd's and is cut.
		msg = strings.ToValidUTF8(msg[:maxMessage], "") + "..."
	}
	return ledger.Errorf(kind, nil, msg+" (HTTP "+strconv.Itoa(status)+")")
}

func decode[T any](data []byte) (T, error) {
	var v T
	if err := json.Unmarshal(data, &v); err != nil {
		return v, ledger.Errorf(ledger.ErrUnavailable, err, "remote: filterd's answer cannot be read")
	}
	return v, nil
}

// GetHost implements ledger.Ledger.
func (c *Client) GetHost(ctx context.Context, name string) (ledger.HostRecord, error) {
	_, data, err := c.do(ctx, http.MethodGet, "/v1/hosts/"+url.PathEscape(name), nil, nil)
	if err != nil {
		return ledger.HostRecord{}, err
	}
	return decode[ledger.HostRecord](data)
}

// ListHosts implements ledger.Ledger. A limit beyond filterd's largest page
// (1000) gets that page.
func (c *Client) ListHosts(ctx context.Context, after string, limit int) (ledger.HostPage, error) {
	q := url.Values{}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(min(limit, maxListLimit)))
	}
	if after != "" {
		q.Set("after", after)
	}
	_, data, err := c.do(ctx, http.MethodGet, "/v1/hosts", q, nil)
	if err != nil {
		return ledger.HostPage{}, err
	}
	return decode[ledger.HostPage](data)
}

// hostInput is filterd's body of PUT /v1/hosts/{host}.
type hostInput struct {
	Host          string   `json:"host"`
	Country       string   `json:"country"`
	Organizations []string `json:"organizations"`
	Region        string   `json:"region,omitempty"`
}

// PutHost implements ledger.Ledger.
func (c *Client) PutHost(ctx context.Context, h filter.Host) (ledger.HostRecord, bool, error) {
	if err := filter.ValidateHostName(h.Name); err != nil {
		return ledger.HostRecord{}, false, ledger.Errorf(ledger.ErrInvalid, err, err.Error())
	}
	resp, data, err := c.do(ctx, http.MethodPut, "/v1/hosts/"+url.PathEscape(h.Name), nil,
		hostInput{Host: h.Name, Country: h.Country, Organizations: h.Organizations, Region: h.Region})
	if err != nil {
		return ledger.HostRecord{}, false, err
	}
	rec, err := decode[ledger.HostRecord](data)
	return rec, resp.Header.Get(headerChanged) == "true", err
}

// GetRegulation implements ledger.Ledger.
func (c *Client) GetRegulation(ctx context.Context, subject filter.Subject) (ledger.RegulationRecord, error) {
	_, data, err := c.do(ctx, http.MethodGet, "/v1/regulations/"+url.PathEscape(string(subject)), nil, nil)
	if err != nil {
		return ledger.RegulationRecord{}, err
	}
	return decode[ledger.RegulationRecord](data)
}

// PutRegulation implements ledger.Ledger.
func (c *Client) PutRegulation(ctx context.Context, subject filter.Subject, terms filter.Terms) (ledger.RegulationRecord, bool, error) {
	if terms.Allow == nil {
		terms.Allow = []filter.Rule{}
	}
	resp, data, err := c.do(ctx, http.MethodPut, "/v1/regulations/"+url.PathEscape(string(subject)), nil, terms)
	if err != nil {
		return ledger.RegulationRecord{}, false, err
	}
	rec, err := decode[ledger.RegulationRecord](data)
	return rec, resp.Header.Get(headerChanged) == "true", err
}

// DeleteRegulation implements ledger.Ledger.
func (c *Client) DeleteRegulation(ctx context.Context, subject filter.Subject) error {
	_, _, err := c.do(ctx, http.MethodDelete, "/v1/regulations/"+url.PathEscape(string(subject)), nil, nil)
	return err
}

// lookupBody is filterd's answer of POST /v1/lookup.
type lookupBody struct {
	Height uint64 `json:"height"`
	// RequireAttested is the registry's cloud-wide setting at Height.
	RequireAttested bool                                       `json:"require_attested"`
	Regulations     map[filter.Subject]ledger.RegulationRecord `json:"regulations"`
	Hosts           map[string]ledger.HostRecord               `json:"hosts"`
}

// Lookup implements ledger.Ledger with one request (POST /v1/lookup).
func (c *Client) Lookup(ctx context.Context, subjects []filter.Subject, hosts []string) (ledger.Lookup, error) {
	subs := make([]string, len(subjects))
	for i, s := range subjects {
		subs[i] = string(s)
	}
	if hosts == nil {
		hosts = []string{}
	}
	_, data, err := c.do(ctx, http.MethodPost, "/v1/lookup", nil, struct {
		Subjects []string `json:"subjects"`
		Hosts    []string `json:"hosts"`
	}{subs, hosts})
	if err != nil {
		return ledger.Lookup{}, err
	}
	lb, err := decode[lookupBody](data)
	if err != nil {
		return ledger.Lookup{}, err
	}
	if lb.Regulations == nil {
		lb.Regulations = map[filter.Subject]ledger.RegulationRecord{}
	}
	if lb.Hosts == nil {
		lb.Hosts = map[string]ledger.HostRecord{}
	}
	return ledger.Lookup{Height: lb.Height, RequireAttested: lb.RequireAttested, Regulations: lb.Regulations, Hosts: lb.Hosts}, nil
}

// History implements ledger.Ledger.
func (c *Client) History(ctx context.Context, kind ledger.Kind, key string) ([]ledger.Change, error) {
	var path string
	switch kind {
	case ledger.KindHost:
		path = "/v1/history/hosts/" + url.PathEscape(key)
	case ledger.KindRegulation:
		path = "/v1/history/regulations/" + url.PathEscape(key)
	case ledger.KindRegistry:
		if key != ledger.RegistryKey {
			return nil, ledger.Errorf(ledger.ErrInvalid, nil, "remote: the registry's key is "+ledger.RegistryKey)
		}
		path = "/v1/history/registry"
	case ledger.KindProposal:
		path = "/v1/history/proposals/" + url.PathEscape(key)
	case ledger.KindBinding:
		path = "/v1/history/bindings/" + url.PathEscape(key)
	default:
		return nil, ledger.Errorf(ledger.ErrInvalid, nil, "remote: unknown kind "+strconv.Quote(string(kind)))
	}
	_, data, err := c.do(ctx, http.MethodGet, path, nil, nil)
	if err != nil {
		return nil, err
	}
	hb, err := decode[struct {
		History []ledger.Change `json:"history"`
	}](data)
	return hb.History, err
}

// Height implements ledger.Ledger (GET /v1/ledger).
func (c *Client) Height(ctx context.Context) (uint64, error) {
	_, data, err := c.do(ctx, http.MethodGet, "/v1/ledger", nil, nil)
	if err != nil {
		return 0, err
	}
	info, err := decode[struct {
		Height *uint64 `json:"height"`
	}](data)
	if err != nil {
		return 0, err
	}
	if info.Height == nil {
		return 0, ledger.Errorf(ledger.ErrUnavailable, nil, "remote: filterd's answer has no height")
	}
	return *info.Height, nil
}

// Options returns the options filterd decides with (GET /v1/ledger), so
// that a client deciding on this ledger decides as filterd does.
func (c *Client) Options(ctx context.Context) (filter.Options, error) {
	_, data, err := c.do(ctx, http.MethodGet, "/v1/ledger", nil, nil)
	if err != nil {
		return filter.Options{}, err
	}
	info, err := decode[struct {
		DenyUnregulated *bool `json:"deny_unregulated"`
	}](data)
	if err != nil {
		return filter.Options{}, err
	}
	if info.DenyUnregulated == nil {
		return filter.Options{}, ledger.Errorf(ledger.ErrUnavailable, nil, "remote: filterd's answer does not say how it decides (deny_unregulated): upgrade it")
	}
	return filter.Options{DenyUnregulated: *info.DenyUnregulated}, nil
}

// Watch implements ledger.Ledger by streaming GET /v1/events?after=. The
// channel closes when ctx ends, the client is closed, the stream breaks or
// stays silent beyond the watch idle timeout.
func (c *Client) Watch(ctx context.Context, after uint64) (<-chan ledger.Event, error) {
	if err := c.ctx.Err(); err != nil {
		return nil, ledger.Errorf(ledger.ErrUnavailable, err, "remote: client closed")
	}
	ctx, cancel := c.callContext(ctx, 0)
	q := url.Values{"after": {strconv.FormatUint(after, 10)}}
	req, err := c.newRequest(ctx, http.MethodGet, c.url("/v1/events", q), nil)
	if err != nil {
		cancel()
		return nil, err
	}
	req.Header.Set("Accept", "application/x-ndjson")
	// Only the wait for the answer's header is bounded by the call timeout.
	headerTimer := time.AfterFunc(c.timeout, cancel)
	resp, err := c.hc.Do(req)
	headerTimer.Stop()
	if err != nil {
		cancel()
		return nil, unreachable(err)
	}
	if resp.StatusCode != http.StatusOK {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
		resp.Body.Close()
		cancel()
		return nil, statusError(resp.StatusCode, data)
	}
	out := make(chan ledger.Event, 64)
	go func() {
		defer close(out)
		defer cancel()
		defer resp.Body.Close()
		idle := time.AfterFunc(c.watchIdle, cancel)
		defer idle.Stop()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 0, 64<<10), maxLine)
		for sc.Scan() {
			idle.Reset(c.watchIdle)
			line := bytes.TrimSpace(sc.Bytes())
			if len(line) == 0 {
				continue // heartbeat
			}
			var ev ledger.Event
			if err := json.Unmarshal(line, &ev); err != nil {
				return // a stream we cannot read is a broken one
			}
			select {
			case out <- ev:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}

// String names the filterd the client talks to.
func (c *Client) String() string { return fmt.Sprintf("remote ledger at %s", c.base.Redacted()) }

// SignedHead returns the filterd's latest signed head (GET /v1/ledger/head).
// It does not check the signature: a head.Witness does. Errors: one
// matching head.ErrNoHeads (and ledger.ErrNotFound) from a filterd whose
// ledger signs no heads (Fabric), else as every call's.
func (c *Client) SignedHead(ctx context.Context) (head.Signed, error) {
	_, data, err := c.do(ctx, http.MethodGet, "/v1/ledger/head", nil, nil)
	if errors.Is(err, ledger.ErrNotFound) {
		return head.Signed{}, fmt.Errorf("%w: %w", head.ErrNoHeads, err)
	}
	if err != nil {
		return head.Signed{}, err
	}
	s, err := head.ParseSigned(data)
	if err != nil {
		return head.Signed{}, ledger.Errorf(ledger.ErrUnavailable, err, "remote: filterd's signed head cannot be read: "+err.Error())
	}
	return s, nil
}

// HashAt returns the hash of the ledger's entry at height (GET
// /v1/ledger/head?at=N). Errors: ledger.ErrNotFound when the ledger is not
// that high, else as every call's.
func (c *Client) HashAt(ctx context.Context, height uint64) (string, error) {
	q := url.Values{"at": {strconv.FormatUint(height, 10)}}
	_, data, err := c.do(ctx, http.MethodGet, "/v1/ledger/head", q, nil)
	if err != nil {
		return "", err
	}
	h, err := decode[head.Head](data)
	if err != nil {
		return "", err
	}
	if h.Height != height || h.Validate() != nil {
		return "", ledger.Errorf(ledger.ErrUnavailable, nil, fmt.Sprintf("remote: filterd answered height %d with %q", height, filter.Clip(h.String())))
	}
	return h.Hash, nil
}
