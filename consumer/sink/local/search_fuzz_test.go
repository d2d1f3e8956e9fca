package local_test

import (
	"context"
	"errors"
	"testing"

	"github.com/auditpipe/auditpipe/consumer/search/cql"
	"github.com/auditpipe/auditpipe/consumer/sink/local"
	"github.com/auditpipe/auditpipe/consumer/sink/local/localtest"
)

// FuzzSearch runs whatever parses on a real store: the compiler must turn
// every parsed query into SQL that SQLite accepts, or into a caller error
// (*cql.Error, *local.InvalidSearchError) — never an internal error, which
// would be a 500 for a user's typo, or worse, SQL the compiler got wrong.
//
//	go test -run '^$' -fuzz FuzzSearch -fuzztime 30s ./sink/local/
func FuzzSearch(f *testing.F) {
	for _, s := range []string{
		`objectRef.resource:deployments AND objectRef.name:"nginx" AND verb:"delete"`,
		`objectRef.resource:nodes AND requestObject:unschedulable`,
		`* | SELECT histogram(cast(__TIMESTAMP__ as timestamp), interval 1 minute) AS time, COUNT(1) AS qps, userAgent GROUP BY time, userAgent ORDER BY time`,
		`user.username:sys* OR NOT responseStatus.code>=400 AND objectRef.name:ng*x AND kube* "cannot list"`,
		`verb:delete | SELECT "user.username" AS u, count(*) AS n WHERE x IN ('a', 1) AND y IS NOT NULL GROUP BY u HAVING n > 1 ORDER BY n DESC, 1 LIMIT 10`,
		`a.b:* AND c:"" AND d<=-1.5 | SELECT date_trunc('hour', __TIMESTAMP__), round(avg("a.b"), 2), -x % 3, 'it''s', cast(verb as bigint), lower(coalesce(x, 'y'))`,
		`user.groups:system* AND annotations.authorization.k8s.io/decision:allow`,
		`verb:(get OR "list") AND code:>=400 AND objectRef.name:ngin? AND user.username:system\:admin AND auditpipe.detections:* AND x.y:"" AND z>1`,
		`* | SELECT DISTINCT CASE WHEN verb = 'get' THEN split_part(userAgent, '/', 1) ELSE 'x' END AS a, count_if(code >= 400), approx_percentile(code, 0.9), strpos(verb, 'e'), date_format(__TIMESTAMP__, '%Y %H:%i'), time_series(__TIMESTAMP__, '5m', '%H:%i', '0'), from_unixtime(__TIMESTAMP__ / 1000) GROUP BY 1 ORDER BY 1 DESC`,
	} {
		f.Add(s, false)
		f.Add(s, true)
	}
	s, _ := openStore(f, local.Options{})
	if _, err := s.Write(context.Background(), localtest.Values(localtest.Kind(f))); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, query string, timeRange bool) {
		q, err := cql.Parse(query)
		if err != nil {
			return // FuzzParse covers the parser
		}
		req := local.SearchRequest{Query: q, Limit: 3}
		if timeRange {
			req.From, req.To = localtest.Kind(t)[0].StageTimestamp, localtest.Kind(t)[0].StageTimestamp.AddDate(1, 0, 0)
		}
		_, err = s.Search(context.Background(), req)
		var pe *cql.Error
		var ie *local.InvalidSearchError
		if err != nil && !errors.As(err, &pe) && !errors.As(err, &ie) {
			t.Fatalf("internal error for %q: %v", query, err)
		}
	})
}
