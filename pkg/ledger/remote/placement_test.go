package remote_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/ledgerfence/ledgerfence/pkg/api"
	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/embedded"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/remote"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/tokens"
)

const (
	pvm1 = "6f1c0d3e-8b2a-4c1d-9e7f-0a1b2c3d4e5f"
	pvm2 = "0b7e2c4a-1d3f-4e5a-8b9c-7d6e5f4a3b2c"
)

var pAt = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// placementServer is a server of the ledger's HTTP side alone, with the
// placement routes mounted as pkg/api mounts them, over an embedded ledger
// whose writer tokens live in dir.
func placementServer(t *testing.T, dir string) string {
	return placementServerLogging(t, dir, zaptest.NewLogger(t))
}

// placementServerLogging is placementServer logging to log.
func placementServerLogging(t testing.TB, dir string, log *zap.Logger) string {
	t.Helper()
	l, err := embedded.Open(filepath.Join(dir, embedded.FileName))
	if err != nil {
		t.Fatal(err)
	}
	store, err := tokens.Open(filepath.Join(dir, tokens.FileName))
	if err != nil {
		t.Fatal(err)
	}
	s := remote.NewServer(l, log, remote.ServerOptions{
		Backend: "embedded", MaxBody: 1 << 20, MaxStreams: 4, Heartbeat: 50 * time.Millisecond, StreamWriteTimeout: 5 * time.Second,
	})
	mux := http.NewServeMux()
	governanceRoutes(mux, s, store)
	placementRoutes(mux, s, store)
	hs := httptest.NewServer(mux)
	t.Cleanup(func() {
		s.Close()
		hs.Close()
		l.Close()
	})
	return hs.URL
}

// placementRoutes mounts POST and GET /v1/placements as pkg/api mounts
// them.
func placementRoutes(mux *http.ServeMux, s *remote.Server, store *tokens.Store) {
	mux.HandleFunc("POST /v1/placements", authenticated(store, s.RecordPlacement))
	mux.HandleFunc("GET /v1/placements", s.Placements)
}

// placementAPIServer is filterd's whole API (pkg/api) over an embedded
// ledger, with writer tokens in dir; the test is skipped while pkg/api does
// not mount the placement routes.
func placementAPIServer(t *testing.T, dir string) string {
	t.Helper()
	store, err := tokens.Open(filepath.Join(dir, tokens.FileName))
	if err != nil {
		t.Fatal(err)
	}
	hs, _ := filterd(t, api.Config{Writers: store})
	resp, err := http.Get(hs.URL + "/v1/placements?vm=" + pvm1)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.Contains(string(body), "no such endpoint") {
		t.Fatal("pkg/api does not mount the placement routes")
	}
	return hs.URL
}

func TestPlacementsOverHTTP(t *testing.T) {
	for name, start := range map[string]func(*testing.T, string) string{
		"server routes": placementServer,
		"filterd api":   placementAPIServer,
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			url := start(t, dir)
			placementFlows(t, url, roleClients(t, url, dir))
		})
	}
}

func placementFlows(t *testing.T, url string, as map[string]*remote.Client) {
	ctx := context.Background()
	op, recorder, agent := as["operator"], as["recorder"], as["hostagent-hm1"]
	height := func() uint64 {
		t.Helper()
		h, err := op.Height(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	refused := func(before uint64, err, want error, words ...string) {
		t.Helper()
		if !errors.Is(err, want) {
			t.Fatalf("err = %v, want %v", err, want)
		}
		for _, w := range words {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%q does not say %q", err, w)
			}
		}
		if h := height(); h != before {
			t.Fatalf("a refused write moved the height from %d to %d", before, h)
		}
	}
	for _, h := range []filter.Host{host("hm1", "JP", "A"), host("hm2", "DE", "A")} {
		if _, _, err := op.PutHost(ctx, h); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := op.PutRegulation(ctx, filter.VMSubject(pvm1), filter.Terms{Allow: []filter.Rule{{Country: "JP", Organization: "A"}}}); err != nil {
		t.Fatal(err)
	}
	events, err := op.Watch(ctx, height())
	if err != nil {
		t.Fatal(err)
	}

	// The recorder records Nova's word: allowed on hm1, a violation on hm2.
	boot := ledger.Placement{VM: pvm1, Project: "p1", Host: "hm1", Op: ledger.OpBoot, At: pAt, Witness: ledger.WitnessNova, Ref: "msg-1", RequestID: "req-1"}
	rec, changed, err := recorder.RecordPlacement(ctx, boot)
	if err != nil || !changed {
		t.Fatalf("RecordPlacement = %v, changed %v", err, changed)
	}
	if rec.Writer.ID != "recorder" || rec.Writer.Role != "recorder" || rec.TxID == "" || rec.Verdict == nil || !rec.Verdict.Allowed ||
		len(rec.Verdict.Regulations) != 1 || rec.Verdict.Regulations[0].Version != 1 || rec.RequestID != "req-1" {
		t.Fatalf("record %+v (verdict %+v)", rec, rec.Verdict)
	}
	h := height()
	again, changed, err := recorder.RecordPlacement(ctx, boot)
	if err != nil || changed || again.TxID != rec.TxID || height() != h {
		t.Fatalf("again: %+v, changed %v, %v", again, changed, err)
	}
	move := ledger.Placement{VM: pvm1, Project: "p1", Host: "hm2", From: "hm1", Op: ledger.OpLiveMigration, At: pAt.Add(time.Hour), Witness: ledger.WitnessNova, Ref: "msg-2"}
	viol, _, err := recorder.RecordPlacement(ctx, move)
	if err != nil || viol.Verdict == nil || viol.Verdict.Allowed || viol.Verdict.Reason != filter.CountryNotAllowed {
		t.Fatalf("violation: %+v, %v", viol.Verdict, err)
	}
	// The host agent records what it sees on its own host.
	seen := ledger.Placement{VM: pvm1, Project: "p1", Host: "hm1", Op: ledger.OpObserved, At: pAt.Add(time.Minute), Witness: ledger.WitnessHostAgent, Ref: "sweep-1"}
	if rec, _, err := agent.RecordPlacement(ctx, seen); err != nil || rec.Writer.ID != "hostagent-hm1" || rec.Writer.Role != "hostagent" {
		t.Fatalf("host agent: %+v, %v", rec, err)
	}

	// Refusals.
	h = height()
	other := seen
	other.Host, other.Ref = "hm2", "sweep-2"
	_, _, err = agent.RecordPlacement(ctx, other)
	refused(h, err, ledger.ErrForbidden, "its own host only", "hm2", "HTTP 403")
	asNova := boot
	asNova.Ref = "msg-3"
	_, _, err = agent.RecordPlacement(ctx, asNova)
	refused(h, err, ledger.ErrForbidden, "records its own word", "HTTP 403")
	asAgent := seen
	asAgent.Ref = "sweep-3"
	_, _, err = recorder.RecordPlacement(ctx, asAgent)
	refused(h, err, ledger.ErrForbidden, "records Nova's word", "HTTP 403")
	for _, who := range []string{"vmm", "hostadmin", "policy", "attestor"} {
		_, _, err = as[who].RecordPlacement(ctx, asNova)
		refused(h, err, ledger.ErrForbidden, "recording a placement needs the role recorder or hostagent", "HTTP 403")
	}
	_, _, err = recorder.PutHost(ctx, host("hm3", "JP", "A"))
	refused(h, err, ledger.ErrForbidden, "role is recorder")
	_, _, err = recorder.PutRegulation(ctx, filter.VMSubject(pvm2), filter.Terms{Allow: []filter.Rule{{Country: "JP", Organization: "A"}}})
	refused(h, err, ledger.ErrForbidden, "role is recorder")
	bad := boot
	bad.Op = "teleport"
	_, _, err = recorder.RecordPlacement(ctx, bad)
	refused(h, err, ledger.ErrInvalid, "op")

	// Reads: by VM, by project, in a period; the same records as written.
	all, err := as["vmm"].Placements(ctx, ledger.PlacementQuery{VM: strings.ToUpper(pvm1)})
	if err != nil || len(all) != 3 || all[0].Ref != "msg-1" || all[1].Ref != "sweep-1" || all[2].Ref != "msg-2" || all[0].TxID != rec.TxID {
		t.Fatalf("Placements of the VM: %+v, %v", all, err)
	}
	if got, err := op.Placements(ctx, ledger.PlacementQuery{Project: "p1", From: pAt.Add(time.Second), To: pAt.Add(time.Hour)}); err != nil || len(got) != 1 || got[0].Ref != "sweep-1" {
		t.Fatalf("Placements of the project in a period: %+v, %v", got, err)
	}
	if got, err := op.Placements(ctx, ledger.PlacementQuery{VM: pvm2}); err != nil || got == nil || len(got) != 0 {
		t.Fatalf("Placements of a VM with none: %+v, %v", got, err)
	}
	for _, tc := range []struct {
		q     ledger.PlacementQuery
		words string
	}{
		{ledger.PlacementQuery{}, "exactly one of vm"},
		{ledger.PlacementQuery{VM: pvm1, Project: "p1"}, "exactly one of vm"},
		{ledger.PlacementQuery{VM: "nope"}, "vm"},
		{ledger.PlacementQuery{VM: pvm1, From: pAt, To: pAt.Add(-time.Hour)}, "is after to"},
		{ledger.PlacementQuery{VM: pvm1, Limit: 2}, "narrow the period"},
		{ledger.PlacementQuery{VM: pvm1, Limit: ledger.MaxPlacements + 1}, "limit"},
	} {
		if _, err := op.Placements(ctx, tc.q); !errors.Is(err, ledger.ErrInvalid) || !strings.Contains(err.Error(), tc.words) {
			t.Errorf("Placements(%+v) = %v, want ErrInvalid saying %q", tc.q, err, tc.words)
		}
	}

	// Raw requests: the changed header, a strict body, RFC 3339 times.
	post := func(tok, body string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, url+"/v1/placements", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	body := `{"vm":"` + pvm1 + `","host":"hm1","op":"boot","at":"2026-03-01T12:00:00Z","witness":"nova","ref":"msg-1"}`
	if resp := post(token, body); resp.StatusCode != http.StatusOK || resp.Header.Get(remote.HeaderChanged) != "false" {
		t.Fatalf("POST again: %d, changed %q", resp.StatusCode, resp.Header.Get(remote.HeaderChanged))
	}
	if resp := post(token, strings.Replace(body, `"ref"`, `"color":"red","ref"`, 1)); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("POST with an unknown field: %d", resp.StatusCode)
	}
	if resp := post("wrong", body); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("POST with a wrong token: %d", resp.StatusCode)
	}
	resp, err := http.Get(url + "/v1/placements?vm=" + pvm1 + "&from=yesterday")
	if err != nil {
		t.Fatal(err)
	}
	msg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(msg), "RFC 3339") {
		t.Fatalf("GET with from=yesterday: %d %s", resp.StatusCode, msg)
	}

	// The event stream carries each placement with its record.
	want := []string{"msg-1", "msg-2", "sweep-1"}
	for i := 0; i < len(want); i++ {
		select {
		case ev := <-events:
			if ev.Kind != ledger.KindPlacement || ev.Placement == nil || ev.Placement.Ref != want[i] || ev.Key != pvm1 || ev.TxID != ev.Placement.TxID {
				t.Fatalf("event %d: %+v", i, ev)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no event %d", i)
		}
	}
}
