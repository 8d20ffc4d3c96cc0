package api

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"go.uber.org/zap"

	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/nova"
)

// benchHost is the i-th host of the benchmarks: a quarter each in JP, GB,
// DE and FR, run by CompanyA, CompanyB, both, or CompanyC.
func benchHost(i int) filter.Host {
	countries := []string{"JP", "GB", "DE", "FR"}
	orgs := [][]string{{"CompanyA"}, {"CompanyB"}, {"CompanyA", "CompanyB"}, {"CompanyC"}}
	return filter.Host{
		Name:          fmt.Sprintf("compute-%05d.region-one.example.org", i),
		Country:       countries[i%4],
		Organizations: orgs[(i/4)%4],
	}
}

// BenchmarkWebhook measures the webhook handler through the real mux, with
// a filled cache over the embedded ledger, for VM1 (regulated: JP and GB
// for CompanyA and CompanyB) over n candidate hosts.
func BenchmarkWebhook(b *testing.B) {
	sizes := []int{10, 100, 1000, 10_000}
	e := newEnvLog(b, Config{}, zap.NewNop())
	for i := range sizes[len(sizes)-1] {
		if _, _, err := e.ledger.PutHost(b.Context(), benchHost(i)); err != nil {
			b.Fatal(err)
		}
	}
	e.putRegulation("vm:"+vm1UUID, `{"countries": ["JP", "GB"], "organizations": ["CompanyA", "CompanyB"]}`)
	want := e.height()
	waitFor(b, "the cache to catch up", func() bool { return e.cache.Height() >= want })
	for _, n := range sizes {
		names := make([]string, n)
		for i := range names {
			names[i] = benchHost(i).Name
		}
		body := encode(b, withHosts(novaRequest(b), names...))
		b.Run(fmt.Sprintf("hosts=%d", n), func(b *testing.B) {
			rec := httptest.NewRecorder()
			e.srv.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, nova.Path, bytes.NewReader(body)))
			if rec.Code != http.StatusOK {
				b.Fatalf("status %d: %s", rec.Code, rec.Body)
			}
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				rec := discardRecorder{h: http.Header{}}
				req, _ := http.NewRequest(http.MethodPost, nova.Path, bytes.NewReader(body))
				req.ContentLength = int64(len(body))
				e.srv.ServeHTTP(&rec, req)
				if rec.status != http.StatusOK {
					b.Fatalf("status %d", rec.status)
				}
			}
		})
	}
}

// discardRecorder is a ResponseWriter that keeps only the status.
type discardRecorder struct {
	h      http.Header
	status int
}

func (d *discardRecorder) Header() http.Header         { return d.h }
func (d *discardRecorder) Write(p []byte) (int, error) { return len(p), nil }
func (d *discardRecorder) WriteHeader(code int)        { d.status = code }
