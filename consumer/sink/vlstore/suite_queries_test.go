package vlstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/consumer/search/cql"
	"github.com/auditpipe/auditpipe/consumer/sink/eventstore"
	"github.com/auditpipe/auditpipe/consumer/sink/local/localtest"
)

// sqliteSuiteQueries are the queries of the SQLite store's own search
// tests (consumer/sink/local search_test.go and sql_test.go, as of this
// writing), errors included.
var sqliteSuiteQueries = []string{
	`objectRef.resource:deployments AND objectRef.name:"nginx" AND verb:"delete"`,
	`objectRef.resource:nodes AND requestObject:unschedulable`,
	`verb:DELETE`,
	`objectRef.resource:ClusterRoleBindings`,
	`objectRef.name:nginx`,
	`objectRef.name:NGINX-deployment`,
	`objectRef.apiGroup:rbac.authorization.k8s.io`,
	`user.username:kube-system`,
	`user.username:system\:anonymous`,
	`user.username:"system:anonymous" OR user.groups:"system:unauthenticated"`,
	`user.username:"kube-system:serviceaccount"`,
	`verb:(get OR list)`,
	`verb:(GET OR "list") AND objectRef.resource:pods`,
	`responseStatus.code>=400 AND NOT responseStatus.code=404`,
	`responseStatus.code:>=400 AND NOT responseStatus.code:=404 AND responseStatus.code:<500`,
	`NOT responseStatus.code:>=300`,
	`objectRef.resource:pod? AND verb:g?t`,
	`objectRef.name:nginx-dep*`,
	`objectRef.resource:cluster*bindings`,
	`objectRef.subresource:*`,
	`NOT objectRef.namespace:*`,
	`annotations.note:""`,
	`annotations.authorization.k8s.io/decision:ALLOW`,
	`annotations.app.kubernetes.io/name:web`,
	`user.extra.authentication.kubernetes.io/credential-id:JTI\=0f6b1c52-aaaa`,
	`authenticationMetadata.credentialSource:serviceaccounttoken`,
	`timestamp:* AND metadata.creationTimestamp:2017*`,
	`auditpipe.source:webhook`,
	`auditpipe.auditIDReused:true AND auditpipe.detections:privileged-pod`,
	`audit.raw OR webhook`,
	`auditpipe.origin.topic:audit.raw`,
	`FORBIDDEN`,
	`kube-system`,
	`bob list`,
	`"cannot list pods"`,
	`replicaset-contr* OR deploy?ent-controller`,
	`*`,
	`objectRef.name:"x' OR 1=1 --" OR verb:"delete') OR ('1'='1" OR "\") OR 1 --"`,
	`"user.username"`,
	`* | SELECT count(*) LIMIT 20000`,
	`* | SELECT interval 1 minute`,
	`* | SELECT histogram(__TIMESTAMP__, 5)`,
	`* | SELECT date_trunc('week', __TIMESTAMP__)`,
	`* | SELECT verb ORDER BY 3`,
	`* | SELECT verb WHERE count(*) > 1`,
	`"::"`,
	`* | SELECT time_series(__TIMESTAMP__, '5 minutes', '%H:%i', '0')`,
	`* | SELECT date_format(__TIMESTAMP__, '%H:%i %M')`,
	`* | SELECT count(*), count("objectRef.namespace"), count("impersonatedUser.username"), count("authenticationMetadata.credentialSource"), count(userAgent)`,
	`* | SELECT count(*) AS n, count(DISTINCT "objectRef.namespace") AS ns, approx_distinct("objectRef.namespace") AS ans WHERE "objectRef.namespace" IS NULL OR "objectRef.namespace" IS NOT NULL`,
	`* | SELECT count(*) WHERE "objectRef.namespace" IS NULL`,
	`* | SELECT "objectRef.namespace" AS ns, count(*) AS n GROUP BY ns ORDER BY ns`,
	`* | SELECT "objectRef.namespace" AS ns, count(*) AS n GROUP BY ns ORDER BY ns DESC`,
	`* | SELECT CASE WHEN "responseStatus.code" >= 400 THEN 'error' WHEN "responseStatus.code" IS NULL THEN 'none' ELSE 'ok' END AS outcome, count(*) AS n, count_if(verb = 'delete') AS deletes GROUP BY outcome ORDER BY outcome`,
	`* | SELECT CASE verb WHEN 'get' THEN 'read' WHEN 'list' THEN 'read' END AS kind, count(*) GROUP BY kind ORDER BY kind`,
	`* | SELECT approx_percentile("responseStatus.code", 0.5), approx_percentile("responseStatus.code", 0.99), approx_percentile("responseStatus.code", 0)`,
	`* | SELECT approx_percentile("responseStatus.code", 2)`,
	`* | SELECT split_part("user.username", ':', 3) AS ns, count(*) AS n WHERE strpos("user.username", 'system:serviceaccount:') = 1 GROUP BY ns HAVING count(*) >= 2 ORDER BY n DESC, ns`,
	`* | SELECT DISTINCT upper(verb) AS v WHERE verb IN ('get', 'list', 'delete') AND "requestURI" LIKE '/api%' ORDER BY v`,
}

// TestSQLiteSuiteQueriesAgainstSQLite runs the SQLite store's search test
// queries on both stores holding the same events: the same events in the
// same pages, the same analysis rows, the same errors.
func TestSQLiteSuiteQueriesAgainstSQLite(t *testing.T) {
	start := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	p := openPair(t, append(localtest.Values(localtest.All(t)), varied(t, 300, start)...))
	for _, query := range sqliteSuiteQueries {
		q, err := cql.Parse(query)
		if err != nil {
			continue // a parse error is the parser's, before any store
		}
		req := eventstore.SearchRequest{Query: q, Limit: 23}
		if q.SQL != nil {
			want, werr := p.sq.Search(context.Background(), req)
			got, gerr := p.vl.Search(context.Background(), req)
			if werr != nil {
				require.Error(t, gerr, query)
				require.Equal(t, werr.Error(), gerr.Error(), query)
				continue
			}
			require.NoError(t, gerr, query)
			require.Equal(t, want.Columns, got.Columns, query)
			require.Equal(t, want.Rows, got.Rows, query)
			continue
		}
		if _, werr := p.sq.Search(context.Background(), req); werr != nil {
			_, gerr := p.vl.Search(context.Background(), req)
			require.Error(t, gerr, query)
			require.Equal(t, werr.Error(), gerr.Error(), query)
			continue
		}
		wantKeys, wantTotal := searchAllPages(t, p.sq, req)
		gotKeys, gotTotal := searchAllPages(t, p.vl, req)
		require.Equal(t, wantTotal, gotTotal, query)
		require.Equal(t, wantKeys, gotKeys, query)
	}
}
