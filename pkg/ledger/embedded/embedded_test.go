package embedded_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/embedded"
)

const (
	vm1      = "3f0c9a52-6b1e-4d8a-9c1e-2a7b5d4e6f10"
	vm1Upper = "3F0C9A52-6B1E-4D8A-9C1E-2A7B5D4E6F10"
)

var (
	alice = ledger.Writer{ID: "alice"}
	bob   = ledger.Writer{MSP: "Org2MSP", ID: "bob"}
	carol = ledger.Writer{ID: "carol"}
	t0    = time.Date(2025, 4, 1, 9, 0, 0, 0, time.UTC)
)

// clock is a fake clock that moves one millisecond per reading.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(time.Millisecond)
	return c.now
}

func openAt(t testing.TB, path string, opts ...embedded.Option) *embedded.Ledger {
	t.Helper()
	c := &clock{now: t0}
	l, err := embedded.Open(path, append([]embedded.Option{embedded.WithClock(c.Now)}, opts...)...)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func open(t testing.TB) *embedded.Ledger {
	t.Helper()
	return openAt(t, filepath.Join(t.TempDir(), embedded.FileName))
}

func as(w ledger.Writer) context.Context { return ledger.WithWriter(context.Background(), w) }

func host(name, country string, orgs ...string) filter.Host {
	return filter.Host{Name: name, Country: country, Organizations: orgs}
}

func mustPutHost(t testing.TB, l *embedded.Ledger, ctx context.Context, h filter.Host) ledger.HostRecord {
	t.Helper()
	rec, _, err := l.PutHost(ctx, h)
	if err != nil {
		t.Fatalf("PutHost(%s): %v", h.Name, err)
	}
	return rec
}

func mustPutRegulation(t testing.TB, l *embedded.Ledger, ctx context.Context, s filter.Subject, rules ...filter.Rule) ledger.RegulationRecord {
	t.Helper()
	rec, _, err := l.PutRegulation(ctx, s, filter.Terms{Allow: rules})
	if err != nil {
		t.Fatalf("PutRegulation(%s): %v", s, err)
	}
	return rec
}

func height(t testing.TB, l *embedded.Ledger) uint64 {
	t.Helper()
	h, err := l.Height(context.Background())
	if err != nil {
		t.Fatalf("Height: %v", err)
	}
	return h
}

func TestPutHost(t *testing.T) {
	tests := []struct {
		name string
		in   filter.Host
		want filter.Host
	}{
		{"canonical", host("cmp-1", "JP", "CompanyA"), host("cmp-1", "JP", "CompanyA")},
		{"lower-case country", host("cmp-2", "gb", "CompanyB"), host("cmp-2", "GB", "CompanyB")},
		{"organisations sorted without duplicates", host("cmp-3", "DE", "Zeta", "Alpha", "Zeta"), host("cmp-3", "DE", "Alpha", "Zeta")},
		{"region kept", filter.Host{Name: "cmp-4", Country: "JP", Organizations: []string{"CompanyA"}, Region: "tokyo-1"},
			filter.Host{Name: "cmp-4", Country: "JP", Organizations: []string{"CompanyA"}, Region: "tokyo-1"}},
	}
	l := open(t)
	ctx := as(alice)
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec, changed, err := l.PutHost(ctx, tt.in)
			if err != nil {
				t.Fatalf("PutHost: %v", err)
			}
			if !changed {
				t.Errorf("changed = false on a new host")
			}
			if !rec.Host.Equal(tt.want) {
				t.Errorf("stored %+v, want %+v", rec.Host, tt.want)
			}
			if rec.Writer != alice || len(rec.TxID) != 64 || rec.UpdatedAt.IsZero() {
				t.Errorf("record metadata: writer %v, tx id %q, time %v", rec.Writer, rec.TxID, rec.UpdatedAt)
			}
			got, err := l.GetHost(context.Background(), tt.in.Name)
			if err != nil {
				t.Fatalf("GetHost: %v", err)
			}
			if !got.Host.Equal(tt.want) || got.TxID != rec.TxID || !got.UpdatedAt.Equal(rec.UpdatedAt) || got.Writer != rec.Writer {
				t.Errorf("GetHost = %+v, want %+v", got, rec)
			}
			if h := height(t, l); h != uint64(i+1) {
				t.Errorf("height = %d, want %d", h, i+1)
			}
		})
	}
}

func TestNoOpWrites(t *testing.T) {
	l := open(t)
	first := mustPutHost(t, l, as(alice), host("cmp-1", "JP", "CompanyA", "CompanyB"))
	reg := mustPutRegulation(t, l, as(alice), filter.VMSubject(vm1), filter.Rule{Country: "JP", Organization: "CompanyA"})
	events, err := l.Watch(context.Background(), height(t, l))
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}

	tests := []struct {
		name  string
		write func() (txID string, changed bool, err error)
		want  string
	}{
		{"same host", func() (string, bool, error) {
			r, c, err := l.PutHost(as(alice), host("cmp-1", "JP", "CompanyA", "CompanyB"))
			return r.TxID, c, err
		}, first.TxID},
		{"same host in another spelling, by another writer", func() (string, bool, error) {
			r, c, err := l.PutHost(as(bob), host("cmp-1", "jp", "CompanyB", "CompanyA", "CompanyA"))
			return r.TxID, c, err
		}, first.TxID},
		{"same regulation in the seed's spelling, by another writer", func() (string, bool, error) {
			r, c, err := l.PutRegulation(as(bob), filter.VMSubject(vm1Upper), filter.Terms{Allow: []filter.Rule{{Country: "jp", Organization: "CompanyA"}, {Country: "JP", Organization: "CompanyA"}}})
			return r.TxID, c, err
		}, reg.TxID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := height(t, l)
			txID, changed, err := tt.write()
			if err != nil {
				t.Fatalf("write: %v", err)
			}
			if changed {
				t.Errorf("changed = true for an unchanged record")
			}
			if txID != tt.want {
				t.Errorf("returned tx id %s, want the stored record's %s", txID, tt.want)
			}
			if h := height(t, l); h != before {
				t.Errorf("height moved from %d to %d", before, h)
			}
		})
	}
	got, err := l.GetRegulation(context.Background(), filter.VMSubject(vm1))
	if err != nil || got.Owner != "alice" || got.Version != 1 {
		t.Errorf("regulation after no-op puts: %+v, %v; want owner alice, version 1", got, err)
	}
	select {
	case ev := <-events:
		t.Errorf("no-op write emitted event %+v", ev)
	case <-time.After(50 * time.Millisecond):
	}
}

func TestValidationRejects(t *testing.T) {
	l := open(t)
	ctx := as(alice)
	mustPutHost(t, l, ctx, host("cmp-1", "JP", "CompanyA"))
	mustPutRegulation(t, l, ctx, filter.VMSubject(vm1), filter.Rule{Country: "JP", Organization: "CompanyA"})
	rule := filter.Rule{Country: "JP", Organization: "CompanyA"}

	tests := []struct {
		name  string
		write func() error
		field string // expected in the message
	}{
		{"host with unknown country", func() error { _, _, err := l.PutHost(ctx, host("cmp-2", "XX", "CompanyA")); return err }, "country"},
		{"host without organisation", func() error { _, _, err := l.PutHost(ctx, host("cmp-2", "JP")); return err }, "organizations"},
		{"host with wildcard organisation", func() error { _, _, err := l.PutHost(ctx, host("cmp-2", "JP", "*")); return err }, "organizations"},
		{"host with empty name", func() error { _, _, err := l.PutHost(ctx, host("", "JP", "CompanyA")); return err }, "host"},
		{"host name with a slash", func() error { _, _, err := l.PutHost(ctx, host("a/b", "JP", "CompanyA")); return err }, "host"},
		{"existing host changed to a bad country", func() error { _, _, err := l.PutHost(ctx, host("cmp-1", "ZZ", "CompanyA")); return err }, "country"},
		{"regulation for unknown subject kind", func() error {
			_, _, err := l.PutRegulation(ctx, "tenant:x", filter.Terms{Allow: []filter.Rule{rule}})
			return err
		}, "subject"},
		{"regulation for a VM that is not a UUID", func() error {
			_, _, err := l.PutRegulation(ctx, filter.VMSubject("vm1"), filter.Terms{Allow: []filter.Rule{rule}})
			return err
		}, "subject"},
		{"regulation without rules", func() error {
			_, _, err := l.PutRegulation(ctx, filter.VMSubject(vm1), filter.Terms{Allow: nil})
			return err
		}, "allow"},
		{"regulation with unknown country", func() error {
			_, _, err := l.PutRegulation(ctx, filter.ProjectSubject("p1"), filter.Terms{Allow: []filter.Rule{{Country: "QQ", Organization: "CompanyA"}}})
			return err
		}, "allow[0].country"},
		{"delete with bad subject", func() error { return l.DeleteRegulation(ctx, "vm:") }, "subject"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := height(t, l)
			err := tt.write()
			if !errors.Is(err, ledger.ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid", err)
			}
			var ve *filter.ValidationError
			if !errors.As(err, &ve) || !strings.Contains(err.Error(), tt.field) {
				t.Errorf("err = %v, want a wrapped filter.ValidationError naming %q", err, tt.field)
			}
			if h := height(t, l); h != before {
				t.Errorf("height moved from %d to %d", before, h)
			}
		})
	}
	page, err := l.ListHosts(context.Background(), "", 0)
	if err != nil || len(page.Hosts) != 1 || page.Hosts[0].Country != "JP" {
		t.Errorf("hosts after rejected writes: %+v, %v", page, err)
	}
	if _, err := l.GetRegulation(context.Background(), filter.ProjectSubject("p1")); !errors.Is(err, ledger.ErrNotFound) {
		t.Errorf("rejected regulation stored: %v", err)
	}
}

func TestNotFound(t *testing.T) {
	l := open(t)
	ctx := context.Background()
	mustPutHost(t, l, as(alice), host("cmp-1", "JP", "CompanyA"))
	tests := []struct {
		name string
		call func() error
		want error
	}{
		{"unknown host", func() error { _, err := l.GetHost(ctx, "cmp-9"); return err }, ledger.ErrNotFound},
		{"invalid host name", func() error { _, err := l.GetHost(ctx, "cmp 9"); return err }, ledger.ErrInvalid},
		{"unknown regulation", func() error { _, err := l.GetRegulation(ctx, filter.VMSubject(vm1)); return err }, ledger.ErrNotFound},
		{"invalid subject", func() error { _, err := l.GetRegulation(ctx, "vm1"); return err }, ledger.ErrInvalid},
		{"delete unknown regulation", func() error { return l.DeleteRegulation(ctx, filter.ProjectSubject("p1")) }, ledger.ErrNotFound},
		{"history of unknown host", func() error { _, err := l.History(ctx, ledger.KindHost, "cmp-9"); return err }, ledger.ErrNotFound},
		{"history of unknown kind", func() error { _, err := l.History(ctx, "vm", "cmp-1"); return err }, ledger.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if !errors.Is(err, tt.want) {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
		})
	}
	if h := height(t, l); h != 1 {
		t.Errorf("height = %d, want 1", h)
	}
}

func TestListHostsPaging(t *testing.T) {
	l := open(t)
	var names []string
	for i := range 7 {
		n := fmt.Sprintf("cmp-%02d", i)
		names = append(names, n)
		mustPutHost(t, l, as(alice), host(n, "JP", "CompanyA"))
	}
	tests := []struct {
		name      string
		after     string
		limit     int
		wantHosts []string
		wantNext  string
	}{
		{"first page", "", 3, names[0:3], "cmp-02"},
		{"middle page", "cmp-02", 3, names[3:6], "cmp-05"},
		{"last page, exactly full", "cmp-03", 3, names[4:7], ""},
		{"last page, short", "cmp-05", 3, names[6:7], ""},
		{"after the last", "cmp-06", 3, nil, ""},
		{"after a name that is not stored", "cmp-035", 2, names[4:6], "cmp-05"},
		{"default limit", "", 0, names, ""},
		{"negative limit is the default", "", -5, names, ""},
		{"limit above the cap", "", 5000, names, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			page, err := l.ListHosts(context.Background(), tt.after, tt.limit)
			if err != nil {
				t.Fatalf("ListHosts: %v", err)
			}
			var got []string
			for _, h := range page.Hosts {
				got = append(got, h.Name)
			}
			if !slices.Equal(got, tt.wantHosts) || page.Next != tt.wantNext {
				t.Errorf("got %v next %q, want %v next %q", got, page.Next, tt.wantHosts, tt.wantNext)
			}
		})
	}

	t.Run("walk every page", func(t *testing.T) {
		var got []string
		after := ""
		for pages := 0; ; pages++ {
			if pages > len(names) {
				t.Fatal("paging does not end")
			}
			page, err := l.ListHosts(context.Background(), after, 2)
			if err != nil {
				t.Fatalf("ListHosts: %v", err)
			}
			for _, h := range page.Hosts {
				got = append(got, h.Name)
			}
			if page.Next == "" {
				break
			}
			after = page.Next
		}
		if !slices.Equal(got, names) {
			t.Errorf("walked %v, want %v", got, names)
		}
	})
}

func TestListHostsLimits(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 1,001 hosts")
	}
	l := open(t)
	for i := range embedded.MaxListLimit + 1 {
		mustPutHost(t, l, as(alice), host(fmt.Sprintf("cmp-%04d", i), "JP", "CompanyA"))
	}
	tests := []struct {
		name     string
		limit    int
		wantLen  int
		wantNext string
	}{
		{"default", 0, embedded.DefaultListLimit, fmt.Sprintf("cmp-%04d", embedded.DefaultListLimit-1)},
		{"capped", embedded.MaxListLimit + 500, embedded.MaxListLimit, fmt.Sprintf("cmp-%04d", embedded.MaxListLimit-1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			page, err := l.ListHosts(context.Background(), "", tt.limit)
			if err != nil {
				t.Fatalf("ListHosts: %v", err)
			}
			if len(page.Hosts) != tt.wantLen || page.Next != tt.wantNext {
				t.Errorf("got %d hosts next %q, want %d next %q", len(page.Hosts), page.Next, tt.wantLen, tt.wantNext)
			}
		})
	}
}

func TestRegulationOwnerAndVersion(t *testing.T) {
	l := open(t)
	subj := filter.VMSubject(vm1)
	jpA := filter.Rule{Country: "JP", Organization: "CompanyA"}
	gbB := filter.Rule{Country: "GB", Organization: "CompanyB"}

	type step struct {
		name        string
		ctx         context.Context
		rules       []filter.Rule // nil: delete
		wantChanged bool
		wantOwner   string
		wantVersion uint64
	}
	steps := []step{
		{"first put makes the owner", as(alice), []filter.Rule{jpA}, true, "alice", 1},
		{"another writer's change keeps the owner", as(bob), []filter.Rule{jpA, gbB}, true, "alice", 2},
		{"unchanged put is a no-op", as(carol), []filter.Rule{gbB, jpA}, false, "alice", 2},
		{"delete", as(bob), nil, true, "", 0},
		{"put after delete: a new owner, the version goes on", as(carol), []filter.Rule{gbB}, true, "carol", 3},
		{"no writer in the context", context.Background(), []filter.Rule{jpA}, true, "carol", 4},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			if s.rules == nil {
				if err := l.DeleteRegulation(s.ctx, filter.VMSubject(vm1Upper)); err != nil {
					t.Fatalf("DeleteRegulation: %v", err)
				}
				if _, err := l.GetRegulation(context.Background(), subj); !errors.Is(err, ledger.ErrNotFound) {
					t.Errorf("after delete: %v, want ErrNotFound", err)
				}
				return
			}
			rec, changed, err := l.PutRegulation(s.ctx, subj, filter.Terms{Allow: s.rules})
			if err != nil {
				t.Fatalf("PutRegulation: %v", err)
			}
			if changed != s.wantChanged || rec.Owner != s.wantOwner || rec.Version != s.wantVersion {
				t.Errorf("changed %v owner %q version %d, want %v %q %d", changed, rec.Owner, rec.Version, s.wantChanged, s.wantOwner, s.wantVersion)
			}
			if rec.Subject != subj {
				t.Errorf("subject %q, want %q", rec.Subject, subj)
			}
		})
	}

	hist, err := l.History(context.Background(), ledger.KindRegulation, "vm:"+vm1Upper)
	if err != nil {
		t.Fatalf("History: %v", err)
	}
	type row struct {
		op      ledger.Op
		writer  string
		owner   string
		version uint64
	}
	want := []row{
		{ledger.OpPut, "alice", "alice", 1},
		{ledger.OpPut, "Org2MSP/bob", "alice", 2},
		{ledger.OpDelete, "Org2MSP/bob", "", 0},
		{ledger.OpPut, "carol", "carol", 3},
		{ledger.OpPut, "embedded", "carol", 4},
	}
	var got []row
	for _, c := range hist {
		r := row{op: c.Op, writer: c.Writer.String()}
		if c.Regulation != nil {
			r.owner, r.version = c.Regulation.Owner, c.Regulation.Version
		}
		got = append(got, r)
	}
	if !slices.Equal(got, want) {
		t.Errorf("history\n got %v\nwant %v", got, want)
	}
}

func TestHistory(t *testing.T) {
	l := open(t)
	mustPutHost(t, l, as(alice), host("cmp-1", "JP", "CompanyA"))
	mustPutHost(t, l, as(alice), host("cmp-2", "GB", "CompanyB")) // another key, not in cmp-1's history
	mustPutHost(t, l, as(alice), host("cmp-1", "JP", "CompanyA")) // no-op, not in history
	mustPutHost(t, l, as(bob), host("cmp-1", "JP", "CompanyA", "CompanyB"))
	last := mustPutHost(t, l, as(carol), host("cmp-1", "GB", "CompanyB"))

	hist, err := l.History(context.Background(), ledger.KindHost, "cmp-1")
	if err != nil {
		t.Fatalf("History: %v", err)
	}
	want := []struct {
		block   uint64
		writer  ledger.Writer
		country string
		orgs    []string
	}{
		{1, alice, "JP", []string{"CompanyA"}},
		{3, bob, "JP", []string{"CompanyA", "CompanyB"}},
		{4, carol, "GB", []string{"CompanyB"}},
	}
	if len(hist) != len(want) {
		t.Fatalf("%d changes, want %d: %+v", len(hist), len(want), hist)
	}
	for i, w := range want {
		c := hist[i]
		if c.Block != w.block || c.Writer != w.writer || c.Op != ledger.OpPut || c.Host == nil ||
			c.Host.Country != w.country || !slices.Equal(c.Host.Organizations, w.orgs) {
			t.Errorf("change %d = %+v, want block %d writer %v %s %v", i, c, w.block, w.writer, w.country, w.orgs)
		}
		if i > 0 && !c.Time.After(hist[i-1].Time) {
			t.Errorf("change %d time %v is not after %v", i, c.Time, hist[i-1].Time)
		}
	}
	if c := hist[len(hist)-1]; c.TxID != last.TxID || !c.Time.Equal(last.UpdatedAt) {
		t.Errorf("last change %s at %v, want the stored record's %s at %v", c.TxID, c.Time, last.TxID, last.UpdatedAt)
	}
}

func TestLookup(t *testing.T) {
	l := open(t)
	ctx := as(alice)
	mustPutHost(t, l, ctx, host("cmp-1", "JP", "CompanyA"))
	mustPutHost(t, l, ctx, host("cmp-2", "DE", "CompanyA"))
	mustPutRegulation(t, l, ctx, filter.VMSubject(vm1), filter.Rule{Country: "JP", Organization: "CompanyA"})
	mustPutRegulation(t, l, ctx, filter.ProjectSubject("p1"), filter.Rule{Country: "*", Organization: "CompanyA"})

	tests := []struct {
		name      string
		subjects  []filter.Subject
		hosts     []string
		wantRegs  []filter.Subject
		wantHosts []string
		wantErr   error
	}{
		{"everything", []filter.Subject{filter.VMSubject(vm1), filter.ProjectSubject("p1")}, []string{"cmp-1", "cmp-2"},
			[]filter.Subject{filter.VMSubject(vm1), filter.ProjectSubject("p1")}, []string{"cmp-1", "cmp-2"}, nil},
		{"missing records are absent", []filter.Subject{filter.ProjectSubject("p2")}, []string{"cmp-1", "cmp-9", "not a host", ""},
			nil, []string{"cmp-1"}, nil},
		{"a VM's UUID in upper case finds its regulation, keyed as asked", []filter.Subject{filter.VMSubject(vm1Upper)}, nil,
			[]filter.Subject{filter.VMSubject(vm1Upper)}, nil, nil},
		{"duplicate hosts", nil, []string{"cmp-1", "cmp-1"}, nil, []string{"cmp-1"}, nil},
		{"empty", nil, nil, nil, nil, nil},
		{"an invalid subject fails the lookup", []filter.Subject{filter.VMSubject(vm1), "vm:not-a-uuid"}, []string{"cmp-1"},
			nil, nil, ledger.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := l.Lookup(context.Background(), tt.subjects, tt.hosts)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Lookup: %v", err)
			}
			if res.Height != 4 {
				t.Errorf("height %d, want 4", res.Height)
			}
			if len(res.Regulations) != len(tt.wantRegs) || len(res.Hosts) != len(tt.wantHosts) {
				t.Errorf("got %d regulations and %d hosts, want %v and %v", len(res.Regulations), len(res.Hosts), tt.wantRegs, tt.wantHosts)
			}
			for _, s := range tt.wantRegs {
				if r, ok := res.Regulations[s]; !ok || r.Version != 1 {
					t.Errorf("regulation %s: %+v, %v", s, r, ok)
				}
			}
			for _, h := range tt.wantHosts {
				if r, ok := res.Hosts[h]; !ok || r.Name != h {
					t.Errorf("host %s: %+v, %v", h, r, ok)
				}
			}
		})
	}
}

// TestLookupHeightConsistent checks, under concurrent writes, that the
// height returned by Lookup is that of the data returned: host cmp-1's
// record was written by entry number Height.
func TestLookupHeightConsistent(t *testing.T) {
	l := open(t)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 40 {
			c := []string{"JP", "GB"}[i%2]
			if _, _, err := l.PutHost(as(alice), host("cmp-1", c, "CompanyA")); err != nil {
				t.Errorf("PutHost: %v", err)
				return
			}
		}
	}()
	for reading := true; reading; {
		select {
		case <-done:
			reading = false
		default:
		}
		res, err := l.Lookup(context.Background(), nil, []string{"cmp-1"})
		if err != nil {
			t.Fatalf("Lookup: %v", err)
		}
		rec, ok := res.Hosts["cmp-1"]
		if !ok {
			if res.Height != 0 {
				t.Fatalf("height %d without cmp-1", res.Height)
			}
			continue
		}
		hist, err := l.History(context.Background(), ledger.KindHost, "cmp-1")
		if err != nil {
			t.Fatalf("History: %v", err)
		}
		i := slices.IndexFunc(hist, func(c ledger.Change) bool { return c.TxID == rec.TxID })
		if i < 0 || hist[i].Block != res.Height {
			t.Fatalf("lookup at height %d returned the record of tx %s (change %d)", res.Height, rec.TxID, i)
		}
	}
}

func TestReopenKeepsEverything(t *testing.T) {
	path := filepath.Join(t.TempDir(), embedded.FileName)
	l := openAt(t, path)
	h := mustPutHost(t, l, as(alice), host("cmp-1", "JP", "CompanyA"))
	mustPutRegulation(t, l, as(bob), filter.VMSubject(vm1), filter.Rule{Country: "JP", Organization: "CompanyA"})
	r := mustPutRegulation(t, l, as(alice), filter.VMSubject(vm1), filter.Rule{Country: "GB", Organization: "CompanyA"})
	mustPutRegulation(t, l, as(alice), filter.ProjectSubject("p1"), filter.Rule{Country: "GB", Organization: "*"})
	if err := l.DeleteRegulation(as(alice), filter.ProjectSubject("p1")); err != nil {
		t.Fatalf("DeleteRegulation: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	l = openAt(t, path)
	ctx := context.Background()
	if got := height(t, l); got != 5 {
		t.Errorf("height after reopen = %d, want 5", got)
	}
	if got, err := l.GetHost(ctx, "cmp-1"); err != nil || got.TxID != h.TxID || !got.Host.Equal(h.Host) || !got.UpdatedAt.Equal(h.UpdatedAt) {
		t.Errorf("host after reopen: %+v, %v; want %+v", got, err, h)
	}
	if got, err := l.GetRegulation(ctx, filter.VMSubject(vm1)); err != nil || got.TxID != r.TxID || got.Owner != "Org2MSP/bob" || got.Version != 2 {
		t.Errorf("regulation after reopen: %+v, %v; want %+v", got, err, r)
	}
	if _, err := l.GetRegulation(ctx, filter.ProjectSubject("p1")); !errors.Is(err, ledger.ErrNotFound) {
		t.Errorf("deleted regulation after reopen: %v", err)
	}
	if hist, err := l.History(ctx, ledger.KindRegulation, "project:p1"); err != nil || len(hist) != 2 {
		t.Errorf("history after reopen: %d changes, %v; want 2", len(hist), err)
	}
	rep, err := l.Verify(ctx)
	if err != nil || !rep.OK || rep.Height != 5 || rep.Hosts != 1 || rep.Regulations != 1 {
		t.Errorf("Verify after reopen: %+v, %v", rep, err)
	}
	// The chain goes on where it stopped.
	h2 := mustPutHost(t, l, as(alice), host("cmp-2", "JP", "CompanyA"))
	if hist, _ := l.History(ctx, ledger.KindHost, "cmp-2"); len(hist) != 1 || hist[0].Block != 6 || hist[0].TxID != h2.TxID {
		t.Errorf("first write after reopen: %+v", hist)
	}
	if _, err := l.Verify(ctx); err != nil {
		t.Errorf("Verify after a write on the reopened ledger: %v", err)
	}
}

func TestClosed(t *testing.T) {
	l := open(t)
	mustPutHost(t, l, as(alice), host("cmp-1", "JP", "CompanyA"))
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	ctx := context.Background()
	calls := map[string]func() error{
		"GetHost":   func() error { _, err := l.GetHost(ctx, "cmp-1"); return err },
		"ListHosts": func() error { _, err := l.ListHosts(ctx, "", 10); return err },
		"PutHost": func() error {
			_, _, err := l.PutHost(ctx, host("cmp-2", "JP", "CompanyA"))
			return err
		},
		"GetRegulation": func() error { _, err := l.GetRegulation(ctx, filter.VMSubject(vm1)); return err },
		"PutRegulation": func() error {
			_, _, err := l.PutRegulation(ctx, filter.VMSubject(vm1), filter.Terms{Allow: []filter.Rule{{Country: "JP", Organization: "A"}}})
			return err
		},
		"DeleteRegulation": func() error { return l.DeleteRegulation(ctx, filter.VMSubject(vm1)) },
		"Lookup":           func() error { _, err := l.Lookup(ctx, nil, []string{"cmp-1"}); return err },
		"History":          func() error { _, err := l.History(ctx, ledger.KindHost, "cmp-1"); return err },
		"Height":           func() error { _, err := l.Height(ctx); return err },
		"Watch":            func() error { _, err := l.Watch(ctx, 0); return err },
		"Verify":           func() error { _, err := l.Verify(ctx); return err },
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			if err := call(); !errors.Is(err, ledger.ErrUnavailable) {
				t.Errorf("err = %v, want ErrUnavailable", err)
			}
		})
	}
}

func TestContextEnded(t *testing.T) {
	l := open(t)
	ctx, cancel := context.WithCancel(as(alice))
	cancel()
	tests := []struct {
		name string
		call func() error
	}{
		{"PutHost", func() error { _, _, err := l.PutHost(ctx, host("cmp-1", "JP", "CompanyA")); return err }},
		{"PutRegulation", func() error {
			_, _, err := l.PutRegulation(ctx, filter.VMSubject(vm1), filter.Terms{Allow: []filter.Rule{{Country: "JP", Organization: "A"}}})
			return err
		}},
		{"GetHost", func() error { _, err := l.GetHost(ctx, "cmp-1"); return err }},
		{"Lookup", func() error { _, err := l.Lookup(ctx, nil, []string{"cmp-1"}); return err }},
		{"Watch", func() error { _, err := l.Watch(ctx, 0); return err }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if !errors.Is(err, ledger.ErrUnavailable) || !errors.Is(err, context.Canceled) {
				t.Errorf("err = %v, want ErrUnavailable and context.Canceled", err)
			}
		})
	}
	if h := height(t, l); h != 0 {
		t.Errorf("height = %d after cancelled writes, want 0", h)
	}
}

func TestOpenLockedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), embedded.FileName)
	openAt(t, path)
	start := time.Now()
	l, err := embedded.Open(path, embedded.WithOpenTimeout(100*time.Millisecond))
	if err == nil {
		l.Close()
		t.Fatal("second Open of a locked file succeeded")
	}
	if !errors.Is(err, ledger.ErrUnavailable) || !strings.Contains(err.Error(), "locked") {
		t.Errorf("err = %v, want ErrUnavailable saying the file is locked", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Open waited %v", d)
	}
}

func TestOpenNotALedger(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing-dir", embedded.FileName)
	if _, err := embedded.Open(path); !errors.Is(err, ledger.ErrUnavailable) {
		t.Errorf("Open in a missing directory: %v, want ErrUnavailable", err)
	}
}
