// Package cloud is ledgerfence's small client of OpenStack's compute API,
// through gophercloud: it confirms that a nova-compute service exists, lists
// the servers on a host across all projects, reads a server, and asks Nova
// for a live or cold migration and follows it to its end.
//
// Error contract: Connect and every method return errors that match, with
// errors.Is, ErrNoCredentials (nothing to authenticate with), ErrAuth
// (Keystone refused the credentials or the role is too weak),
// ErrUnavailable (Keystone or Nova could not be reached or answered 5xx),
// ErrNotFound (no such server) or ErrConflict (Nova refused the request in
// the server's current state, or found no valid host). Their text is one line
// fit for an operator.
package cloud

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/services"
	"github.com/gophercloud/gophercloud/v2/openstack/config"
	"github.com/gophercloud/gophercloud/v2/pagination"
)

// Sentinel errors; match with errors.Is.
var (
	ErrNoCredentials = errors.New("cloud: no OpenStack credentials")
	ErrAuth          = errors.New("cloud: not authorised")
	ErrUnavailable   = errors.New("cloud: OpenStack unavailable")
	ErrNotFound      = errors.New("cloud: not found")
	ErrConflict      = errors.New("cloud: refused by Nova")
)

// Microversion is the compute API microversion the client speaks: 2.68 names
// a live-migration target without the force flag (so Nova's scheduler, and
// ledgerfence's filter, always check it), accepts block_migration "auto",
// and names a cold-migration target (2.56+).
const Microversion = "2.68"

// Server is what ledgerfence reads of a Nova server.
type Server struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	ProjectID string `json:"project_id"`
	Host      string `json:"host"`
	Status    string `json:"status"`
	TaskState string `json:"task_state,omitempty"`
	VMState   string `json:"vm_state,omitempty"`
	Fault     string `json:"fault,omitempty"`
}

// Client talks to Nova with one authenticated gophercloud provider.
type Client struct {
	compute *gophercloud.ServiceClient
}

// Option tunes Connect.
type Option func(*options)

type options struct {
	timeout time.Duration
}

// WithTimeout bounds every HTTP request (default 30s).
func WithTimeout(d time.Duration) Option { return func(o *options) { o.timeout = d } }

// Connect authenticates with Keystone and finds Nova's endpoint in the catalog.
func Connect(ctx context.Context, cr Credentials, opts ...Option) (*Client, error) {
	o := options{timeout: 30 * time.Second}
	for _, apply := range opts {
		apply(&o)
	}
	if cr.Auth.IdentityEndpoint == "" {
		return nil, fmt.Errorf("%w: no Keystone URL", ErrNoCredentials)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if cr.TLS != nil {
		tr.TLSClientConfig = cr.TLS
	}
	pc, err := config.NewProviderClient(ctx, cr.Auth, config.WithHTTPClient(http.Client{Transport: tr, Timeout: o.timeout}))
	if err != nil {
		return nil, classify(err, "Keystone at "+cr.Auth.IdentityEndpoint)
	}
	compute, err := openstack.NewComputeV2(pc, cr.Endpoint)
	if err != nil {
		return nil, fmt.Errorf("%w: no compute endpoint in the Keystone catalog: %v", ErrUnavailable, err)
	}
	compute.Microversion = Microversion
	return &Client{compute: compute}, nil
}

// ComputeServiceExists reports whether Nova knows a nova-compute service on
// host (the name Nova's scheduler uses for it).
func (c *Client) ComputeServiceExists(ctx context.Context, host string) (bool, error) {
	var found bool
	err := services.List(c.compute, services.ListOpts{Binary: "nova-compute", Host: host}).EachPage(ctx, func(_ context.Context, p pagination.Page) (bool, error) {
		list, err := services.ExtractServices(p)
		if err != nil {
			return false, err
		}
		for _, s := range list {
			if s.Host == host && s.Binary == "nova-compute" {
				found = true
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return false, classify(err, "Nova's service list")
	}
	return found, nil
}

// ComputeHosts lists the hosts of every nova-compute service, for messages
// that suggest what a name should be.
func (c *Client) ComputeHosts(ctx context.Context) ([]string, error) {
	var hosts []string
	err := services.List(c.compute, services.ListOpts{Binary: "nova-compute"}).EachPage(ctx, func(_ context.Context, p pagination.Page) (bool, error) {
		list, err := services.ExtractServices(p)
		if err != nil {
			return false, err
		}
		for _, s := range list {
			hosts = append(hosts, s.Host)
		}
		return true, nil
	})
	if err != nil {
		return nil, classify(err, "Nova's service list")
	}
	return hosts, nil
}

// ServersOnHost lists every server on host, in all projects (an admin call).
func (c *Client) ServersOnHost(ctx context.Context, host string) ([]Server, error) {
	var out []Server
	err := servers.List(c.compute, servers.ListOpts{AllTenants: true, Host: host}).EachPage(ctx, func(_ context.Context, p pagination.Page) (bool, error) {
		list, err := servers.ExtractServers(p)
		if err != nil {
			return false, err
		}
		for i := range list {
			// Nova ignores an unknown filter for a non-admin; keep only
			// what is really on host.
			if list[i].Host == host {
				out = append(out, fromNova(&list[i]))
			}
		}
		return true, nil
	})
	if err != nil {
		return nil, classify(err, "Nova's server list")
	}
	return out, nil
}

// GetServer reads one server, or returns ErrNotFound.
func (c *Client) GetServer(ctx context.Context, id string) (Server, error) {
	s, err := servers.Get(ctx, c.compute, id).Extract()
	if err != nil {
		return Server{}, classify(err, "server "+id)
	}
	return fromNova(s), nil
}

func fromNova(s *servers.Server) Server {
	return Server{
		ID: s.ID, Name: s.Name, ProjectID: s.TenantID, Host: s.Host, Status: s.Status,
		TaskState: s.TaskState, VMState: s.VmState, Fault: s.Fault.Message,
	}
}

// LiveMigrate asks Nova to live-migrate a server, to target or, when target
// is empty, to a host its scheduler picks. The target is never forced, so
// the scheduler's filters check it.
func (c *Client) LiveMigrate(ctx context.Context, id, target string) error {
	body := map[string]any{"block_migration": "auto", "host": nil}
	if target != "" {
		body["host"] = target
	}
	return c.action(ctx, id, map[string]any{"os-migrateLive": body}, "live migration")
}

// ColdMigrate asks Nova to cold-migrate a server, to target or, when target
// is empty, to a host its scheduler picks. It ends in VERIFY_RESIZE:
// ConfirmResize finishes it.
func (c *Client) ColdMigrate(ctx context.Context, id, target string) error {
	var body any
	if target != "" {
		body = map[string]any{"host": target}
	}
	return c.action(ctx, id, map[string]any{"migrate": body}, "cold migration")
}

// ConfirmResize confirms a cold migration or resize in VERIFY_RESIZE.
func (c *Client) ConfirmResize(ctx context.Context, id string) error {
	return c.action(ctx, id, map[string]any{"confirmResize": nil}, "confirm resize")
}

func (c *Client) action(ctx context.Context, id string, body any, what string) error {
	resp, err := c.compute.Post(ctx, c.compute.ServiceURL("servers", id, "action"), body, nil, &gophercloud.RequestOpts{OkCodes: []int{202, 204}})
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	if err != nil {
		return classify(err, what+" of server "+id)
	}
	return nil
}

// Migration is one of Nova's migration records.
type Migration struct {
	ID         int    `json:"id"`
	UUID       string `json:"uuid"`
	Type       string `json:"migration_type"`
	Status     string `json:"status"`
	SourceHost string `json:"source_compute"`
	DestHost   string `json:"dest_compute"`
	Created    string `json:"created_at"`
}

// Done reports whether the migration has ended, and whether it succeeded.
func (m Migration) Done() (done, ok bool) {
	switch m.Status {
	case "completed", "confirmed", "finished", "done":
		return true, true
	case "error", "failed", "cancelled", "reverted":
		return true, false
	}
	return false, false
}

// Migrations lists a server's migrations, newest first.
func (c *Client) Migrations(ctx context.Context, id string) ([]Migration, error) {
	var body struct {
		Migrations []Migration `json:"migrations"`
	}
	u := c.compute.ServiceURL("os-migrations") + "?instance_uuid=" + url.QueryEscape(id)
	resp, err := c.compute.Get(ctx, u, &body, nil)
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	if err != nil {
		return nil, classify(err, "migrations of server "+id)
	}
	// Ids grow: the highest is the newest.
	slices.SortFunc(body.Migrations, func(a, b Migration) int { return b.ID - a.ID })
	return body.Migrations, nil
}

// classify maps a gophercloud or transport error to the package's sentinels,
// with one line of context.
func classify(err error, what string) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: %s: %v", ErrUnavailable, what, err)
	}
	var code gophercloud.ErrUnexpectedResponseCode
	if errors.As(err, &code) {
		msg := novaMessage(code.Body)
		switch {
		case code.Actual == http.StatusNotFound:
			return fmt.Errorf("%w: %s does not exist", ErrNotFound, what)
		case code.Actual == http.StatusUnauthorized:
			return fmt.Errorf("%w: %s: Keystone rejected the credentials", ErrAuth, what)
		case code.Actual == http.StatusForbidden:
			return fmt.Errorf("%w: %s: forbidden (an admin role is needed)%s", ErrAuth, what, msg)
		case code.Actual == http.StatusBadRequest || code.Actual == http.StatusConflict:
			return fmt.Errorf("%w: %s%s", ErrConflict, what, msg)
		case code.Actual >= 500:
			return fmt.Errorf("%w: %s: HTTP %d%s", ErrUnavailable, what, code.Actual, msg)
		}
		return fmt.Errorf("%s: HTTP %d%s", what, code.Actual, msg)
	}
	var ne net.Error
	var ue *url.Error
	if errors.As(err, &ne) || errors.As(err, &ue) {
		return fmt.Errorf("%w: %s: %v", ErrUnavailable, what, oneLine(err.Error()))
	}
	if strings.Contains(err.Error(), "connection refused") || strings.Contains(err.Error(), "no such host") {
		return fmt.Errorf("%w: %s: %v", ErrUnavailable, what, oneLine(err.Error()))
	}
	return fmt.Errorf("%s: %v", what, oneLine(err.Error()))
}

// novaMessage extracts the message of a Nova error body
// ({"badRequest": {"message": ...}}) or a Keystone one ({"error": {...}}).
func novaMessage(body []byte) string {
	var outer map[string]json.RawMessage
	if json.Unmarshal(body, &outer) != nil {
		return ""
	}
	for _, v := range outer {
		var inner struct {
			Message string `json:"message"`
		}
		if json.Unmarshal(v, &inner) == nil && inner.Message != "" {
			return ": " + oneLine(inner.Message)
		}
	}
	return ""
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 240 {
		s = s[:240] + "..."
	}
	return s
}
