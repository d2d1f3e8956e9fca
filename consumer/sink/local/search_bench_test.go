package local_test

import (
	"context"
	"encoding/json"
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
	"github.com/auditpipe/auditpipe/consumer/sink/local"
	"github.com/auditpipe/auditpipe/schemas"
)

// BenchmarkSearch measures CLS queries on a store of 1,000,000 events
// (AUDITPIPE_SEARCH_BENCH_EVENTS overrides the count): field queries with a
// time range, full-text queries and GROUP BY analyses. Each sub-benchmark
// reports the p50 and p95 latency of its queries (a different time window or
// value per iteration). The store is built once per run, in a temp dir,
// before the sub-benchmarks; building it takes minutes. To compare query
// changes without rebuilding, AUDITPIPE_SEARCH_BENCH_DIR names a directory
// where the store is built once and kept (delete it after a schema change).
//
//	go test -run '^$' -bench BenchmarkSearch -benchtime 40x -timeout 60m ./sink/local/
func BenchmarkSearch(b *testing.B) {
	n := 1_000_000
	if v := os.Getenv("AUDITPIPE_SEARCH_BENCH_EVENTS"); v != "" {
		var err error
		n, err = strconv.Atoi(v)
		require.NoError(b, err, "AUDITPIPE_SEARCH_BENCH_EVENTS")
	}
	// One week of events from 5 clusters, 1.65 events/s at 1M.
	start := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	span := 7 * 24 * time.Hour
	s := buildSearchStore(b, n, start, span)
	ctx := context.Background()

	hour := func(r *rand.Rand, d time.Duration) (time.Time, time.Time) {
		from := start.Add(time.Duration(r.Int64N(int64(span - d)))).Truncate(time.Minute)
		return from, from.Add(d)
	}
	type query struct {
		name string
		next func(r *rand.Rand) local.SearchRequest
	}
	req := func(q string, from, to time.Time) local.SearchRequest {
		pq, err := cql.Parse(q)
		require.NoError(b, err, q)
		return local.SearchRequest{Query: pq, From: from, To: to}
	}
	queries := []query{
		{"field/keyword-1h", func(r *rand.Rand) local.SearchRequest {
			f, t := hour(r, time.Hour)
			return req(`verb:delete AND objectRef.resource:secrets`, f, t)
		}},
		{"field/keyword-24h", func(r *rand.Rand) local.SearchRequest {
			f, t := hour(r, 24*time.Hour)
			return req(`objectRef.namespace:team-`+strconv.Itoa(r.IntN(50))+` AND responseStatus.code>=400`, f, t)
		}},
		{"field/text-24h", func(r *rand.Rand) local.SearchRequest {
			f, t := hour(r, 24*time.Hour)
			return req(`user.username:"user-`+strconv.Itoa(r.IntN(200))+`@example.com"`, f, t)
		}},
		{"field/json-path-1h", func(r *rand.Rand) local.SearchRequest {
			f, t := hour(r, time.Hour)
			return req(`annotations.authorization.k8s.io/decision:forbid`, f, t)
		}},
		{"field/json-path-7d", func(r *rand.Rand) local.SearchRequest {
			return req(`annotations.authorization.k8s.io/decision:forbid`, time.Time{}, time.Time{})
		}},
		{"field/json-path-and-keyword-cluster-24h", func(r *rand.Rand) local.SearchRequest {
			f, t := hour(r, 24*time.Hour)
			rq := req(`verb:delete AND annotations.authorization.k8s.io/decision:forbid`, f, t)
			rq.Cluster = "cluster-" + strconv.Itoa(r.IntN(5))
			return rq
		}},
		{"field/json-path-and-keyword-7d", func(r *rand.Rand) local.SearchRequest {
			return req(`verb:delete AND annotations.authorization.k8s.io/decision:forbid AND objectRef.namespace:team-`+strconv.Itoa(r.IntN(50)), time.Time{}, time.Time{})
		}},
		{"field/text-name-24h", func(r *rand.Rand) local.SearchRequest {
			f, t := hour(r, 24*time.Hour)
			return req(`objectRef.name:"redis-`+strconv.Itoa(r.IntN(250))+`"`, f, t)
		}},
		{"field/text-useragent-1h", func(r *rand.Rand) local.SearchRequest {
			f, t := hour(r, time.Hour)
			return req(`userAgent:argocd*`, f, t)
		}},
		{"field/tke-example-24h", func(r *rand.Rand) local.SearchRequest {
			f, t := hour(r, 24*time.Hour)
			return req(`objectRef.resource:deployments AND objectRef.name:"nginx" AND verb:"delete"`, f, t)
		}},
		{"field/tke-example-7d-no-range", func(r *rand.Rand) local.SearchRequest {
			return req(`objectRef.resource:deployments AND objectRef.name:"nginx" AND verb:"delete"`, time.Time{}, time.Time{})
		}},
		{"fulltext/rare-word-7d", func(r *rand.Rand) local.SearchRequest {
			return req(`trace`+strconv.Itoa(r.IntN(50000)), time.Time{}, time.Time{})
		}},
		{"fulltext/common-word-24h", func(r *rand.Rand) local.SearchRequest {
			f, t := hour(r, 24*time.Hour)
			return req(`forbidden`, f, t)
		}},
		{"fulltext/phrase-and-prefix-7d", func(r *rand.Rand) local.SearchRequest {
			return req(`"user-`+strconv.Itoa(r.IntN(200))+`@example.com" AND kube*`, time.Time{}, time.Time{})
		}},
		{"analysis/top-deleters-24h", func(r *rand.Rand) local.SearchRequest {
			f, t := hour(r, 24*time.Hour)
			return req(`verb:delete | SELECT "user.username" AS user, count(*) AS deletes GROUP BY user ORDER BY deletes DESC LIMIT 10`, f, t)
		}},
		{"analysis/tke-histogram-1h", func(r *rand.Rand) local.SearchRequest {
			f, t := hour(r, time.Hour)
			return req(`* | SELECT histogram(cast(__TIMESTAMP__ as timestamp), interval 1 minute) AS time, COUNT(1) AS qps, userAgent GROUP BY time, userAgent ORDER BY time`, f, t)
		}},
		{"analysis/tke-histogram-24h", func(r *rand.Rand) local.SearchRequest {
			f, t := hour(r, 24*time.Hour)
			return req(`* | SELECT histogram(cast(__TIMESTAMP__ as timestamp), interval 1 minute) AS time, COUNT(1) AS qps, userAgent GROUP BY time, userAgent ORDER BY time LIMIT 10000`, f, t)
		}},
		{"analysis/json-path-group-24h", func(r *rand.Rand) local.SearchRequest {
			f, t := hour(r, 24*time.Hour)
			return req(`* | SELECT "annotations.authorization.k8s.io/decision" AS d, count(*) AS n GROUP BY d ORDER BY n DESC`, f, t)
		}},
		{"analysis/json-path-filter-group-7d", func(r *rand.Rand) local.SearchRequest {
			return req(`annotations.authorization.k8s.io/decision:forbid | SELECT "user.username" AS u, count(*) AS n GROUP BY u ORDER BY n DESC LIMIT 10`, time.Time{}, time.Time{})
		}},
		{"analysis/codes-by-verb-7d", func(r *rand.Rand) local.SearchRequest {
			return req(`* | SELECT verb, "responseStatus.code" AS code, count(*) AS n GROUP BY verb, code ORDER BY n DESC`, time.Time{}, time.Time{})
		}},
	}
	for _, q := range queries {
		b.Run(q.name, func(b *testing.B) {
			r := rand.New(rand.NewPCG(1, 2))
			var lat []time.Duration
			matched := 0
			for b.Loop() {
				rq := q.next(r)
				t0 := time.Now()
				res, err := s.Search(ctx, rq)
				lat = append(lat, time.Since(t0))
				if err != nil {
					b.Fatal(err)
				}
				matched += res.Total
			}
			slices.Sort(lat)
			pct := func(p float64) float64 {
				return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
			}
			b.ReportMetric(pct(0.50), "p50-ms")
			b.ReportMetric(pct(0.95), "p95-ms")
			b.ReportMetric(float64(matched)/float64(len(lat)), "matches/op")
		})
	}
}

// buildSearchStore writes n events varied from the fixtures into a new store
// in b's temp dir: unique auditIDs, times spread evenly over span, 5
// clusters, 200 users, 50 namespaces, 5000 object names (20 workloads), a
// realistic mix of verbs and response codes (3% 403, 3% 404).
func buildSearchStore(b *testing.B, n int, start time.Time, span time.Duration) *local.Store {
	b.Helper()
	t0 := time.Now()
	dir := os.Getenv("AUDITPIPE_SEARCH_BENCH_DIR")
	if dir == "" {
		dir = b.TempDir()
	}
	done := filepath.Join(dir, "built-"+strconv.Itoa(n))
	s, err := local.Open(filepath.Join(dir, "events.db"), local.Options{})
	require.NoError(b, err)
	b.Cleanup(func() { require.NoError(b, s.Close()) })
	if _, err := os.Stat(done); err == nil {
		b.Logf("reusing the store of %d events in %s", n, dir)
		return s
	}
	templates := metadataEvents(b)
	verbs := []string{"get", "get", "get", "list", "list", "watch", "update", "patch", "create", "delete"}
	resources := []string{"pods", "secrets", "configmaps", "deployments", "services", "nodes", "clusterrolebindings", "events"}
	// 20 workloads x 250 instances: 5000 object names, nginx in 5%.
	apps := []string{"nginx", "redis", "coredns", "kube-proxy", "postgres", "api-gateway", "billing", "frontend",
		"checkout", "metrics-server", "prometheus", "grafana", "loki", "vault", "cert-manager", "ingress-controller",
		"payments", "search", "orders", "auth"}
	agents := []string{"kubectl/v1.31.0 (linux/amd64) kubernetes/abc", "kube-controller-manager/v1.31.0", "argocd-application-controller/v2.12", "Go-http-client/2.0"}
	r := rand.New(rand.NewPCG(42, 42))
	const batch = 5000
	step := span / time.Duration(n)
	values := make([][]byte, 0, batch)
	ctx := context.Background()
	for i := range n {
		ev := templates[i%len(templates)]
		ev.AuditID = fmt.Sprintf("%08x-bench-%d", i, r.Uint32())
		ev.Pipeline.Cluster = "cluster-" + strconv.Itoa(i%5)
		ts := start.Add(step * time.Duration(i))
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
		require.NoError(b, err)
		values = append(values, v)
		if len(values) == batch || i == n-1 {
			res, err := s.Write(ctx, values)
			require.NoError(b, err)
			require.Equal(b, len(values), res.Inserted)
			values = values[:0]
		}
	}
	require.NoError(b, os.WriteFile(done, nil, 0o600))
	b.Logf("built a store of %d events in %s", n, time.Since(t0).Round(time.Second))
	return s
}
