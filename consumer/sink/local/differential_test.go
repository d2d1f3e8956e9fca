package local_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/consumer/search/cql"
	"github.com/auditpipe/auditpipe/consumer/sink/cls"
	"github.com/auditpipe/auditpipe/consumer/sink/local"
	"github.com/auditpipe/auditpipe/consumer/sink/local/localtest"
	"github.com/auditpipe/auditpipe/schemas"
)

// TestSearchAgreesWithCLSSinkFlattening runs the same queries through the
// key/values the CLS sink sends (cls.Flatten) and through the store: an
// evaluator of the query over the sink's contents, applying CLS's matching
// rules, must select exactly the events the store returns. A key named
// differently by the two, or a field one of them drops, shows up here.
func TestSearchAgreesWithCLSSinkFlattening(t *testing.T) {
	s, events := searchStore(t)
	flat := make([]cls.Flat, len(events))
	for i, e := range events {
		f, err := cls.Flatten(e.JSON, time.Time{})
		require.NoError(t, err)
		flat[i] = f
	}
	// The store marks the later of two different events under one
	// (cluster, auditID, stage) (decision 0012; the falco fixtures reuse
	// one): so does the sink's copy here, as the processor-side marker
	// would read in CLS.
	seen := map[localtest.Key]bool{}
	for i, e := range events {
		k := localtest.Key{Cluster: e.Pipeline.Cluster, AuditID: e.AuditID, Stage: e.Stage}
		if seen[k] {
			flat[i].Contents = append(flat[i].Contents, cls.KV{Key: "auditpipe.auditIDReused", Value: "true"})
		}
		seen[k] = true
	}
	queries := []string{
		`objectRef.resource:deployments AND objectRef.name:"nginx" AND verb:"delete"`,
		`objectRef.resource:nodes AND requestObject:unschedulable`,
		`verb:DELETE`, `objectRef.name:nginx`, `objectRef.name:nginx-dep*`, `objectRef.resource:pod?`,
		`objectRef.apiGroup:rbac.authorization.k8s.io`, `user.username:kube-system`,
		`user.username:system\:anonymous`, `user.username:"system:anonymous"`,
		`user.groups:"system:masters"`, `user.groups:system\:unauthenticated`,
		`impersonatedUser.username:bob`, `impersonatedUser.groups:*`, `sourceIPs:10.0.0.7`, `sourceIPs:"::1"`,
		`verb:(get OR list) AND NOT objectRef.namespace:*`, `responseStatus.code>=400`, `responseStatus.code:<300`,
		`responseStatus.reason:forbidden`, `responseStatus.status:Failure`, `responseStatus.details:pods`,
		`responseStatus.code:40*`, `level:requestresponse`, `stage:ResponseStarted`, `kind:event`, `auditID:be65c6d7*`,
		`requestURI:watch`, `userAgent:kubectl*`, `userAgent:"kubernetes/abc"`,
		`annotations.authorization.k8s.io/decision:allow`, `annotations.authorization.k8s.io/reason:*`,
		`annotations.app.kubernetes.io/name:web`, `annotations.note:""`,
		`user.extra.authentication.kubernetes.io/credential-id:*`, `authenticationMetadata.credentialSource:*`,
		`timestamp:*`, `metadata.creationTimestamp:2017*`, `stageTimestamp:2020*`,
		`auditpipe.source:webhook`, `auditpipe.source:file`, `auditpipe.cluster:kind-dev`, `auditpipe.auditIDReused:true`,
		`auditpipe.detections:privileged-pod`, `auditpipe.origin.topic:audit.raw`, `auditpipe.schemaVersion>=1`,
		`forbidden`, `kube-system`, `bob list`, `"cannot list pods"`, `webhook`, `audit.raw`, `deploy?ent-controller`,
		`requestObject:privileged AND requestObject:true`, `responseObject:"nginx-deployment"`,
		`nosuchkey:*`, `nosuchkey:x`, `NOT nosuchkey:x`,
	}
	for _, q := range queries {
		pq, err := cql.Parse(q)
		require.NoError(t, err, q)
		var want []localtest.Key
		for i, f := range flat {
			if clsEval(t, pq.Filter, f.Contents) {
				want = append(want, localtest.Key{Cluster: events[i].Pipeline.Cluster, AuditID: events[i].AuditID, Stage: events[i].Stage})
			}
		}
		res, err := s.Search(t.Context(), local.SearchRequest{Query: pq, Limit: local.MaxLimit})
		require.NoError(t, err, q)
		got := map[localtest.Key]bool{}
		for _, e := range res.Events {
			got[localtest.KeyOf(t, e)] = true
		}
		// A set: the fixtures reuse an auditID (decision 0012), so two
		// events can share a key.
		wantSet := map[localtest.Key]bool{}
		for _, k := range want {
			wantSet[k] = true
		}
		require.Len(t, got, len(wantSet), q)
		for _, k := range want {
			require.True(t, got[k], "%s: %v missing", q, k)
		}
	}
}

// clsEval evaluates a search over one event's CLS contents.
func clsEval(t *testing.T, e cql.Expr, kvs []cls.KV) bool {
	switch e := e.(type) {
	case nil:
		return true
	case *cql.And:
		return clsEval(t, e.L, kvs) && clsEval(t, e.R, kvs)
	case *cql.Or:
		return clsEval(t, e.L, kvs) || clsEval(t, e.R, kvs)
	case *cql.Not:
		return !clsEval(t, e.X, kvs)
	case *cql.Term:
		any := func(pred func(cls.KV) bool) bool {
			for _, kv := range kvs {
				if (e.Field == "" && !strings.HasPrefix(kv.Key, schemas.PipelineKey+".") || kv.Key == e.Field) && pred(kv) {
					return true
				}
			}
			return false
		}
		switch e.Kind {
		case cql.All:
			return true
		case cql.Exists:
			return any(func(cls.KV) bool { return true })
		case cql.Empty:
			return any(func(kv cls.KV) bool { return kv.Value == "" })
		case cql.Range:
			return any(func(kv cls.KV) bool {
				n, err := strconv.ParseFloat(kv.Value, 64)
				if err != nil {
					return false
				}
				switch e.Op {
				case ">":
					return n > e.Number
				case ">=":
					return n >= e.Number
				case "<":
					return n < e.Number
				case "<=":
					return n <= e.Number
				}
				return n == e.Number
			})
		case cql.Match:
			p := cql.CompilePattern(e.Pattern, e.Quoted)
			return any(func(kv cls.KV) bool { return p.Match(cql.Words(kv.Value)) })
		}
	}
	t.Fatalf("unexpected node %T", e)
	return false
}
