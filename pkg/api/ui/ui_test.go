package ui

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func get(t *testing.T, method, target string, header ...string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(method, target, nil)
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Set(header[i], header[i+1])
	}
	w := httptest.NewRecorder()
	Handler().ServeHTTP(w, r)
	return w
}

func TestAssetsAreServedWithTheirTypes(t *testing.T) {
	want := map[string]string{
		"/ui/":                     "text/html; charset=utf-8",
		"/ui/index.html":           "text/html; charset=utf-8",
		"/ui/app.js":               "text/javascript; charset=utf-8",
		"/ui/app.css":              "text/css; charset=utf-8",
		"/ui/favicon.svg":          "image/svg+xml",
		"/ui/world.svg":            "image/svg+xml",
		"/ui/world.svg.LICENSE.md": "text/plain; charset=utf-8",
	}
	for path, ct := range want {
		w := get(t, http.MethodGet, path)
		if w.Code != http.StatusOK {
			t.Fatalf("GET %s: %d", path, w.Code)
		}
		h := w.Header()
		if got := h.Get("Content-Type"); got != ct {
			t.Errorf("GET %s: Content-Type %q, want %q", path, got, ct)
		}
		if got := h.Get("Content-Security-Policy"); !strings.HasPrefix(got, "default-src 'self'") {
			t.Errorf("GET %s: Content-Security-Policy %q", path, got)
		}
		if h.Get("X-Content-Type-Options") != "nosniff" || h.Get("ETag") == "" || h.Get("Cache-Control") == "" {
			t.Errorf("GET %s: headers %v", path, h)
		}
		if w.Body.Len() == 0 || h.Get("Content-Length") == "" {
			t.Errorf("GET %s: empty body", path)
		}
	}
	// The map names countries by ISO 3166-1 alpha-2 code.
	svg := get(t, http.MethodGet, "/ui/world.svg").Body.String()
	for _, code := range []string{"jp", "gb", "de", "us", "fr"} {
		if !strings.Contains(svg, `id="`+code+`"`) {
			t.Errorf("world.svg has no country %q", code)
		}
	}
}

func TestIndexNamesVersionedAssets(t *testing.T) {
	index := get(t, http.MethodGet, "/ui/")
	if cc := index.Header().Get("Cache-Control"); cc != "no-cache" {
		t.Errorf("index Cache-Control %q", cc)
	}
	body := index.Body.String()
	if strings.Contains(body, "{{") {
		t.Fatalf("index.html has a placeholder left: %s", body)
	}
	refs := regexp.MustCompile(`(?:href|src|data-src)="([a-zA-Z0-9.]+)\?v=([0-9a-f]{16})"`).FindAllStringSubmatch(body, -1)
	if len(refs) < 4 {
		t.Fatalf("index.html names %d versioned assets: %v", len(refs), refs)
	}
	for _, ref := range refs {
		w := get(t, http.MethodGet, "/ui/"+ref[1]+"?v="+ref[2])
		if w.Code != http.StatusOK {
			t.Fatalf("%s: %d", ref[0], w.Code)
		}
		if cc := w.Header().Get("Cache-Control"); !strings.Contains(cc, "immutable") {
			t.Errorf("%s: Cache-Control %q", ref[0], cc)
		}
		if etag := w.Header().Get("ETag"); etag != `"`+ref[2]+`"` {
			t.Errorf("%s: ETag %s", ref[0], etag)
		}
		// Another version is revalidated, not cached for good.
		if cc := get(t, http.MethodGet, "/ui/"+ref[1]+"?v=0").Header().Get("Cache-Control"); cc != "no-cache" {
			t.Errorf("%s with another version: Cache-Control %q", ref[1], cc)
		}
	}
}

func TestConditionalAndGzip(t *testing.T) {
	w := get(t, http.MethodGet, "/ui/app.js")
	etag := w.Header().Get("ETag")
	if nm := get(t, http.MethodGet, "/ui/app.js", "If-None-Match", etag); nm.Code != http.StatusNotModified || nm.Body.Len() != 0 {
		t.Errorf("If-None-Match: %d, %d bytes", nm.Code, nm.Body.Len())
	}
	plain := get(t, http.MethodGet, "/ui/world.svg")
	z := get(t, http.MethodGet, "/ui/world.svg", "Accept-Encoding", "gzip, deflate, br")
	if z.Header().Get("Content-Encoding") != "gzip" || z.Body.Len() >= plain.Body.Len()/2 {
		t.Fatalf("gzip: %q, %d of %d bytes", z.Header().Get("Content-Encoding"), z.Body.Len(), plain.Body.Len())
	}
	zr, err := gzip.NewReader(z.Body)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(zr)
	if !bytes.Equal(got, plain.Body.Bytes()) {
		t.Error("the gzipped map differs from the plain one")
	}
	if no := get(t, http.MethodGet, "/ui/world.svg", "Accept-Encoding", "gzip;q=0"); no.Header().Get("Content-Encoding") != "" {
		t.Error("gzip;q=0 got gzip")
	}
	head := get(t, http.MethodHead, "/ui/app.css")
	if head.Code != http.StatusOK || head.Body.Len() != 0 || head.Header().Get("Content-Length") == "" {
		t.Errorf("HEAD: %d, %d bytes", head.Code, head.Body.Len())
	}
}

func TestMethodsRedirectAndNotFound(t *testing.T) {
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch, http.MethodOptions} {
		w := get(t, m, "/ui/")
		if w.Code != http.StatusMethodNotAllowed || w.Header().Get("Allow") != "GET, HEAD" {
			t.Errorf("%s /ui/: %d, Allow %q", m, w.Code, w.Header().Get("Allow"))
		}
		if w.Header().Get("Content-Security-Policy") == "" {
			t.Errorf("%s /ui/: no CSP", m)
		}
	}
	w := get(t, http.MethodGet, "/ui?vm=x")
	if w.Code != http.StatusMovedPermanently || w.Header().Get("Location") != "/ui/?vm=x" {
		t.Errorf("GET /ui: %d, Location %q", w.Code, w.Header().Get("Location"))
	}
	for _, p := range []string{"/ui/nope.js", "/ui/../api.go", "/ui/assets/app.js", "/ui/app.js/", "/other"} {
		if w := get(t, http.MethodGet, p); w.Code != http.StatusNotFound {
			t.Errorf("GET %s: %d", p, w.Code)
		}
	}
}

// Nothing in the page comes from elsewhere: no URL of another origin in any
// asset the browser loads (the SVG namespace name is a name, never fetched),
// and data reaches the page as text only.
func TestNoExternalURLAndNoMarkupFromData(t *testing.T) {
	// A host name after "//": an absolute or scheme-relative URL.
	host := regexp.MustCompile(`^[a-zA-Z0-9-]+(?:\.[a-zA-Z0-9-]+)*\.[a-zA-Z]{2,}`)
	external := func(body string) string {
		for i := 0; ; {
			j := strings.Index(body[i:], "//")
			if j < 0 {
				return ""
			}
			i += j + 2
			if m := host.FindString(body[i:min(len(body), i+256)]); m != "" {
				return "//" + m
			}
		}
	}
	for in, want := range map[string]bool{`src="https://cdn.example.com/a.js"`: true, `url(//fonts.example.org/f)`: true,
		`// a comment`: false, `fetch('../v1/hosts')`: false, `a//b`: false} {
		if got := external(in) != ""; got != want {
			t.Fatalf("external(%q) = %v", in, got)
		}
	}
	for _, name := range Assets() {
		if strings.HasSuffix(name, ".LICENSE.md") {
			continue // a text shown on request, never loaded by the page
		}
		body := get(t, http.MethodGet, "/ui/"+name).Body.String()
		body = strings.ReplaceAll(body, `xmlns="http://www.w3.org/2000/svg"`, "")
		if m := external(body); m != "" {
			t.Errorf("%s holds an external URL: %q", name, m)
		}
		for _, bad := range []string{"@import", "url(", "<iframe", "<object", "<embed"} {
			if strings.Contains(body, bad) {
				t.Errorf("%s holds %q", name, bad)
			}
		}
	}
	js := get(t, http.MethodGet, "/ui/app.js").Body.String()
	for _, bad := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function", "setAttribute('style'"} {
		if strings.Contains(js, bad) {
			t.Errorf("app.js uses %s", bad)
		}
	}
	index := get(t, http.MethodGet, "/ui/").Body.String()
	if strings.Contains(index, "style=") || regexp.MustCompile(`<script>|<script [^>]*>[^<]`).MatchString(index) || strings.Contains(index, " on") && regexp.MustCompile(`\son[a-z]+=`).MatchString(index) {
		t.Error("index.html has inline script, style or event handlers, which the CSP refuses")
	}
}
