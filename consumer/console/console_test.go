package console_test

import (
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/consumer/console"
)

func serve(t *testing.T, method, path string, header http.Header) *http.Response {
	t.Helper()
	h, err := console.Handler()
	require.NoError(t, err)
	req := httptest.NewRequest(method, path, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result()
}

func TestHandlerServesThePage(t *testing.T) {
	resp := serve(t, http.MethodGet, "/", nil)
	body, _ := io.ReadAll(resp.Body)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "text/html; charset=utf-8", resp.Header.Get("Content-Type"))
	require.Contains(t, string(body), `<script type="module" src="/js/app.js">`)
	require.Contains(t, resp.Header.Get("Content-Security-Policy"), "script-src 'self'")
	require.Equal(t, "nosniff", resp.Header.Get("X-Content-Type-Options"))
	require.Equal(t, "no-cache", resp.Header.Get("Cache-Control"))

	// Revalidation is cheap: the ETag answers 304.
	etag := resp.Header.Get("ETag")
	require.NotEmpty(t, etag)
	again := serve(t, http.MethodGet, "/", http.Header{"If-None-Match": {etag}})
	require.Equal(t, http.StatusNotModified, again.StatusCode)

	for path, ctype := range map[string]string{
		"/js/app.js":   "text/javascript; charset=utf-8",
		"/console.css": "text/css; charset=utf-8",
		"/favicon.svg": "image/svg+xml",
	} {
		r := serve(t, http.MethodGet, path, nil)
		require.Equal(t, http.StatusOK, r.StatusCode, path)
		require.Equal(t, ctype, r.Header.Get("Content-Type"), path)
	}
	require.Equal(t, http.StatusNotFound, serve(t, http.MethodGet, "/nope.js", nil).StatusCode)
	require.Equal(t, http.StatusNotFound, serve(t, http.MethodGet, "/static/index.html", nil).StatusCode)
	require.Equal(t, http.StatusMethodNotAllowed, serve(t, http.MethodPost, "/", nil).StatusCode)
	require.Equal(t, http.StatusOK, serve(t, http.MethodHead, "/", nil).StatusCode)
}

// TestAssetsAreSelfContained: every file the page loads is one of ours (no
// CDN, works offline), and no script or style is inline (the CSP forbids
// them, so they would silently not run).
func TestAssetsAreSelfContained(t *testing.T) {
	root := "static"
	var files []string
	require.NoError(t, filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, p)
		}
		return err
	}))
	require.NotEmpty(t, files)
	known := map[string]bool{}
	for _, f := range files {
		known[strings.TrimPrefix(filepath.ToSlash(f), root)] = true
	}
	checked := 0
	refs := regexp.MustCompile(`(?:src|href)="([^"#]+)"|from "([^"]+)"|import\("([^"]+)"\)`)
	for _, f := range files {
		data, err := os.ReadFile(f)
		require.NoError(t, err)
		text := string(data)
		require.NotRegexp(t, `https?://`, regexp.MustCompile(`http://www\.w3\.org/2000/svg`).ReplaceAllString(text, ""), "%s names another origin", f)
		for _, m := range refs.FindAllStringSubmatch(text, -1) {
			ref := m[1] + m[2] + m[3]
			if strings.HasPrefix(ref, "./") {
				ref = "/" + filepath.ToSlash(filepath.Join(filepath.Dir(strings.TrimPrefix(f, root+string(filepath.Separator))), ref))
			}
			require.True(t, known[ref], "%s refers to %q, which is not an asset", f, ref)
			checked++
		}
		if strings.HasSuffix(f, ".html") {
			require.NotRegexp(t, `<script>|<script [^>]*>[^<]|<style|\son[a-z]+=|style="`, text, "%s has inline script or style", f)
		}
	}
	require.GreaterOrEqual(t, checked, 8, "the page and modules refer to each other")
}
