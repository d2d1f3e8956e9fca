// Package console is auditpipe's web console: a search page (CLS query box,
// time histogram, result table, event detail) and the TKE-style audit
// dashboards, as plain HTML, CSS and JavaScript embedded in the binary. There
// is no build step and nothing is fetched from a CDN, so the console works
// offline and `make run` needs nothing but Go. Everything the pages show
// comes from the public search API (GET /api/v1/search, /api/v1/clusters)
// called by the browser, so the console has no data access of its own and
// no privilege the API does not give: the assets are public, the API keeps
// its token (the page asks for it when the API answers 401). See
// docs/decisions/0017-web-console.md.
package console

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

// assets are the console's files; static/index.html is the page.
//
//go:embed static
var assets embed.FS

// contentSecurityPolicy allows only the console's own files: no inline
// script, no third-party origin. A query result is rendered as text, and
// this is the second line of defence should that ever slip.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

type asset struct {
	body  []byte
	ctype string
	etag  string
}

// Handler serves the console under "/": GET / is the page, the other files
// are at their path under static/. Unknown paths are 404 (the console
// routes with the URL fragment, so it needs no catch-all). Responses carry
// an ETag and "Cache-Control: no-cache", so a browser revalidates and picks
// up a new binary's files at once.
func Handler() (http.Handler, error) {
	files := map[string]asset{}
	err := fs.WalkDir(assets, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := assets.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(body)
		files[strings.TrimPrefix(p, "static")] = asset{
			body:  body,
			ctype: contentType(p),
			etag:  `"` + hex.EncodeToString(sum[:8]) + `"`,
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("console assets: %w", err)
	}
	files["/"] = files["/index.html"]
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		a, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		h := w.Header()
		h.Set("Content-Type", a.ctype)
		h.Set("ETag", a.etag)
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(a.body))
	}), nil
}

func contentType(p string) string {
	switch path.Ext(p) {
	case ".html":
		return "text/html; charset=utf-8"
	case ".js":
		return "text/javascript; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	case ".svg":
		return "image/svg+xml"
	}
	return "application/octet-stream"
}
