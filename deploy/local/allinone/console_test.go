package allinone

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode"

	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"
	auditinternal "k8s.io/apiserver/pkg/apis/audit"

	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	"github.com/auditpipe/auditpipe/consumer/console"
	"github.com/auditpipe/auditpipe/consumer/search"
	"github.com/auditpipe/auditpipe/consumer/sink/local"
	"github.com/auditpipe/auditpipe/internal/audittest"
)

// The browser test drives the web console in a real headless Chromium over
// a running all-in-one pipeline that holds the public fixture events, and
// checks what the pages show against counts computed here from the fixture
// files (and, for each dashboard chart, against the search API).

// browserEnv names the Chromium binary; otherwise chromium,
// chromium-browser and google-chrome are looked up on PATH.
const browserEnv = "AUDITPIPE_CHROMIUM"

// findBrowser returns the browser to drive, or fails the test: CI installs
// Debian's chromium (.ci/run). AUDITPIPE_SKIP_BROWSER=1 turns the failure
// into a skip for machines that cannot have one.
func findBrowser(t *testing.T) string {
	t.Helper()
	if p := os.Getenv(browserEnv); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	msg := "no Chromium for the console's browser tests: install Debian's chromium (apt-get install -y chromium, as .ci/run does) or set " + browserEnv
	if os.Getenv("AUDITPIPE_SKIP_BROWSER") == "1" {
		t.Skip(msg + "; skipped because AUDITPIPE_SKIP_BROWSER=1")
	}
	t.Fatal(msg + " (AUDITPIPE_SKIP_BROWSER=1 skips these tests)")
	return ""
}

// artifactDir is where screenshots go: $AUDITPIPE_ARTIFACTS when set (kept),
// else the test's temporary directory.
func artifactDir(t *testing.T) string {
	dir := os.Getenv("AUDITPIPE_ARTIFACTS")
	if dir == "" {
		return t.TempDir()
	}
	dir = filepath.Join(dir, "console")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	return dir
}

// stored is what the test knows of a stored fixture event, from the file.
type stored struct {
	cluster, auditID, stage      string
	ms                           int64
	verb, user, resource, subres string
	apiGroup, namespace, name    string
	code                         int32 // 0: no responseStatus
	request                      []byte
}

const (
	clusterProd    = "prod-eu-1"
	clusterDev     = "dev-us-1"
	clusterStaging = "staging-1" // in the registry, no events
)

// clusterOf spreads the fixtures over two clusters, keeping a request's
// stages together.
func clusterOf(auditID string) string {
	h := fnv.New32a()
	_, _ = h.Write([]byte(auditID))
	if h.Sum32()%3 == 2 {
		return clusterDev
	}
	return clusterProd
}

// loadConsoleFixtures re-times the fixtures (2017-2020) into [first, last]
// in their original order, one distinct (auditID, stage) per step and whole
// seconds, posts them through the apiserver's webhook backend to two
// clusters, and returns what the e2e policy keeps of them.
func loadConsoleFixtures(t *testing.T, p *Pipeline, first, last time.Time) []stored {
	evs := audittest.Events(audittest.Load(t, audittest.Dir(t)))
	audittest.SortByTime(evs)
	type key struct{ id, stage string }
	var order []key
	seen := map[key]bool{}
	for _, ev := range evs {
		k := key{string(ev.AuditID), string(ev.Stage)}
		if !seen[k] {
			seen[k] = true
			order = append(order, k)
		}
	}
	step := last.Sub(first) / time.Duration(len(order))
	step = step.Truncate(time.Second)
	at := map[key]time.Time{}
	for i, k := range order {
		at[k] = first.Add(time.Duration(i) * step)
	}
	byCluster := map[string][]*auditinternal.Event{}
	var want []stored
	kept := map[key]bool{}
	add := func(ev *auditinternal.Event) {
		k := key{string(ev.AuditID), string(ev.Stage)}
		c := clusterOf(k.id)
		byCluster[c] = append(byCluster[c], ev)
		if _, keep := expectFor(ev); !keep || kept[k] {
			return
		}
		kept[k] = true
		s := stored{cluster: c, auditID: k.id, stage: k.stage, ms: ev.StageTimestamp.UnixMilli(), verb: ev.Verb, user: ev.User.Username}
		if ev.ObjectRef != nil {
			s.resource, s.subres, s.apiGroup = ev.ObjectRef.Resource, ev.ObjectRef.Subresource, ev.ObjectRef.APIGroup
			s.namespace, s.name = ev.ObjectRef.Namespace, ev.ObjectRef.Name
		}
		if ev.ResponseStatus != nil {
			s.code = ev.ResponseStatus.Code
		}
		if ev.RequestObject != nil {
			s.request = ev.RequestObject.Raw
		}
		want = append(want, s)
	}
	// Two fixtures reuse one auditID and stage for different requests
	// (falco's anonymous and some-user namespace creations). Which of them
	// the store keeps depends on the order the webhook batches arrive in, so
	// only the first is sent: the oracle must know what is stored.
	firstSeen := map[key]*auditinternal.Event{}
	for _, ev := range evs {
		k := key{string(ev.AuditID), string(ev.Stage)}
		ev.StageTimestamp.Time = at[k]
		ev.RequestReceivedTimestamp.Time = at[k]
		if f, ok := firstSeen[k]; ok && !reflect.DeepEqual(f, ev) {
			t.Logf("not sent: a second event under auditID %s stage %s (user %q, first %q)", k.id, k.stage, ev.User.Username, f.User.Username)
			continue
		}
		firstSeen[k] = ev
		add(ev)
	}
	// The fixtures only read nodes: add the node operations the Node
	// dashboard is about, as an apiserver would record them.
	for i, ev := range nodeOperations(first) {
		ev.StageTimestamp.Time = first.Add(time.Duration(i)*37*time.Minute + 17*time.Second)
		ev.RequestReceivedTimestamp.Time = ev.StageTimestamp.Time
		add(ev)
	}
	for c, evs := range byCluster {
		b := audittest.WebhookBackend(t, p.WebhookURL()+"/v1/audit/"+c, audittest.ModeBatch)
		require.True(t, b.ProcessEvents(evs...))
		b.Shutdown()
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var res search.SearchEventsResponse
		apiGet(t, p.APIURL(), url.Values{"q": {"*"}, "limit": {"1"}}, &res)
		if res.Total >= len(want) {
			require.Equal(t, len(want), res.Total, "stored events")
			break
		}
		require.True(t, time.Now().Before(deadline), "stored %d of %d events", res.Total, len(want))
		time.Sleep(200 * time.Millisecond)
	}
	return want
}

// Who does what to nodes in nodeOperations.
const (
	nodeAdmin     = "alice@example.com"
	nodeDrainer   = "bob@example.com"
	nodeScaler    = "system:serviceaccount:kube-system:cluster-autoscaler"
	cordonedNode  = "node-a"
	evictionCount = 3
	deniedUser    = "mallory@example.com"
)

// nodeOperations are node changes as kube-apiserver records them at level
// RequestResponse: a cordon and an uncordon of node-a (patches of
// spec.unschedulable), the drain's pod evictions, a node deleted by the
// autoscaler and one registered by its kubelet.
func nodeOperations(at time.Time) []*auditinternal.Event {
	ev := func(id, user, verb, resource, sub, ns, name string, code int32, body string) *auditinternal.Event {
		e := &auditinternal.Event{
			Level: auditinternal.LevelRequestResponse, AuditID: types.UID(id), Stage: auditinternal.StageResponseComplete,
			RequestURI: "/api/v1/" + resource + "/" + name, Verb: verb, User: authnv1.UserInfo{Username: user},
			SourceIPs: []string{"10.0.0.7"}, UserAgent: "kubectl/v1.31.0",
			ObjectRef:      &auditinternal.ObjectReference{Resource: resource, Subresource: sub, Namespace: ns, Name: name, APIVersion: "v1"},
			ResponseStatus: &metav1.Status{Code: code},
		}
		if body != "" {
			e.RequestObject = &k8sruntime.Unknown{Raw: []byte(body), ContentType: k8sruntime.ContentTypeJSON}
		}
		return e
	}
	out := []*auditinternal.Event{
		ev("0a1b2c3d-0000-4000-8000-000000000001", nodeAdmin, "patch", "nodes", "", "", cordonedNode, 200, `{"spec":{"unschedulable":true}}`),
		ev("0a1b2c3d-0000-4000-8000-000000000002", nodeAdmin, "patch", "nodes", "", "", cordonedNode, 200, `{"spec":{"unschedulable":null}}`),
		ev("0a1b2c3d-0000-4000-8000-000000000003", nodeScaler, "delete", "nodes", "", "", "node-b", 200, ""),
		ev("0a1b2c3d-0000-4000-8000-000000000004", "system:node:node-c", "create", "nodes", "", "", "node-c", 201, `{"kind":"Node","metadata":{"name":"node-c"}}`),
	}
	// Refused requests: the fixtures' 401/403 are reads, which the e2e
	// policy drops.
	out = append(out,
		ev("0a1b2c3d-0000-4000-8000-000000000021", deniedUser, "delete", "secrets", "", "kube-system", "bootstrap-token-abcdef", 403, ""),
		ev("0a1b2c3d-0000-4000-8000-000000000022", deniedUser, "create", "pods", "exec", "default", "web-0", 403, ""),
		ev("0a1b2c3d-0000-4000-8000-000000000023", "system:anonymous", "create", "nodes", "", "", "node-x", 401, ""))
	for i := range evictionCount {
		name := fmt.Sprintf("web-%d", i)
		out = append(out, ev(fmt.Sprintf("0a1b2c3d-0000-4000-8000-00000000001%d", i), nodeDrainer, "create", "pods", "eviction", "default", name, 201,
			`{"kind":"Eviction","apiVersion":"policy/v1","metadata":{"name":"`+name+`","namespace":"default"}}`))
	}
	return out
}

func apiGet(t *testing.T, base string, q url.Values, out any) {
	t.Helper()
	resp, err := http.Get(base + search.SearchPath + "?" + q.Encode())
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s: %s", q.Encode(), body)
	require.NoError(t, json.Unmarshal(body, out))
}

// tokens splits like the store's text match: runs of letters and digits,
// lower-cased.
func tokens(s string) []string {
	return strings.FieldsFunc(strings.ToLower(s), func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) })
}

// phrase reports whether value's tokens contain want's tokens in a row: the
// meaning of user.username:"x" and objectRef.name:"x".
func phrase(value, want string) bool {
	v, w := tokens(value), tokens(want)
	for i := 0; i+len(w) <= len(v); i++ {
		if strings.Join(v[i:i+len(w)], " ") == strings.Join(w, " ") {
			return true
		}
	}
	return false
}

func count(evs []stored, match func(stored) bool) int {
	n := 0
	for _, e := range evs {
		if match(e) {
			n++
		}
	}
	return n
}

// pageSnapshot is what a page shows, read from the DOM.
type chartSnapshot struct {
	ID    string     `json:"id"`
	Kind  string     `json:"kind"`
	Q     string     `json:"q"`
	State string     `json:"state"`
	Total string     `json:"total"`
	Error string     `json:"error"`
	Marks [][]string `json:"marks"`
	Rows  [][]string `json:"rows"`
	IDs   []string   `json:"ids"`
}

const readCharts = `[...document.querySelectorAll('[data-chart]')].map(c => ({
  id: c.dataset.chart, kind: c.dataset.kind, q: c.dataset.q, state: c.dataset.state, total: c.dataset.total || "",
  error: (c.querySelector('.qerror') || {}).textContent || "",
  marks: [...c.querySelectorAll('[data-key]')].map(m => [m.dataset.key, m.dataset.value]),
  rows: [...c.querySelectorAll('tbody tr')].map(tr => [...tr.children].map(td => { const v = td.querySelector('[data-value]'); return v ? v.dataset.value : td.textContent; })),
  ids: [...c.querySelectorAll('tbody tr[data-audit-id]')].map(tr => tr.dataset.auditId),
}))`

func TestConsoleInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test: not in -short")
	}
	chromium := findBrowser(t)
	artifacts := artifactDir(t)
	t.Logf("console screenshots in %s", artifacts)

	cfg := testConfig(t)
	fleetFile := filepath.Join(cfg.DataDir, "fleet.yaml")
	require.NoError(t, os.WriteFile(fleetFile, []byte(`clusters:
  `+clusterProd+`:
    displayName: Production EU 1
    region: eu-frankfurt
  `+clusterDev+`:
    displayName: Development US 1
  `+clusterStaging+`:
    displayName: Staging
`), 0o644))
	cfg.Fleet = fleetFile
	p := startPipeline(t, cfg)

	now := time.Now().UTC().Truncate(time.Minute)
	from, to := now.Add(-24*time.Hour), now.Add(time.Minute)
	want := loadConsoleFixtures(t, p, from.Add(time.Hour), now.Add(-time.Hour))
	require.Greater(t, len(want), 100)
	inRange := func(e stored) bool { return e.ms >= from.UnixMilli() && e.ms < to.UnixMilli() }

	br := startBrowser(t, chromium, 4*time.Minute)
	bctx := br.ctx

	seq := 0
	// open loads a console URL and waits until its page has rendered.
	open := func(t *testing.T, base, fragment string) {
		t.Helper()
		require.NoError(t, chromedp.Do(bctx, chromedp.Navigate(base+"/"+fragment)))
		seq = 0
		waitRender(t, bctx, &seq)
	}
	shot := func(t *testing.T, name string) {
		t.Helper()
		png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
		require.NoError(t, err)
		path := filepath.Join(artifacts, name+".png")
		require.NoError(t, os.WriteFile(path, png, 0o644))
		t.Logf("screenshot %s", path)
	}
	rangeParams := "from=" + url.QueryEscape(from.Format(time.RFC3339)) + "&to=" + url.QueryEscape(to.Format(time.RFC3339))
	base := p.APIURL()

	do := func(t *testing.T, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		require.NoError(t, chromedp.Do(bctx, steps...))
	}
	attr := func(t *testing.T, sel, name string) string {
		t.Helper()
		return evalJS[string](t, bctx, fmt.Sprintf(`(() => { const e = document.querySelector(%q); return e ? (e.getAttribute(%q) || "") : "(no element)"; })()`, sel, name))
	}
	rowIDs := func(t *testing.T) []string {
		t.Helper()
		return evalJS[[]string](t, bctx, `[...document.querySelectorAll('#results tbody tr')].map(tr => tr.dataset.auditId)`)
	}

	t.Run("search", func(t *testing.T) {
		open(t, base, "#/search?"+rangeParams)
		// Type a query and press Enter.
		const q = "verb:create OR verb:delete"
		evalJS[bool](t, bctx, `(() => { const q = document.getElementById("q"); q.value = ""; q.focus(); return true; })()`)
		do(t, chromedp.SendKeys(chromedp.ID("q"), q+"\r"))
		waitRender(t, bctx, &seq)
		match := func(e stored) bool { return inRange(e) && (e.verb == "create" || e.verb == "delete") }
		wantN := count(want, match)
		require.Greater(t, wantN, 50, "the query should need paging")

		hash := evalJS[string](t, bctx, `location.hash`)
		require.Contains(t, hash, "q="+url.QueryEscape(q), "the query is in the URL")
		require.Equal(t, "ok", attr(t, "#results", "data-state"))
		require.Equal(t, strconv.Itoa(wantN), attr(t, "#results", "data-total"), "results total")

		// The histogram: one bar per bucket, counts from the fixtures.
		checkHistogram(t, bctx, want, match)

		// The table: the newest 50 first, in the store's order.
		var sel []stored
		for _, e := range want {
			if match(e) {
				sel = append(sel, e)
			}
		}
		sort.Slice(sel, func(i, j int) bool {
			a, b := sel[i], sel[j]
			if a.ms != b.ms {
				return a.ms > b.ms
			}
			if a.cluster != b.cluster {
				return a.cluster < b.cluster
			}
			if a.auditID != b.auditID {
				return a.auditID < b.auditID
			}
			return a.stage < b.stage
		})
		ids := rowIDs(t)
		firstRow := evalJS[[]string](t, bctx, `[...document.querySelector('#results tbody tr').children].map(td => td.textContent)`)
		require.Len(t, ids, 50)
		for i := range ids {
			require.Equal(t, sel[i].auditID, ids[i], "row %d", i)
		}
		e := sel[0]
		code := ""
		if e.code != 0 {
			code = strconv.Itoa(int(e.code))
		}
		require.Equal(t, time.UnixMilli(e.ms).UTC().Format("2006-01-02 15:04:05.000"), firstRow[0])
		require.Equal(t, []string{e.cluster, e.user, e.verb}, firstRow[1:4])
		require.Equal(t, code, firstRow[6])
		shot(t, "search")

		// Next page: rows 51..100 by the API's cursor, and back.
		do(t, chromedp.Click(chromedp.ID("nextPage")))
		waitAttr(t, bctx, "#results", "data-page", "2")
		ids = rowIDs(t)
		require.Len(t, ids, min(50, wantN-50))
		for i := range ids {
			require.Equal(t, sel[50+i].auditID, ids[i], "page 2 row %d", i)
		}
		do(t, chromedp.Click(chromedp.ID("prevPage")))
		waitAttr(t, bctx, "#results", "data-page", "1")

		// Open the newest event: the whole event as JSON.
		do(t, chromedp.Click(chromedp.CSS("#results tbody tr")), chromedp.WaitVisible(chromedp.ID("eventJSON")))
		text := evalJS[string](t, bctx, `document.getElementById('eventJSON').textContent`)
		var ev map[string]any
		require.NoError(t, json.Unmarshal([]byte(text), &ev), "the detail panel shows JSON")
		require.Equal(t, e.auditID, ev["auditID"])
		require.Equal(t, e.verb, ev["verb"])
		require.Equal(t, e.cluster, ev["auditpipe"].(map[string]any)["cluster"])
		shot(t, "search-detail")

		// "search" next to the user: the query narrows to that user.
		do(t, chromedp.Click(chromedp.CSS(`#detail tr[data-field="user.username"] a.search-value`)))
		waitRender(t, bctx, &seq)
		newQ := evalJS[string](t, bctx, `document.getElementById('q').value`)
		require.Equal(t, "("+q+`) AND user.username:"`+e.user+`"`, newQ)
		require.Equal(t, strconv.Itoa(count(want, func(s stored) bool { return match(s) && phrase(s.user, e.user) })), attr(t, "#results", "data-total"))

		// The same for a number: the response code of the newest of those.
		do(t, chromedp.Click(chromedp.CSS("#results tbody tr")), chromedp.WaitVisible(chromedp.ID("eventJSON")))
		ev = map[string]any{}
		require.NoError(t, json.Unmarshal([]byte(evalJS[string](t, bctx, `document.getElementById('eventJSON').textContent`)), &ev))
		code = fmt.Sprint(ev["responseStatus"].(map[string]any)["code"])
		do(t, chromedp.Click(chromedp.CSS(`#detail tr[data-field="responseStatus.code"] a.search-value`)))
		waitRender(t, bctx, &seq)
		require.Equal(t, newQ+" AND responseStatus.code="+code, evalJS[string](t, bctx, `document.getElementById('q').value`))
		require.Equal(t, strconv.Itoa(count(want, func(s stored) bool {
			return match(s) && phrase(s.user, e.user) && strconv.Itoa(int(s.code)) == code
		})), attr(t, "#results", "data-total"))
	})

	t.Run("histogram drag narrows the range", func(t *testing.T) {
		open(t, base, "#/search?q=*&"+rangeParams)
		box := evalJS[[]float64](t, bctx, `(() => { const r = document.querySelector('#histogram svg').getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; })()`)
		y := box[1] + box[3]/2
		do(t,
			mouse(chromedp.MousePressed, box[0]+box[2]*0.30, y),
			mouse(chromedp.MouseMoved, box[0]+box[2]*0.45, y),
			mouse(chromedp.MouseMoved, box[0]+box[2]*0.60, y),
			mouse(chromedp.MouseReleased, box[0]+box[2]*0.60, y))
		waitRender(t, bctx, &seq)
		hash := evalJS[string](t, bctx, `location.hash`)
		u, err := url.Parse("/?" + strings.SplitN(hash, "?", 2)[1])
		require.NoError(t, err)
		f, err := time.Parse(time.RFC3339, u.Query().Get("from"))
		require.NoError(t, err)
		tt, err := time.Parse(time.RFC3339, u.Query().Get("to"))
		require.NoError(t, err)
		require.True(t, f.After(from) && tt.Before(to) && f.Before(tt), "dragged range %s..%s inside %s..%s", f, tt, from, to)
		wantN := count(want, func(e stored) bool { return e.ms >= f.UnixMilli() && e.ms < tt.UnixMilli() })
		require.Greater(t, wantN, 0)
		require.Equal(t, strconv.Itoa(wantN), attr(t, "#results", "data-total"))
		checkHistogram(t, bctx, want, func(e stored) bool { return true })
		shot(t, "search-zoomed")
	})

	t.Run("all time", func(t *testing.T) {
		open(t, base, "#/search?q=*&from=all")
		first, last := want[0].ms, want[0].ms
		for _, e := range want {
			first, last = min(first, e.ms), max(last, e.ms)
		}
		require.Equal(t, "all", evalJS[string](t, bctx, `document.getElementById('range').value`))
		require.Equal(t, strconv.Itoa(len(want)), attr(t, "#results", "data-total"))
		require.Equal(t, strconv.FormatInt(first, 10), attr(t, "#histogram", "data-from"), "all time starts at the first event")
		require.Equal(t, strconv.FormatInt(last+1, 10), attr(t, "#histogram", "data-to"), "and ends after the last")
		checkHistogram(t, bctx, want, func(stored) bool { return true })
	})

	t.Run("analysis and errors in place", func(t *testing.T) {
		q := `* | SELECT verb, count(1) AS n GROUP BY verb ORDER BY n DESC, verb`
		open(t, base, "#/search?"+rangeParams+"&q="+url.QueryEscape(q))
		rows := evalJS[[][]string](t, bctx, `[...document.querySelectorAll('#results tbody tr')].map(tr => [...tr.children].map(td => td.textContent))`)
		byVerb := map[string]int{}
		for _, e := range want {
			if inRange(e) {
				byVerb[e.verb]++
			}
		}
		require.Len(t, rows, len(byVerb))
		for _, r := range rows {
			require.Equal(t, strconv.Itoa(byVerb[r[0]]), r[1], "verb %s", r[0])
		}
		shot(t, "search-analysis")

		open(t, base, "#/search?"+rangeParams+"&q="+url.QueryEscape("verb:delete AND (user.username:bob"))
		require.Equal(t, "error", attr(t, "#results", "data-state"))
		msg := evalJS[string](t, bctx, `document.querySelector('#results .qerror').textContent`)
		require.Contains(t, msg, "^", "the error points at the position")
		shot(t, "search-error")
	})

	t.Run("cluster selector", func(t *testing.T) {
		open(t, base, "#/search?"+rangeParams)
		_, err := chromedp.Run(bctx, chromedp.Poll[string](`document.getElementById('cluster').dataset.loaded`, chromedp.WithPollingTimeout(30*time.Second)))
		require.NoError(t, err)
		options := evalJS[[]string](t, bctx, `[...document.querySelectorAll('#cluster option')].map(o => o.value + '=' + o.textContent)`)
		require.Equal(t, []string{"=All clusters", clusterDev + "=" + clusterDev + " — Development US 1",
			clusterProd + "=" + clusterProd + " — Production EU 1", clusterStaging + "=" + clusterStaging + " — Staging (no events)"}, options)
		evalJS[bool](t, bctx, `(() => { const s = document.getElementById('cluster'); s.value = `+strconv.Quote(clusterDev)+`; s.dispatchEvent(new Event('change')); return true; })()`)
		waitRender(t, bctx, &seq)
		require.Equal(t, strconv.Itoa(count(want, func(e stored) bool { return inRange(e) && e.cluster == clusterDev })), attr(t, "#results", "data-total"))
		require.Contains(t, evalJS[string](t, bctx, `location.hash`), "cluster="+clusterDev)
	})

	// Every dashboard: each chart rendered without error, its numbers equal
	// to the search API's answer to the chart's query, and some of them to
	// counts from the fixtures.
	topUser := mostCommon(want, func(e stored) string { return e.user })
	obj := mostCommon(want, func(e stored) string {
		if e.name == "" || e.verb == "get" || e.verb == "list" || e.verb == "watch" {
			return ""
		}
		return e.resource + "/" + e.namespace + "/" + e.name
	})
	objParts := strings.SplitN(obj, "/", 3)
	dashboards := []struct {
		name, params string
		allTime      bool
		check        func(t *testing.T, charts map[string]chartSnapshot)
	}{
		{"overview", "", false, func(t *testing.T, charts map[string]chartSnapshot) {
			users := map[string]int{}
			for _, e := range want {
				if inRange(e) {
					users[e.user]++
				}
			}
			for _, m := range charts["users"].Marks {
				require.Equal(t, strconv.Itoa(users[m[0]]), m[1], "top users: %s", m[0])
			}
			require.Equal(t, min(10, len(users)), len(charts["users"].Marks))
			require.Equal(t, len(want), sumMarks(t, charts["verbs"]), "verbs over time count every event")
			secrets := map[string]int{}
			for _, e := range want {
				if e.resource == "secrets" {
					secrets[e.user]++
				}
			}
			for _, m := range charts["secrets"].Marks {
				require.Equal(t, strconv.Itoa(secrets[m[0]]), m[1], "secret access: %s", m[0])
			}
			require.NotEmpty(t, charts["secrets"].Marks)
			denied := map[string]string{}
			for _, e := range want {
				if inRange(e) && (e.code == 401 || e.code == 403) {
					n, _ := strconv.Atoi(denied[e.user])
					denied[e.user] = strconv.Itoa(n + 1)
				}
			}
			require.Equal(t, map[string]string{deniedUser: "2", "system:anonymous": "1"}, denied, "the oracle")
			got := map[string]string{}
			for _, m := range charts["denied"].Marks {
				got[m[0]] = m[1]
			}
			require.Equal(t, denied, got, "denied requests")
		}},
		{"nodes", "", false, func(t *testing.T, charts map[string]chartSnapshot) {
			isNodeChange := func(e stored) bool {
				return inRange(e) && e.resource == "nodes" && e.verb != "get" && e.verb != "list" && e.verb != "watch"
			}
			who := map[string]string{}
			for _, e := range want {
				if isNodeChange(e) {
					n, _ := strconv.Atoi(who[e.user])
					who[e.user] = strconv.Itoa(n + 1)
				}
			}
			require.Equal(t, map[string]string{nodeAdmin: "2", nodeScaler: "1", "system:node:node-c": "1", "system:anonymous": "1"}, who, "the oracle")
			got := map[string]string{}
			for _, m := range charts["node-users"].Marks {
				got[m[0]] = m[1]
			}
			require.Equal(t, who, got, "who changed nodes")
			require.Equal(t, [][]string{{nodeAdmin, cordonedNode, "2"}}, charts["cordon"].Rows, "cordon/uncordon")
			require.Equal(t, [][]string{{nodeDrainer, strconv.Itoa(evictionCount)}}, charts["drain"].Marks, "evictions")
			require.Equal(t, strconv.Itoa(count(want, isNodeChange)), charts["node-events"].Total)
		}},
		{"objects", "resource=" + url.QueryEscape(objParts[0]) + "&namespace=" + url.QueryEscape(objParts[1]) + "&name=" + url.QueryEscape(objParts[2]), false,
			func(t *testing.T, charts map[string]chartSnapshot) {
				n := count(want, func(e stored) bool {
					return inRange(e) && e.resource == objParts[0] && e.namespace == objParts[1] && phrase(e.name, objParts[2]) &&
						e.verb != "get" && e.verb != "list" && e.verb != "watch"
				})
				require.Greater(t, n, 1)
				require.Equal(t, strconv.Itoa(n), charts["obj-timeline"].Total)
				require.Len(t, charts["obj-timeline"].IDs, min(n, 200))
			}},
		{"users", "user=" + url.QueryEscape(topUser), false, func(t *testing.T, charts map[string]chartSnapshot) {
			per := map[string]int{}
			for _, e := range want {
				if inRange(e) && phrase(e.user, topUser) {
					per[e.cluster]++
				}
			}
			got := map[string]int{}
			for _, m := range charts["user-clusters"].Marks {
				got[m[0]], _ = strconv.Atoi(m[1])
			}
			require.Equal(t, per, got, "events of %s per cluster", topUser)
			require.Len(t, got, 2, "the user is active in both clusters")
		}},
		{"overview", "", true, func(t *testing.T, charts map[string]chartSnapshot) {
			require.Equal(t, len(want), sumMarks(t, charts["verbs"]), "all time: verbs over time count every event")
		}},
	}
	for _, d := range dashboards {
		t.Run("dashboard "+d.name+map[bool]string{true: " all time"}[d.allTime], func(t *testing.T) {
			rng := rangeParams
			if d.allTime {
				rng = "from=all"
			}
			open(t, base, "#/dash/"+d.name+"?"+rng+"&"+d.params)
			snaps := evalJS[[]chartSnapshot](t, bctx, readCharts)
			dFrom, err := strconv.ParseInt(attr(t, "#dashboard", "data-from"), 10, 64)
			require.NoError(t, err)
			dTo, err := strconv.ParseInt(attr(t, "#dashboard", "data-to"), 10, 64)
			require.NoError(t, err)
			if !d.allTime {
				require.Equal(t, []int64{from.UnixMilli(), to.UnixMilli()}, []int64{dFrom, dTo}, "the dashboard's range is the URL's")
			}
			renderMs := attr(t, "#dashboard", "data-render-ms")
			require.NotEmpty(t, snaps)
			t.Logf("dashboard %s: %d charts rendered in %s ms (browser clock, %d fixture events)", d.name, len(snaps), renderMs, len(want))
			charts := map[string]chartSnapshot{}
			for _, c := range snaps {
				require.Equal(t, "ok", c.State, "chart %s: %s", c.ID, c.Error)
				checkChartAgainstAPI(t, base, c, time.UnixMilli(dFrom), time.UnixMilli(dTo))
				charts[c.ID] = c
			}
			if d.check != nil {
				d.check(t, charts)
			}
			shot(t, "dashboard-"+d.name+map[bool]string{true: "-all-time"}[d.allTime])
		})
	}

	t.Run("login prompt beyond loopback", func(t *testing.T) {
		// The API behind the token check the pipeline uses beyond loopback
		// (search.RequireToken), the console in front as the pipeline
		// mounts it.
		upstream, err := url.Parse(base)
		require.NoError(t, err)
		h, err := console.Handler()
		require.NoError(t, err)
		mux := http.NewServeMux()
		mux.Handle("/api/", search.RequireToken("s3cret", httputil.NewSingleHostReverseProxy(upstream)))
		mux.Handle("/", h)
		srv := httptest.NewServer(mux)
		defer srv.Close()
		do(t, chromedp.Navigate(srv.URL+"/#/search?q=*&"+rangeParams), chromedp.WaitVisible(chromedp.ID("login")))
		shot(t, "login")
		do(t, chromedp.SendKeys(chromedp.ID("token"), "wrong\r"))
		do(t, chromedp.WaitVisible(chromedp.ID("loginError")))
		do(t, chromedp.SendKeys(chromedp.ID("token"), "s3cret\r"))
		seq = 0
		waitRender(t, bctx, &seq)
		total := attr(t, "#results", "data-total")
		stored := evalJS[string](t, bctx, `sessionStorage.getItem('auditpipe.token')`)
		require.Equal(t, strconv.Itoa(count(want, inRange)), total)
		require.Equal(t, "s3cret", stored)
	})

	require.Empty(t, br.errors(), "JavaScript errors in the console")
}

// browser is one headless Chromium tab, and the JavaScript errors (uncaught
// exceptions, console.error) that its pages raised.
type browser struct {
	ctx    context.Context
	mu     sync.Mutex
	jsErrs []string
}

// startBrowser starts chromium with one tab for the whole test (the
// machine is small: one browser, reused by every subtest).
func startBrowser(t *testing.T, chromium string, timeout time.Duration) *browser {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium), chromedp.WindowSize(1400, 1000),
		chromedp.Flag("no-sandbox", os.Geteuid() == 0), chromedp.DisableGPU)
	actx, acancel := chromedp.NewExecAllocator(ctx, opts...)
	t.Cleanup(acancel)
	bctx, bcancel := chromedp.NewContext(actx)
	t.Cleanup(bcancel)
	b := &browser{ctx: bctx}
	require.NoError(t, chromedp.Listen(bctx, func(ev any) {
		var msg string
		switch ev := ev.(type) {
		case *runtime.EventExceptionThrown:
			msg = exceptionText(ev.ExceptionDetails)
		case *runtime.EventConsoleAPICalled:
			msg = consoleText(ev.Type, ev.Args)
		}
		if msg != "" {
			b.mu.Lock()
			b.jsErrs = append(b.jsErrs, msg)
			b.mu.Unlock()
		}
	}), "start %s", chromium)
	// The error listener must work, or "no JavaScript errors" means nothing.
	require.NoError(t, chromedp.Do(bctx, chromedp.Navigate("about:blank")))
	evalJS[bool](t, bctx, `(console.error("probe"), setTimeout(() => { throw new Error("thrown probe"); }), true)`)
	deadline := time.Now().Add(10 * time.Second)
	for len(b.errors()) < 2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	got := b.errors()
	require.Len(t, got, 2, "the listener sees console.error and uncaught exceptions")
	require.Contains(t, got[0], "probe")
	require.Contains(t, got[1], "thrown probe")
	b.mu.Lock()
	b.jsErrs = nil
	b.mu.Unlock()
	return b
}

func (b *browser) errors() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.jsErrs...)
}

// mouse sends one mouse event with the left button (held while moving).
func mouse(typ input.DispatchMouseEventType, x, y float64) chromedp.Action[chromedp.Void] {
	return chromedp.MouseEvent(typ, x, y, chromedp.ButtonLeft, func(p *input.DispatchMouseEventParams) {
		p.ClickCount = 1
		if typ != chromedp.MouseReleased {
			p.Buttons = 1
		}
	})
}

// evalJS evaluates a JavaScript expression in the page and decodes its value.
func evalJS[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	require.NoError(t, err, "evaluate %s", expr)
	return v
}

func exceptionText(d *runtime.ExceptionDetails) string {
	if d == nil {
		return "exception"
	}
	msg := d.Text
	if d.Exception != nil {
		msg += " " + d.Exception.Description
	}
	return fmt.Sprintf("%s (%s:%d)", msg, d.URL, d.LineNumber+1)
}

func consoleText(typ runtime.ConsoleAPICalledType, args []*runtime.RemoteObject) string {
	if typ != runtime.ConsoleAPICalledTypeError {
		return ""
	}
	var parts []string
	for _, a := range args {
		if a.Description != "" {
			parts = append(parts, a.Description)
		} else {
			parts = append(parts, string(a.Value))
		}
	}
	return "console.error: " + strings.Join(parts, " ")
}

// waitRender waits until the console finished rendering a page newer than
// *seq, and updates *seq.
func waitRender(t *testing.T, ctx context.Context, seq *int) {
	t.Helper()
	waitRenderWithin(t, ctx, seq, 30*time.Second)
}

func waitRenderWithin(t *testing.T, ctx context.Context, seq *int, timeout time.Duration) {
	t.Helper()
	js := fmt.Sprintf(`(() => { const v = document.getElementById('view'); return v && v.dataset.state === 'done' && +v.dataset.seq > %d ? +v.dataset.seq : 0; })()`, *seq)
	got, err := chromedp.Run(ctx, chromedp.Poll[int](js, chromedp.WithPollingTimeout(timeout)))
	require.NoError(t, err, "page render")
	*seq = got
}

func waitAttr(t *testing.T, ctx context.Context, sel, attr, val string) {
	t.Helper()
	js := fmt.Sprintf(`(() => { const e = document.querySelector(%q); return !!e && e.getAttribute(%q) === %q && e.dataset.state === 'ok'; })()`, sel, attr, val)
	_, err := chromedp.Run(ctx, chromedp.Poll[bool](js, chromedp.WithPollingTimeout(30*time.Second)))
	require.NoError(t, err, "%s %s=%s", sel, attr, val)
}

// checkHistogram compares the search page's bars with the fixtures that
// match, bucketed here at the interval and range the page reports.
func checkHistogram(t *testing.T, ctx context.Context, want []stored, match func(stored) bool) {
	t.Helper()
	attrs := evalJS[map[string]string](t, ctx, `(() => { const h = document.getElementById('histogram'); return {state: h.dataset.state, iv: h.dataset.intervalMs, from: h.dataset.from, to: h.dataset.to}; })()`)
	marks := evalJS[[][]string](t, ctx, `[...document.querySelectorAll('#histogram rect.bar')].map(r => [r.dataset.key, r.dataset.value])`)
	require.Equal(t, "ok", attrs["state"])
	iv, _ := strconv.ParseInt(attrs["iv"], 10, 64)
	from, _ := strconv.ParseInt(attrs["from"], 10, 64)
	to, _ := strconv.ParseInt(attrs["to"], 10, 64)
	require.Positive(t, iv)
	wantBuckets := map[int64]int{}
	for b := from / iv * iv; b < to; b += iv {
		wantBuckets[b] = 0
	}
	for _, e := range want {
		if match(e) && e.ms >= from && e.ms < to {
			wantBuckets[e.ms/iv*iv]++
		}
	}
	got := map[int64]int{}
	for _, m := range marks {
		k, _ := strconv.ParseInt(m[0], 10, 64)
		v, _ := strconv.Atoi(m[1])
		got[k] = v
	}
	require.Equal(t, wantBuckets, got, "histogram bars (interval %d ms)", iv)
}

func mostCommon(evs []stored, key func(stored) string) string {
	n := map[string]int{}
	best := ""
	for _, e := range evs {
		k := key(e)
		if k == "" {
			continue
		}
		n[k]++
		if n[k] > n[best] || (n[k] == n[best] && k < best) {
			best = k
		}
	}
	return best
}

func sumMarks(t *testing.T, c chartSnapshot) int {
	s := 0
	for _, m := range c.Marks {
		v, err := strconv.Atoi(m[1])
		require.NoError(t, err)
		s += v
	}
	return s
}

// checkChartAgainstAPI asks the search API the chart's query over the
// dashboard's range and compares the answer with what the chart drew.
func checkChartAgainstAPI(t *testing.T, base string, c chartSnapshot, from, to time.Time) {
	t.Helper()
	q := url.Values{"q": {c.Q}, "from": {strconv.FormatInt(from.UnixMilli(), 10)}, "to": {strconv.FormatInt(to.UnixMilli(), 10)}}
	str := func(v any) string {
		switch v := v.(type) {
		case nil:
			return ""
		case float64:
			return strconv.FormatFloat(v, 'f', -1, 64)
		}
		return fmt.Sprint(v)
	}
	switch c.Kind {
	case "events":
		q.Set("limit", strconv.Itoa(max(1, len(c.IDs))))
		var res search.SearchEventsResponse
		apiGet(t, base, q, &res)
		require.Equal(t, strconv.Itoa(res.Total), c.Total, "chart %s total", c.ID)
		ids := []string{}
		for _, raw := range res.Events[:len(c.IDs)] {
			var ev struct{ AuditID string }
			require.NoError(t, json.Unmarshal(raw, &ev))
			ids = append(ids, ev.AuditID)
		}
		require.Equal(t, ids, append([]string{}, c.IDs...), "chart %s rows", c.ID)
	case "time":
		var res search.SearchRowsResponse
		apiGet(t, base, q, &res)
		want := map[string]string{}
		for _, r := range res.Rows {
			b, err := time.Parse("2006-01-02 15:04:05", str(r[0]))
			require.NoError(t, err)
			want[strconv.FormatInt(b.UnixMilli(), 10)+"|"+str(r[1])] = str(r[2])
		}
		got := map[string]string{}
		for _, m := range c.Marks {
			got[m[0]] = m[1]
		}
		require.Equal(t, want, got, "chart %s", c.ID)
	case "bars":
		var res search.SearchRowsResponse
		apiGet(t, base, q, &res)
		var want [][]string
		for _, r := range res.Rows {
			want = append(want, []string{str(r[0]), str(r[1])})
		}
		if want == nil {
			want = [][]string{}
		}
		require.Equal(t, want, append([][]string{}, c.Marks...), "chart %s", c.ID)
	case "table":
		var res search.SearchRowsResponse
		apiGet(t, base, q, &res)
		want := [][]string{}
		for _, r := range res.Rows {
			var row []string
			for _, v := range r {
				if v == nil {
					row = append(row, "∅")
				} else {
					row = append(row, str(v))
				}
			}
			want = append(want, row)
		}
		require.Equal(t, want, append([][]string{}, c.Rows...), "chart %s", c.ID)
	default:
		t.Fatalf("chart %s: unknown kind %q", c.ID, c.Kind)
	}
}

// TestConsoleDashboardSpeed measures, and never asserts, how long the
// search page and each dashboard take to render in Chromium over a large
// store with a 24 h range. It runs only when AUDITPIPE_CONSOLE_BENCH_STORE
// names a store, for example the 1M-event store of the search benchmark
// (one week from 2026-11-01, five clusters):
//
//	cd consumer && AUDITPIPE_SEARCH_BENCH_DIR=/tmp/bench go test -run '^$' \
//	    -bench 'BenchmarkSearch/field/keyword-1h$' -benchtime 1x -timeout 60m ./sink/local/
//	cd deploy/local && AUDITPIPE_CONSOLE_BENCH_STORE=/tmp/bench/events.db \
//	    go test -count=1 -v -run TestConsoleDashboardSpeed -timeout 30m ./allinone/
//
// AUDITPIPE_CONSOLE_BENCH_FROM moves the day (default 2026-11-04T00:00:00Z).
func TestConsoleDashboardSpeed(t *testing.T) {
	path := os.Getenv("AUDITPIPE_CONSOLE_BENCH_STORE")
	if path == "" {
		t.Skip("set AUDITPIPE_CONSOLE_BENCH_STORE to a store to measure the console on it")
	}
	from := time.Date(2026, 11, 4, 0, 0, 0, 0, time.UTC)
	if v := os.Getenv("AUDITPIPE_CONSOLE_BENCH_FROM"); v != "" {
		var err error
		from, err = time.Parse(time.RFC3339, v)
		require.NoError(t, err, "AUDITPIPE_CONSOLE_BENCH_FROM")
	}
	to := from.Add(24 * time.Hour)
	store, err := local.Open(path, local.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, store.Close()) })
	h, err := console.Handler()
	require.NoError(t, err)
	mux := http.NewServeMux()
	mux.Handle("/api/", search.NewHandler(store, nil))
	mux.Handle(search.ClustersPath, search.NewClustersHandler(store, "", nil))
	mux.Handle("/", h)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	br := startBrowser(t, findBrowser(t), 25*time.Minute)
	rangeParams := "from=" + url.QueryEscape(from.Format(time.RFC3339)) + "&to=" + url.QueryEscape(to.Format(time.RFC3339))
	pages := []string{
		"search?q=*&" + rangeParams,
		"search?q=" + url.QueryEscape("verb:delete AND objectRef.resource:secrets") + "&" + rangeParams,
		"dash/overview?" + rangeParams,
		"dash/nodes?" + rangeParams,
		"dash/objects?resource=deployments&name=nginx-7&" + rangeParams,
		"dash/users?user=" + url.QueryEscape("user-7@example.com") + "&" + rangeParams,
	}
	for _, round := range []string{"first", "again"} {
		for _, page := range pages {
			seq := 0
			start := time.Now()
			require.NoError(t, chromedp.Do(br.ctx, chromedp.Navigate(srv.URL+"/#/"+page)))
			waitRenderWithin(t, br.ctx, &seq, 10*time.Minute)
			wall := time.Since(start)
			charts := evalJS[[]string](t, br.ctx, `[...document.querySelectorAll('[data-chart]')].map(c => c.dataset.chart + '=' + (c.dataset.ms || c.dataset.state))`)
			states := evalJS[[]string](t, br.ctx, `[...document.querySelectorAll('[data-state]')].map(c => c.dataset.state).filter(s => s !== 'ok' && s !== 'done')`)
			require.Empty(t, states, "%s: every part rendered", page)
			t.Logf("%-5s %-60s %6d ms (navigation to rendered) charts(ms): %s", round, strings.SplitN(page, "&from=", 2)[0], wall.Milliseconds(), strings.Join(charts, " "))
		}
	}
	require.Empty(t, br.errors(), "JavaScript errors in the console")
}
