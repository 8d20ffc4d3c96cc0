package remote_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zaptest"

	"github.com/ledgerfence/ledgerfence/pkg/api"
	"github.com/ledgerfence/ledgerfence/pkg/cache"
	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/embedded"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/remote"
)

const token = "admin-secret"

var vm1 = filter.VMSubject("6f1c0d3e-8b2a-4c1d-9e7f-0a1b2c3d4e5f")

// filterd serves the REST API of a filterd over an embedded ledger.
func filterd(t *testing.T, cfg api.Config) (*httptest.Server, *embedded.Ledger) {
	t.Helper()
	l, err := embedded.Open(filepath.Join(t.TempDir(), embedded.FileName))
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	c, err := cache.New(l, zaptest.NewLogger(t), reg, cache.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Backend == "" {
		cfg.Backend, cfg.Writable = "embedded", true
	}
	cfg.AdminToken = token
	if cfg.Heartbeat == 0 {
		cfg.Heartbeat = 20 * time.Millisecond
	}
	srv, err := api.New(l, c, zaptest.NewLogger(t), reg, reg, cfg)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(func() {
		srv.Close()
		hs.Close()
		if err := l.Close(); err != nil {
			t.Error(err)
		}
	})
	return hs, l
}

func client(t *testing.T, url string, opts ...remote.Option) *remote.Client {
	t.Helper()
	c, err := remote.New(url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func host(name, country string, orgs ...string) filter.Host {
	return filter.Host{Name: name, Country: country, Organizations: orgs}
}

func TestRoundTrip(t *testing.T) {
	hs, _ := filterd(t, api.Config{})
	c := client(t, hs.URL, remote.WithToken(token))
	ctx := ledger.WithWriter(t.Context(), ledger.Writer{ID: "hostagent/hm1"})

	rec, changed, err := c.PutHost(ctx, host("hm1", "jp", "CompanyB", "CompanyA"))
	if err != nil || !changed {
		t.Fatalf("PutHost: changed %v, err %v", changed, err)
	}
	// The writer named on the context is not sent: the token's is recorded.
	if rec.Country != "JP" || !slices.Equal(rec.Organizations, []string{"CompanyA", "CompanyB"}) || rec.Writer.ID != api.DefaultWriter || rec.TxID == "" {
		t.Errorf("stored %+v", rec)
	}
	if _, changed, err := c.PutHost(ctx, host("hm1", "JP", "CompanyA", "CompanyB")); err != nil || changed {
		t.Errorf("unchanged PutHost: changed %v, err %v", changed, err)
	}
	for _, n := range []string{"hm2", "hm3", "hm4"} {
		if _, _, err := c.PutHost(ctx, host(n, "GB", "CompanyC")); err != nil {
			t.Fatal(err)
		}
	}
	got, err := c.GetHost(ctx, "hm1")
	if err != nil || !got.Host.Equal(rec.Host) {
		t.Errorf("GetHost = %+v, %v", got, err)
	}
	var names []string
	for after := ""; ; {
		page, err := c.ListHosts(ctx, after, 3)
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range page.Hosts {
			names = append(names, h.Name)
		}
		if page.Next == "" {
			break
		}
		after = page.Next
	}
	if want := []string{"hm1", "hm2", "hm3", "hm4"}; !slices.Equal(names, want) {
		t.Errorf("listed %v, want %v", names, want)
	}

	rules := []filter.Rule{{Country: "JP", Organization: "CompanyA"}, {Country: "GB", Organization: "All"}}
	reg, changed, err := c.PutRegulation(ctx, vm1, filter.Terms{Allow: rules})
	if err != nil || !changed || len(reg.Allow) != 2 || reg.Owner == "" {
		t.Fatalf("PutRegulation = %+v, %v, %v", reg, changed, err)
	}
	if got, err := c.GetRegulation(ctx, vm1); err != nil || !slices.Equal(got.Allow, reg.Allow) {
		t.Errorf("GetRegulation = %+v, %v", got, err)
	}
	lk, err := c.Lookup(ctx, []filter.Subject{vm1, filter.ProjectSubject("p1")}, []string{"hm1", "ghost", "not a host name"})
	if err != nil {
		t.Fatal(err)
	}
	h, _ := c.Height(ctx)
	if lk.Height != h || len(lk.Regulations) != 1 || len(lk.Hosts) != 1 || lk.Hosts["hm1"].Country != "JP" {
		t.Errorf("Lookup = %+v, height %d", lk, h)
	}
	if err := c.DeleteRegulation(ctx, vm1); err != nil {
		t.Fatal(err)
	}
	hist, err := c.History(ctx, ledger.KindRegulation, string(vm1))
	if err != nil || len(hist) != 2 || hist[1].Op != ledger.OpDelete {
		t.Errorf("History = %+v, %v", hist, err)
	}
	if hist, err := c.History(ctx, ledger.KindHost, "hm1"); err != nil || len(hist) != 1 {
		t.Errorf("host History = %+v, %v", hist, err)
	}
	if h != 5 {
		t.Errorf("Height before the delete = %d, want 5 writes", h)
	}
}

func TestErrors(t *testing.T) {
	hs, _ := filterd(t, api.Config{})
	readOnly, _ := filterd(t, api.Config{Backend: "fabric"})
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()
	ctx := t.Context()
	for _, tc := range []struct {
		name string
		call func() error
		want error
	}{
		{"invalid country", func() error {
			_, _, err := client(t, hs.URL, remote.WithToken(token)).PutHost(ctx, host("hm1", "XX", "CompanyA"))
			return err
		}, ledger.ErrInvalid},
		{"invalid host name", func() error {
			_, _, err := client(t, hs.URL, remote.WithToken(token)).PutHost(ctx, host("h m", "JP", "CompanyA"))
			return err
		}, ledger.ErrInvalid},
		{"unknown subject form", func() error {
			_, err := client(t, hs.URL).GetRegulation(ctx, "user:alice")
			return err
		}, ledger.ErrInvalid},
		{"no rules", func() error {
			_, _, err := client(t, hs.URL, remote.WithToken(token)).PutRegulation(ctx, vm1, filter.Terms{Allow: nil})
			return err
		}, ledger.ErrInvalid},
		{"unknown host", func() error {
			_, err := client(t, hs.URL).GetHost(ctx, "nope")
			return err
		}, ledger.ErrNotFound},
		{"no regulation", func() error {
			return client(t, hs.URL, remote.WithToken(token)).DeleteRegulation(ctx, vm1)
		}, ledger.ErrNotFound},
		{"write without the token", func() error {
			_, _, err := client(t, hs.URL).PutHost(ctx, host("hm1", "JP", "CompanyA"))
			return err
		}, ledger.ErrForbidden},
		{"write with a wrong token", func() error {
			_, _, err := client(t, hs.URL, remote.WithToken("guess")).PutHost(ctx, host("hm1", "JP", "CompanyA"))
			return err
		}, ledger.ErrForbidden},
		{"filterd that does not write", func() error {
			_, _, err := client(t, readOnly.URL, remote.WithToken(token)).PutHost(ctx, host("hm1", "JP", "CompanyA"))
			return err
		}, ledger.ErrForbidden},
		{"filterd unreachable", func() error {
			_, err := client(t, down.URL).Height(ctx)
			return err
		}, ledger.ErrUnavailable},
		{"watch unreachable", func() error {
			_, err := client(t, down.URL).Watch(ctx, 0)
			return err
		}, ledger.ErrUnavailable},
		{"closed client", func() error {
			c := client(t, hs.URL)
			_ = c.Close()
			_, err := c.Height(ctx)
			return err
		}, ledger.ErrUnavailable},
		{"not a ledger", func() error {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("<html>")) }))
			defer srv.Close()
			_, err := client(t, srv.URL).GetHost(ctx, "hm1")
			return err
		}, ledger.ErrUnavailable},
		{"unknown history kind", func() error {
			_, err := client(t, hs.URL).History(ctx, "vm", "x")
			return err
		}, ledger.ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			var le *ledger.Error
			if !errors.As(err, &le) || le.Msg == "" {
				t.Errorf("err %v carries no message", err)
			}
		})
	}
	if _, err := remote.New("ftp://x"); !errors.Is(err, ledger.ErrInvalid) {
		t.Errorf("New(ftp://x) = %v, want ErrInvalid", err)
	}
}

func TestWatch(t *testing.T) {
	hs, l := filterd(t, api.Config{})
	c := client(t, hs.URL, remote.WithToken(token))
	ctx := t.Context()
	if _, _, err := c.PutHost(ctx, host("hm1", "JP", "CompanyA")); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	events, err := c.Watch(wctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Written directly to the ledger: the stream must carry it.
	if _, _, err := l.PutRegulation(ctx, vm1, filter.Terms{Allow: []filter.Rule{{Country: "JP", Organization: "*"}}}); err != nil {
		t.Fatal(err)
	}
	var got []ledger.Event
	for len(got) < 2 {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatalf("stream closed after %d events", len(got))
			}
			got = append(got, ev)
		case <-time.After(10 * time.Second):
			t.Fatal("no event")
		}
	}
	if got[0].Kind != ledger.KindHost || got[0].Host == nil || got[0].Block != 1 ||
		got[1].Kind != ledger.KindRegulation || got[1].Regulation == nil || got[1].Block != 2 {
		t.Errorf("events = %+v", got)
	}
	cancel()
	for range events {
	}

	// Resume after block 1: only the regulation.
	events, err = c.Watch(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if ev := <-events; ev.Block != 2 {
		t.Errorf("resumed at block %d, want 2", ev.Block)
	}
	_ = c.Close()
	for range events {
	}
}

// The stream outlives the server's read and write timeouts.
func TestWatchOutlivesServerTimeouts(t *testing.T) {
	l, err := embedded.Open(filepath.Join(t.TempDir(), embedded.FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	reg := prometheus.NewRegistry()
	c, err := cache.New(l, zaptest.NewLogger(t), reg, cache.Config{})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := api.New(l, c, zaptest.NewLogger(t), reg, reg, api.Config{Backend: "embedded", Writable: true, Heartbeat: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewUnstartedServer(srv)
	hs.Config.ReadTimeout = 50 * time.Millisecond
	hs.Config.WriteTimeout = 50 * time.Millisecond
	hs.Start()
	defer hs.Close()
	defer srv.Close()
	events, err := client(t, hs.URL).Watch(t.Context(), 0)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // past both timeouts
	if _, _, err := l.PutHost(t.Context(), host("hm1", "JP", "CompanyA")); err != nil {
		t.Fatal(err)
	}
	select {
	case ev, ok := <-events:
		if !ok {
			t.Fatal("the stream ended with the server's timeouts")
		}
		if ev.Key != "hm1" {
			t.Errorf("event %+v", ev)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no event")
	}
}

func TestWatchSilentStreamCloses(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		select { // say nothing, not even heartbeats
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	defer close(release)
	c := client(t, srv.URL, remote.WithWatchIdleTimeout(50*time.Millisecond))
	events, err := c.Watch(t.Context(), 0)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case _, ok := <-events:
		if ok {
			t.Fatal("an event from a silent stream")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a silent stream was never taken as dead")
	}
}

// A cache over the remote client is filled and kept current through it:
// a filterd can serve another filterd's ledger.
func TestCacheOverRemote(t *testing.T) {
	hs, l := filterd(t, api.Config{})
	c := client(t, hs.URL, remote.WithToken(token))
	ctx := t.Context()
	if _, _, err := c.PutHost(ctx, host("hm1", "JP", "CompanyA")); err != nil {
		t.Fatal(err)
	}
	cc, err := cache.New(c, zaptest.NewLogger(t), prometheus.NewRegistry(), cache.Config{})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- cc.Run(runCtx) }()
	defer func() {
		stop()
		<-done
	}()
	waitFor(t, "cache filled", cc.Ready)
	if _, _, err := l.PutHost(ctx, host("hm2", "DE", "CompanyA")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "event applied", func() bool { return cc.Height() == 2 })
	q := &cache.Query{Subjects: []filter.Subject{vm1}, Candidates: []filter.Candidate{{Name: "hm1"}, {Name: "hm2"}}}
	if _, _, err := l.PutRegulation(ctx, vm1, filter.Terms{Allow: []filter.Rule{{Country: "JP", Organization: "*"}}}); err != nil {
		t.Fatal(err)
	}
	if err := cc.Resolve(ctx, q); err != nil {
		t.Fatal(err)
	}
	if len(q.Regulations) != 1 || q.Candidates[0].Host == nil || q.Candidates[1].Host == nil || q.Candidates[1].Host.Country != "DE" {
		t.Errorf("resolved %+v", q)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
