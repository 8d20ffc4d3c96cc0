// Package ui serves the auditors' page under /ui/: hosts by country on a
// world map, a VM's residency timeline, recent denials by reason. The page is
// plain HTML, CSS and JavaScript embedded in the binary; it reads filterd's
// own REST API (with the read token, when one is configured, which the page
// asks for and keeps in the browser's sessionStorage) and fetches nothing
// from anywhere else: every answer carries Content-Security-Policy
// default-src 'self'.
//
// The assets hold no data, so they are served without a token. index.html
// names the other assets with ?v=<hash of their content>; an asset asked for
// with its current hash may be cached for good, anything else is
// revalidated (ETag). Text assets are sent gzipped to clients that accept it.
package ui

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"net/http"
	"path"
	"strconv"
	"strings"
	"sync"
)

// Prefix is where the page is served: Handler expects request paths under
// it (and redirects Prefix without its trailing slash to it).
const Prefix = "/ui/"

// CSP is the Content-Security-Policy of every answer.
const CSP = "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'"

//go:embed assets/index.html assets/app.js assets/app.css assets/favicon.svg assets/world.svg assets/world.svg.LICENSE.md
var files embed.FS

// Assets lists the names of the assets served (index.html is also served
// at Prefix itself).
func Assets() []string {
	return []string{"index.html", "app.js", "app.css", "favicon.svg", "world.svg", "world.svg.LICENSE.md"}
}

var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".svg":  "image/svg+xml",
	".md":   "text/plain; charset=utf-8",
}

type asset struct {
	body, gz    []byte
	contentType string
	hash        string // hex of the body's SHA-256, first 16 digits
	// versioned: index.html refers to it with ?v=hash, so that such a
	// request may be cached for good.
	versioned bool
}

type handler struct{ assets map[string]*asset }

var (
	once  sync.Once
	built *handler
)

// Handler returns the page's handler: GET (and HEAD) only, anything else
// 405. The assets are prepared (hashed, compressed) on the first request,
// so that they cost filterd's start nothing.
func Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		once.Do(func() { built = build() })
		built.ServeHTTP(w, r)
	})
}

func build() *handler {
	hd := &handler{assets: map[string]*asset{}}
	load := func(name string, body []byte) *asset {
		sum := sha256.Sum256(body)
		a := &asset{body: body, contentType: contentTypes[path.Ext(name)], hash: hex.EncodeToString(sum[:8])}
		var b bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&b, gzip.BestSpeed)
		_, _ = zw.Write(body)
		_ = zw.Close()
		if b.Len() < len(body)*9/10 {
			a.gz = b.Bytes()
		}
		hd.assets[name] = a
		return a
	}
	var index []byte
	for _, name := range Assets() {
		body, err := files.ReadFile("assets/" + name)
		if err != nil {
			panic("ui: an embedded asset is missing: " + name) // the embed pattern names each
		}
		if name == "index.html" {
			index = body
			continue
		}
		load(name, body).versioned = true
	}
	// index.html names each asset as {{v:NAME}}: NAME?v=HASH.
	for name, a := range hd.assets {
		index = bytes.ReplaceAll(index, []byte("{{v:"+name+"}}"), []byte(name+"?v="+a.hash))
	}
	load("index.html", index)
	return hd
}

func (hd *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	hdr.Set("Content-Security-Policy", CSP)
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Referrer-Policy", "no-referrer")
	hdr.Set("X-Frame-Options", "DENY")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hdr.Set("Allow", "GET, HEAD")
		http.Error(w, "method "+r.Method+" not allowed: the auditors' page is read with GET", http.StatusMethodNotAllowed)
		return
	}
	p := r.URL.Path
	if p == strings.TrimSuffix(Prefix, "/") {
		u := Prefix
		if r.URL.RawQuery != "" {
			u += "?" + r.URL.RawQuery
		}
		http.Redirect(w, r, u, http.StatusMovedPermanently)
		return
	}
	name, ok := strings.CutPrefix(p, Prefix)
	if name == "" {
		name = "index.html"
	}
	a := hd.assets[name]
	if !ok || a == nil {
		hdr.Set("Cache-Control", "no-store")
		http.Error(w, "no such page: the auditors' page is at "+Prefix, http.StatusNotFound)
		return
	}
	etag := `"` + a.hash + `"`
	hdr.Set("ETag", etag)
	hdr.Set("Vary", "Accept-Encoding")
	if a.versioned && r.URL.Query().Get("v") == a.hash {
		hdr.Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		hdr.Set("Cache-Control", "no-cache")
	}
	if match(r.Header.Get("If-None-Match"), etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	body := a.body
	if a.gz != nil && acceptsGzip(r.Header.Get("Accept-Encoding")) {
		body = a.gz
		hdr.Set("Content-Encoding", "gzip")
	}
	hdr.Set("Content-Type", a.contentType)
	hdr.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = w.Write(body)
	}
}

// match reports whether an If-None-Match header names etag (or is *).
func match(header, etag string) bool {
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimSpace(t)
		if t == "*" || strings.TrimPrefix(t, "W/") == etag {
			return true
		}
	}
	return false
}

// acceptsGzip reports whether an Accept-Encoding header accepts gzip.
func acceptsGzip(header string) bool {
	for _, part := range strings.Split(header, ",") {
		coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if !strings.EqualFold(strings.TrimSpace(coding), "gzip") {
			continue
		}
		q := strings.ReplaceAll(strings.TrimSpace(params), " ", "")
		return q != "q=0" && q != "q=0.0" && q != "q=0.00" && q != "q=0.000"
	}
	return false
}
