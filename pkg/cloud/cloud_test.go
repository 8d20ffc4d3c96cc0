package cloud

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestCredentialsFromEnv(t *testing.T) {
	cloudsYAML := filepath.Join(t.TempDir(), "clouds.yaml")
	if err := os.WriteFile(cloudsYAML, []byte(`clouds:
  mini:
    auth:
      auth_url: http://k:5000/v3
      username: admin
      password: pw
      project_name: admin
      user_domain_name: Default
      project_domain_name: Default
    region_name: RegionOne
    interface: internal
`), 0o600); err != nil {
		t.Fatal(err)
	}
	base := map[string]string{
		"OS_AUTH_URL": "http://k:5000/v3", "OS_USERNAME": "admin", "OS_PASSWORD": "pw",
		"OS_PROJECT_NAME": "admin", "OS_USER_DOMAIN_NAME": "Default", "OS_PROJECT_DOMAIN_NAME": "Default",
		"OS_REGION_NAME": "RegionOne",
	}
	with := func(kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	tests := []struct {
		name  string
		env   map[string]string
		check func(t *testing.T, cr Credentials)
		err   string
	}{
		{name: "openrc", env: base, check: func(t *testing.T, cr Credentials) {
			a := cr.Auth
			if a.IdentityEndpoint != "http://k:5000/v3" || a.Username != "admin" || a.DomainName != "Default" ||
				a.Scope == nil || a.Scope.ProjectName != "admin" || a.Scope.DomainName != "Default" || cr.Endpoint.Region != "RegionOne" {
				t.Fatalf("%+v scope %+v", a, a.Scope)
			}
		}},
		{name: "project id wins", env: with("OS_PROJECT_ID", "abc"), check: func(t *testing.T, cr Credentials) {
			if cr.Auth.Scope.ProjectID != "abc" || cr.Auth.Scope.ProjectName != "" {
				t.Fatalf("scope %+v", cr.Auth.Scope)
			}
		}},
		{name: "application credential", env: map[string]string{"OS_AUTH_URL": "http://k/v3", "OS_APPLICATION_CREDENTIAL_ID": "id", "OS_APPLICATION_CREDENTIAL_SECRET": "s"},
			check: func(t *testing.T, cr Credentials) {
				if cr.Auth.ApplicationCredentialID != "id" || cr.Auth.Scope != nil {
					t.Fatalf("%+v", cr.Auth)
				}
			}},
		{name: "clouds.yaml", env: map[string]string{"OS_CLOUD": "mini", "OS_CLIENT_CONFIG_FILE": cloudsYAML}, check: func(t *testing.T, cr Credentials) {
			a := cr.Auth
			if a.IdentityEndpoint != "http://k:5000/v3" || a.Username != "admin" || a.Password != "pw" || a.TenantName != "admin" ||
				cr.Endpoint.Region != "RegionOne" || cr.Endpoint.Availability != "internal" || !strings.Contains(cr.Source, "mini") {
				t.Fatalf("%+v %+v", a, cr.Endpoint)
			}
		}},
		{name: "nothing", env: map[string]string{}, err: "set OS_CLOUD"},
		{name: "no user", env: with("OS_USERNAME", ""), err: "OS_USERNAME"},
		{name: "no password", env: with("OS_PASSWORD", ""), err: "OS_PASSWORD"},
		{name: "unknown cloud", env: map[string]string{"OS_CLOUD": "nope", "OS_CLIENT_CONFIG_FILE": "/nonexistent/clouds.yaml"}, err: "OS_CLOUD=nope"},
		{name: "missing CA file", env: with("OS_CACERT", "/nonexistent/ca.pem"), err: "OS_CACERT"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cr, err := CredentialsFromEnv(func(k string) string { return tc.env[k] })
			if tc.err != "" {
				if !errors.Is(err, ErrNoCredentials) || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want ErrNoCredentials mentioning %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, cr)
		})
	}
}

// fakeOpenStack is Keystone's token API and the parts of Nova's API the
// client uses, over HTTP.
type fakeOpenStack struct {
	mu         sync.Mutex
	srv        *httptest.Server
	servers    map[string]map[string]any
	migrations []map[string]any
	// onPoll moves a server along on each GET of it.
	onPoll  func(f *fakeOpenStack, id string)
	actions []string
	queries []string
}

func newFake(t *testing.T) *fakeOpenStack {
	f := &fakeOpenStack{servers: map[string]map[string]any{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v3/auth/tokens", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Auth struct {
				Identity struct {
					Password struct {
						User struct {
							Password string `json:"password"`
						} `json:"user"`
					} `json:"password"`
				} `json:"identity"`
			} `json:"auth"`
		}
		json.NewDecoder(r.Body).Decode(&body)
		if body.Auth.Identity.Password.User.Password != "pw" {
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"error": {"code": 401, "message": "The request you have made requires authentication."}}`)
			return
		}
		w.Header().Set("X-Subject-Token", "tok")
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"token": {"expires_at": "2099-01-01T00:00:00.000000Z", "catalog": [{"type": "compute", "name": "nova",
			"endpoints": [{"interface": "public", "region": "RegionOne", "region_id": "RegionOne", "url": "%s/compute/v2.1"}]}]}}`, f.srv.URL)
	})
	mux.HandleFunc("GET /compute/v2.1/os-services", func(w http.ResponseWriter, r *http.Request) {
		f.record(r)
		host := r.URL.Query().Get("host")
		var list []map[string]any
		for _, h := range []string{"cmp-1", "cmp-2"} {
			if host == "" || host == h {
				list = append(list, map[string]any{"id": 1, "binary": "nova-compute", "host": h, "state": "up", "status": "enabled"})
			}
		}
		json.NewEncoder(w).Encode(map[string]any{"services": list})
	})
	mux.HandleFunc("GET /compute/v2.1/servers/detail", func(w http.ResponseWriter, r *http.Request) {
		f.record(r)
		f.mu.Lock()
		defer f.mu.Unlock()
		var list []map[string]any
		for _, s := range f.servers {
			if h := r.URL.Query().Get("host"); h == "" || s["OS-EXT-SRV-ATTR:host"] == h {
				list = append(list, s)
			}
		}
		json.NewEncoder(w).Encode(map[string]any{"servers": list})
	})
	mux.HandleFunc("GET /compute/v2.1/servers/{id}", func(w http.ResponseWriter, r *http.Request) {
		f.record(r)
		id := r.PathValue("id")
		if f.onPoll != nil {
			f.onPoll(f, id)
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		s, ok := f.servers[id]
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprintf(w, `{"itemNotFound": {"code": 404, "message": "Instance %s could not be found."}}`, id)
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"server": s})
	})
	mux.HandleFunc("POST /compute/v2.1/servers/{id}/action", func(w http.ResponseWriter, r *http.Request) {
		f.record(r)
		var body map[string]any
		json.NewDecoder(r.Body).Decode(&body)
		b, _ := json.Marshal(body)
		f.mu.Lock()
		f.actions = append(f.actions, string(b))
		f.mu.Unlock()
		if _, ok := body["os-migrateLive"]; ok && strings.Contains(string(b), "busy") {
			w.WriteHeader(http.StatusConflict)
			fmt.Fprint(w, `{"conflictingRequest": {"code": 409, "message": "Cannot 'os-migrateLive' instance while it is in task_state migrating"}}`)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	})
	mux.HandleFunc("GET /compute/v2.1/servers/{id}/os-instance-actions", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"instanceActions": [{"action": "live-migration", "request_id": "req-2", "message": null},
			{"action": "create", "request_id": "req-1", "message": null}]}`)
	})
	mux.HandleFunc("GET /compute/v2.1/servers/{id}/os-instance-actions/req-2", func(w http.ResponseWriter, r *http.Request) {
		f.record(r)
		fmt.Fprint(w, `{"instanceAction": {"action": "live-migration", "events": [{"event": "conductor_live_migrate_instance", "result": "Error",
			"details": "No valid host was found. There are not enough hosts available."}]}}`)
	})
	mux.HandleFunc("GET /compute/v2.1/os-migrations", func(w http.ResponseWriter, r *http.Request) {
		f.record(r)
		f.mu.Lock()
		defer f.mu.Unlock()
		json.NewEncoder(w).Encode(map[string]any{"migrations": f.migrations})
	})
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeOpenStack) record(r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.queries = append(f.queries, r.Method+" "+r.URL.Path+"?"+r.URL.RawQuery+" "+r.Header.Get("X-OpenStack-Nova-API-Version"))
}

func (f *fakeOpenStack) creds(password string) Credentials {
	cr, _ := CredentialsFromEnv(func(k string) string {
		return map[string]string{"OS_AUTH_URL": f.srv.URL + "/v3", "OS_USERNAME": "admin", "OS_PASSWORD": password,
			"OS_PROJECT_NAME": "admin", "OS_USER_DOMAIN_NAME": "Default", "OS_REGION_NAME": "RegionOne"}[k]
	})
	return cr
}

func server(id, host, status, task string) map[string]any {
	return map[string]any{"id": id, "name": "vm-" + id, "tenant_id": "p1", "status": status,
		"OS-EXT-SRV-ATTR:host": host, "OS-EXT-STS:task_state": task, "OS-EXT-STS:vm_state": "active"}
}

func TestClient(t *testing.T) {
	ctx := context.Background()
	f := newFake(t)
	f.servers["a"] = server("a", "cmp-1", "ACTIVE", "")
	f.servers["b"] = server("b", "cmp-2", "ACTIVE", "")
	c, err := Connect(ctx, f.creds("pw"))
	if err != nil {
		t.Fatal(err)
	}
	t.Run("service exists", func(t *testing.T) {
		for host, want := range map[string]bool{"cmp-1": true, "cmp-9": false} {
			got, err := c.ComputeServiceExists(ctx, host)
			if err != nil || got != want {
				t.Fatalf("%s: %v %v", host, got, err)
			}
		}
	})
	t.Run("servers on a host, all projects", func(t *testing.T) {
		list, err := c.ServersOnHost(ctx, "cmp-1")
		if err != nil || len(list) != 1 || list[0].ID != "a" || list[0].ProjectID != "p1" || list[0].Host != "cmp-1" {
			t.Fatalf("%+v %v", list, err)
		}
		q := f.queries[len(f.queries)-1]
		if !strings.Contains(q, "all_tenants=true") || !strings.Contains(q, "host=cmp-1") || !strings.HasSuffix(q, Microversion) {
			t.Fatalf("query %q", q)
		}
	})
	t.Run("server not found", func(t *testing.T) {
		_, err := c.GetServer(ctx, "zzz")
		if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "server zzz does not exist") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("Nova refuses", func(t *testing.T) {
		err := c.LiveMigrate(ctx, "a", "busy")
		if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "task_state migrating") {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestConnectErrors(t *testing.T) {
	f := newFake(t)
	_, err := Connect(context.Background(), f.creds("wrong"))
	if !errors.Is(err, ErrAuth) {
		t.Fatalf("wrong password: %v", err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	cr := f.creds("pw")
	cr.Auth.IdentityEndpoint = "http://" + addr + "/v3"
	_, err = Connect(context.Background(), cr)
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "Keystone") {
		t.Fatalf("unreachable Keystone: %v", err)
	}
}

// instantly makes Migrate poll without waiting.
func instantly(time.Duration) <-chan time.Time {
	ch := make(chan time.Time, 1)
	ch <- time.Now()
	return ch
}

func TestMigrateFollows(t *testing.T) {
	type step struct {
		status, task, host, migration string
	}
	tests := []struct {
		name    string
		kind    string
		steps   []step
		ok      bool
		to      string
		actions []string
		cause   string
	}{
		{
			name: "live, completed", kind: Live,
			steps: []step{{"MIGRATING", "migrating", "cmp-1", "running"}, {"MIGRATING", "migrating", "cmp-1", "running"}, {"ACTIVE", "", "cmp-2", "completed"}},
			ok:    true, to: "cmp-2",
			actions: []string{`{"os-migrateLive":{"block_migration":"auto","host":"cmp-2"}}`},
		},
		{
			name: "live, no valid host", kind: Live,
			steps: []step{{"MIGRATING", "migrating", "cmp-1", "queued"}, {"ACTIVE", "", "cmp-1", "error"}},
			ok:    false, to: "cmp-1",
			actions: []string{`{"os-migrateLive":{"block_migration":"auto","host":"cmp-2"}}`},
			cause:   "No valid host was found. There are not enough hosts available.",
		},
		{
			name: "cold, confirmed", kind: Cold,
			steps: []step{{"RESIZE", "resize_migrating", "cmp-1", "migrating"}, {"VERIFY_RESIZE", "", "cmp-2", "finished"}, {"ACTIVE", "", "cmp-2", "confirmed"}},
			ok:    true, to: "cmp-2",
			actions: []string{`{"migrate":{"host":"cmp-2"}}`, `{"confirmResize":null}`},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			f := newFake(t)
			f.servers["a"] = server("a", "cmp-1", "ACTIVE", "")
			f.migrations = []map[string]any{{"id": 3, "status": "completed", "source_compute": "cmp-0", "dest_compute": "cmp-1"}}
			polls := 0
			f.onPoll = func(f *fakeOpenStack, id string) {
				f.mu.Lock()
				defer f.mu.Unlock()
				if len(f.actions) == 0 {
					return // before the request
				}
				i := min(polls, len(tc.steps)-1)
				polls++
				s := tc.steps[i]
				f.servers[id] = server(id, s.host, s.status, s.task)
				f.migrations = append([]map[string]any{{"id": 4, "status": s.migration, "source_compute": "cmp-1", "dest_compute": "cmp-2"}}, f.migrations[len(f.migrations)-1])
			}
			c, err := Connect(ctx, f.creds("pw"))
			if err != nil {
				t.Fatal(err)
			}
			var progress []string
			out, err := c.Migrate(ctx, "a", tc.kind, "cmp-2", FollowOptions{Wait: true, After: instantly, Progress: func(p Progress) {
				progress = append(progress, p.Server.Status+"/"+p.Migration.Status)
			}})
			if err != nil {
				t.Fatal(err)
			}
			if out.OK != tc.ok || out.ToHost != tc.to || out.FromHost != "cmp-1" || out.Cause != tc.cause || NoValidHost(out.Cause) != (tc.cause != "") {
				t.Fatalf("outcome %+v", out)
			}
			if fmt.Sprint(f.actions) != fmt.Sprint(tc.actions) {
				t.Fatalf("actions %v, want %v", f.actions, tc.actions)
			}
			if len(progress) < 2 || len(progress) > len(tc.steps) {
				t.Fatalf("progress %v: one line per change expected", progress)
			}
		})
	}
}
