// Package storebench is the search benchmark every store engine runs on
// the same events and the same queries (issue #13's targets): one week of
// 1,000,000 events from 5 clusters, field and full-text queries with and
// without a time range, and `| SELECT` analyses, each reported as the p50
// and p95 latency of its calls. It is a test helper: import it only from
// _test.go files (it uses testing and the fixtures of localtest).
//
// The engines' benchmarks (both named BenchmarkSearch):
//
//	go test -run '^$' -bench BenchmarkSearch -benchtime 40x -timeout 60m ./sink/local/
//	go test -run '^$' -bench BenchmarkSearch -benchtime 20x -timeout 60m ./sink/vlstore/
//
// AUDITPIPE_SEARCH_BENCH_EVENTS overrides the number of events;
// AUDITPIPE_SEARCH_BENCH_DIR names a directory where each engine's store
// is built once and kept (each engine under its own names there; delete
// it after a change of the generator or of a store's layout).
package storebench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/consumer/search/cql"
	"github.com/auditpipe/auditpipe/consumer/sink/eventstore"
	"github.com/auditpipe/auditpipe/consumer/sink/local/localtest"
	"github.com/auditpipe/auditpipe/schemas"
)

// Engine is what the benchmark needs of a store engine.
type Engine struct {
	// Open opens (or reopens, for a kept store) the engine's store in
	// dir. The benchmark closes it at the end.
	Open func(tb testing.TB, dir string) eventstore.Store
	// Batch is the number of events per Write while building.
	Batch int
	// Built is the name of the file in dir that marks a complete store
	// of n events (so that a kept store is reused).
	Built func(n int) string
	// MayRefuse: a search the engine refuses as too broad (an
	// *eventstore.InvalidSearchError on "q") is a result, counted as
	// refused/op, not a failure.
	MayRefuse bool
	// Plan, when not nil, names how the engine answers a request (e.g.
	// "native" or "fallback"): logged once per query.
	Plan func(eventstore.SearchRequest) string
}

// Query is one of the benchmark's searches: Next makes the request of
// one call (a different time window or value per call).
type Query struct {
	Name string
	Next func(r *rand.Rand) eventstore.SearchRequest
}

// Start and Span are the week the events cover.
var (
	Start = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	Span  = 7 * 24 * time.Hour
)

// Events is the number of events: 1,000,000, or
// AUDITPIPE_SEARCH_BENCH_EVENTS.
func Events(tb testing.TB) int {
	n := 1_000_000
	if v := os.Getenv("AUDITPIPE_SEARCH_BENCH_EVENTS"); v != "" {
		var err error
		n, err = strconv.Atoi(v)
		require.NoError(tb, err, "AUDITPIPE_SEARCH_BENCH_EVENTS")
	}
	return n
}

// Run builds (or reuses) e's store of Events events and runs every query
// of Queries as a sub-benchmark reporting p50-ms, p95-ms and matches/op
// (the total, or the rows of an analysis), and refused/op when e
// MayRefuse.
func Run(b *testing.B, e Engine) {
	n := Events(b)
	s := build(b, e, n)
	ctx := context.Background()
	for _, q := range Queries(b) {
		b.Run(q.Name, func(b *testing.B) {
			r := rand.New(rand.NewPCG(1, 2))
			var lat []time.Duration
			matched, refused, calls := 0, 0, 0
			for b.Loop() {
				rq := q.Next(r)
				if e.Plan != nil && calls == 0 {
					b.Logf("%s: %s", q.Name, e.Plan(rq))
				}
				calls++
				t0 := time.Now()
				res, err := s.Search(ctx, rq)
				lat = append(lat, time.Since(t0))
				var ie *eventstore.InvalidSearchError
				switch {
				case err != nil && e.MayRefuse && errors.As(err, &ie) && ie.Param == "q":
					refused++
				case err != nil:
					b.Fatal(err)
				default:
					matched += res.Total // an analysis: its rows
				}
			}
			slices.Sort(lat)
			pct := func(p float64) float64 {
				return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
			}
			b.ReportMetric(pct(0.50), "p50-ms")
			b.ReportMetric(pct(0.95), "p95-ms")
			b.ReportMetric(float64(matched)/float64(len(lat)), "matches/op")
			if e.MayRefuse {
				b.ReportMetric(float64(refused)/float64(len(lat)), "refused/op")
			}
		})
	}
}

// Queries are issue #13's searches: field/* and fulltext/* (target p95 <
// 100 ms), analysis/* and the week-long json-path ones (p95 < 1 s).
func Queries(tb testing.TB) []Query {
	hour := func(r *rand.Rand, d time.Duration) (time.Time, time.Time) {
		from := Start.Add(time.Duration(r.Int64N(int64(Span - d)))).Truncate(time.Minute)
		return from, from.Add(d)
	}
	req := func(q string, from, to time.Time) eventstore.SearchRequest {
		pq, err := cql.Parse(q)
		require.NoError(tb, err, q)
		return eventstore.SearchRequest{Query: pq, From: from, To: to}
	}
	return []Query{
		{"field/keyword-1h", func(r *rand.Rand) eventstore.SearchRequest {
			f, t := hour(r, time.Hour)
			return req(`verb:delete AND objectRef.resource:secrets`, f, t)
		}},
		{"field/keyword-24h", func(r *rand.Rand) eventstore.SearchRequest {
			f, t := hour(r, 24*time.Hour)
			return req(`objectRef.namespace:team-`+strconv.Itoa(r.IntN(50))+` AND responseStatus.code>=400`, f, t)
		}},
		{"field/text-24h", func(r *rand.Rand) eventstore.SearchRequest {
			f, t := hour(r, 24*time.Hour)
			return req(`user.username:"user-`+strconv.Itoa(r.IntN(200))+`@example.com"`, f, t)
		}},
		{"field/json-path-1h", func(r *rand.Rand) eventstore.SearchRequest {
			f, t := hour(r, time.Hour)
			return req(`annotations.authorization.k8s.io/decision:forbid`, f, t)
		}},
		{"field/json-path-7d", func(r *rand.Rand) eventstore.SearchRequest {
			return req(`annotations.authorization.k8s.io/decision:forbid`, time.Time{}, time.Time{})
		}},
		{"field/json-path-and-keyword-cluster-24h", func(r *rand.Rand) eventstore.SearchRequest {
			f, t := hour(r, 24*time.Hour)
			rq := req(`verb:delete AND annotations.authorization.k8s.io/decision:forbid`, f, t)
			rq.Cluster = "cluster-" + strconv.Itoa(r.IntN(5))
			return rq
		}},
		{"field/json-path-and-keyword-7d", func(r *rand.Rand) eventstore.SearchRequest {
			return req(`verb:delete AND annotations.authorization.k8s.io/decision:forbid AND objectRef.namespace:team-`+strconv.Itoa(r.IntN(50)), time.Time{}, time.Time{})
		}},
		{"field/text-name-24h", func(r *rand.Rand) eventstore.SearchRequest {
			f, t := hour(r, 24*time.Hour)
			return req(`objectRef.name:"redis-`+strconv.Itoa(r.IntN(250))+`"`, f, t)
		}},
		{"field/text-useragent-1h", func(r *rand.Rand) eventstore.SearchRequest {
			f, t := hour(r, time.Hour)
			return req(`userAgent:argocd*`, f, t)
		}},
		{"field/tke-example-24h", func(r *rand.Rand) eventstore.SearchRequest {
			f, t := hour(r, 24*time.Hour)
			return req(`objectRef.resource:deployments AND objectRef.name:"nginx" AND verb:"delete"`, f, t)
		}},
		{"field/tke-example-7d-no-range", func(r *rand.Rand) eventstore.SearchRequest {
			return req(`objectRef.resource:deployments AND objectRef.name:"nginx" AND verb:"delete"`, time.Time{}, time.Time{})
		}},
		{"fulltext/rare-word-7d", func(r *rand.Rand) eventstore.SearchRequest {
			return req(`trace`+strconv.Itoa(r.IntN(50000)), time.Time{}, time.Time{})
		}},
		{"fulltext/common-word-24h", func(r *rand.Rand) eventstore.SearchRequest {
			f, t := hour(r, 24*time.Hour)
			return req(`forbidden`, f, t)
		}},
		{"fulltext/phrase-and-prefix-7d", func(r *rand.Rand) eventstore.SearchRequest {
			return req(`"user-`+strconv.Itoa(r.IntN(200))+`@example.com" AND kube*`, time.Time{}, time.Time{})
		}},
		{"analysis/top-deleters-24h", func(r *rand.Rand) eventstore.SearchRequest {
			f, t := hour(r, 24*time.Hour)
			return req(`verb:delete | SELECT "user.username" AS user, count(*) AS deletes GROUP BY user ORDER BY deletes DESC LIMIT 10`, f, t)
		}},
		{"analysis/tke-histogram-1h", func(r *rand.Rand) eventstore.SearchRequest {
			f, t := hour(r, time.Hour)
			return req(`* | SELECT histogram(cast(__TIMESTAMP__ as timestamp), interval 1 minute) AS time, COUNT(1) AS qps, userAgent GROUP BY time, userAgent ORDER BY time`, f, t)
		}},
		{"analysis/tke-histogram-24h", func(r *rand.Rand) eventstore.SearchRequest {
			f, t := hour(r, 24*time.Hour)
			return req(`* | SELECT histogram(cast(__TIMESTAMP__ as timestamp), interval 1 minute) AS time, COUNT(1) AS qps, userAgent GROUP BY time, userAgent ORDER BY time LIMIT 10000`, f, t)
		}},
		{"analysis/json-path-group-24h", func(r *rand.Rand) eventstore.SearchRequest {
			f, t := hour(r, 24*time.Hour)
			return req(`* | SELECT "annotations.authorization.k8s.io/decision" AS d, count(*) AS n GROUP BY d ORDER BY n DESC`, f, t)
		}},
		{"analysis/json-path-filter-group-7d", func(r *rand.Rand) eventstore.SearchRequest {
			return req(`annotations.authorization.k8s.io/decision:forbid | SELECT "user.username" AS u, count(*) AS n GROUP BY u ORDER BY n DESC LIMIT 10`, time.Time{}, time.Time{})
		}},
		{"analysis/codes-by-verb-7d", func(r *rand.Rand) eventstore.SearchRequest {
			return req(`* | SELECT verb, "responseStatus.code" AS code, count(*) AS n GROUP BY verb, code ORDER BY n DESC`, time.Time{}, time.Time{})
		}},
	}
}

// build writes n events (Generate) into a new store of e, or reopens the
// one kept in AUDITPIPE_SEARCH_BENCH_DIR.
func build(b *testing.B, e Engine, n int) eventstore.Store {
	b.Helper()
	t0 := time.Now()
	dir := os.Getenv("AUDITPIPE_SEARCH_BENCH_DIR")
	if dir == "" {
		dir = b.TempDir()
	}
	done := filepath.Join(dir, e.Built(n))
	s := e.Open(b, dir)
	b.Cleanup(func() { require.NoError(b, s.Close()) })
	if _, err := os.Stat(done); err == nil {
		b.Logf("reusing the store of %d events in %s", n, dir)
		return s
	}
	ctx := context.Background()
	Generate(b, n, e.Batch, func(values [][]byte) {
		res, err := s.Write(ctx, values)
		require.NoError(b, err)
		require.Equal(b, len(values), res.Inserted)
	})
	require.NoError(b, os.WriteFile(done, nil, 0o600))
	b.Logf("built a store of %d events in %s", n, time.Since(t0).Round(time.Second))
	return s
}

// Generate makes n events varied from the fixtures and passes them to
// write in batches of batch: unique auditIDs, times spread evenly over
// the week (Start, Span), 5 clusters, 200 users, 50 namespaces, 5000
// object names (20 workloads), a realistic mix of verbs and response
// codes (3% 403 with decision forbid, 3% 404). The events are the same
// for every batch size (one seeded generator).
func Generate(tb testing.TB, n, batch int, write func(values [][]byte)) {
	tb.Helper()
	templates := MetadataEvents(tb)
	verbs := []string{"get", "get", "get", "list", "list", "watch", "update", "patch", "create", "delete"}
	resources := []string{"pods", "secrets", "configmaps", "deployments", "services", "nodes", "clusterrolebindings", "events"}
	// 20 workloads x 250 instances: 5000 object names, nginx in 5%.
	apps := []string{"nginx", "redis", "coredns", "kube-proxy", "postgres", "api-gateway", "billing", "frontend",
		"checkout", "metrics-server", "prometheus", "grafana", "loki", "vault", "cert-manager", "ingress-controller",
		"payments", "search", "orders", "auth"}
	agents := []string{"kubectl/v1.31.0 (linux/amd64) kubernetes/abc", "kube-controller-manager/v1.31.0", "argocd-application-controller/v2.12", "Go-http-client/2.0"}
	r := rand.New(rand.NewPCG(42, 42))
	step := Span / time.Duration(n)
	values := make([][]byte, 0, batch)
	for i := range n {
		ev := templates[i%len(templates)]
		ev.AuditID = fmt.Sprintf("%08x-bench-%d", i, r.Uint32())
		ev.Pipeline.Cluster = "cluster-" + strconv.Itoa(i%5)
		ts := Start.Add(step * time.Duration(i))
		ev.RequestReceivedTimestamp = ts.Add(-15 * time.Millisecond)
		ev.StageTimestamp = ts
		ev.Pipeline.ReceivedAt = ts.Add(40 * time.Millisecond)
		ev.Verb = verbs[r.IntN(len(verbs))]
		ev.User.Username = "user-" + strconv.Itoa(r.IntN(200)) + "@example.com"
		ev.UserAgent = agents[r.IntN(len(agents))]
		var ref schemas.ObjectReference
		if ev.ObjectRef != nil {
			ref = *ev.ObjectRef
		}
		ref.Resource = resources[r.IntN(len(resources))]
		ref.Namespace = "team-" + strconv.Itoa(r.IntN(50))
		ref.Name = apps[r.IntN(len(apps))] + "-" + strconv.Itoa(r.IntN(250))
		ev.ObjectRef = &ref
		// A word that 20 events share, for rare-word full-text queries.
		ev.RequestURI = "/api/v1/namespaces/" + ref.Namespace + "/" + ref.Resource + "/" + ref.Name + "?trace=trace" + strconv.Itoa(i%50000)
		var status schemas.Status
		if ev.ResponseStatus != nil {
			status = *ev.ResponseStatus
		}
		status.Code = 200
		decision := "allow"
		switch x := r.IntN(100); {
		case x < 3:
			status.Code, decision = 403, "forbid"
			status.Message = "forbidden: User cannot " + ev.Verb + " resource"
		case x < 6:
			status.Code = 404
		}
		ev.ResponseStatus = &status
		ann := make(map[string]string, len(ev.Annotations))
		for k, v := range ev.Annotations {
			ann[k] = v
		}
		ann["authorization.k8s.io/decision"] = decision
		ev.Annotations = ann
		v, err := json.Marshal(ev)
		require.NoError(tb, err)
		values = append(values, v)
		if len(values) == batch || i == n-1 {
			write(values)
			values = values[:0]
		}
	}
}

// MetadataEvents are the fixtures at Metadata level (bodies stripped) with
// the authorization annotations and user groups a real apiserver adds, which
// brings them to about 1.4 KB.
func MetadataEvents(tb testing.TB) []schemas.ProcessedEvent {
	tb.Helper()
	var out []schemas.ProcessedEvent
	for _, e := range localtest.All(tb) {
		e.Level = "Metadata"
		e.RequestObject, e.ResponseObject = nil, nil
		if len(e.User.Groups) == 0 {
			e.User.Groups = []string{"system:authenticated", "oidc:platform-admins"}
		}
		e.User.UID = "8c1f6a2e-5b7d-4e0f-9a3c-2d4b6f8e1a0c"
		e.Annotations = map[string]string{
			"authorization.k8s.io/decision": "allow",
			"authorization.k8s.io/reason": fmt.Sprintf(
				"RBAC: allowed by ClusterRoleBinding %q of ClusterRole %q to User %q",
				"platform-admins-binding", "cluster-admin", e.User.Username),
			"apiserver.latency.k8s.io/total":     "12.345678ms",
			"apiserver.latency.k8s.io/etcd":      "3.210987ms",
			"apiserver.latency.k8s.io/serialize": "101.5µs",
		}
		out = append(out, e.ProcessedEvent)
	}
	return out
}
