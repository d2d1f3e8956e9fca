package policy_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/auditpipe/auditpipe/processor/policy"
	"github.com/auditpipe/auditpipe/schemas"
	"github.com/stretchr/testify/require"
)

const fixtures = "../../testdata/public-audit/falco"

func loadPolicy(tb testing.TB, name string) *policy.Policy {
	tb.Helper()
	p, err := policy.LoadFile(filepath.Join("..", "policies", name))
	require.NoError(tb, err)
	return p
}

func mustLoad(tb testing.TB, yaml string) *policy.Policy {
	tb.Helper()
	p, err := policy.Load("test.yaml", []byte(yaml))
	require.NoError(tb, err)
	return p
}

// readEvent decodes one bare event of the public fixtures.
func readEvent(tb testing.TB, name string) schemas.Event {
	tb.Helper()
	raw, err := os.ReadFile(filepath.Join(fixtures, name))
	require.NoError(tb, err)
	var ev schemas.Event
	require.NoError(tb, json.Unmarshal(raw, &ev), name)
	return ev
}

// TestTKEDefaultPolicy checks every rule of the TKE documentation against
// policies/tke-default.yaml, with near misses that must fall through to
// the later rules. Events are at RequestResponse so that the result is the
// policy's level.
func TestTKEDefaultPolicy(t *testing.T) {
	p := loadPolicy(t, "tke-default.yaml")
	const dropped = "dropped"
	cases := []struct {
		name      string
		user      string
		groups    []string
		verb      string
		group     string // API group; "" is core
		resource  string // "resource" or "resource/subresource"; empty for non-resource requests
		namespace string
		path      string
		want      string
	}{
		// Not recorded.
		{name: "kube-proxy watches endpoints", user: "system:kube-proxy", verb: "watch", resource: "endpoints", want: dropped},
		{name: "kube-proxy watches services", user: "system:kube-proxy", verb: "watch", resource: "services", want: dropped},
		{name: "kube-proxy watches services/status", user: "system:kube-proxy", verb: "watch", resource: "services/status", want: dropped},
		{name: "kube-proxy lists endpoints", user: "system:kube-proxy", verb: "list", resource: "endpoints", want: policy.LevelRequest},
		{name: "kube-proxy watches pods", user: "system:kube-proxy", verb: "watch", resource: "pods", want: policy.LevelRequest},
		{name: "unsecured gets kube-system configmap", user: "system:unsecured", verb: "get", resource: "configmaps", namespace: "kube-system", want: dropped},
		{name: "unsecured gets default configmap", user: "system:unsecured", verb: "get", resource: "configmaps", namespace: "default", want: policy.LevelMetadata},
		{name: "unsecured updates kube-system configmap", user: "system:unsecured", verb: "update", resource: "configmaps", namespace: "kube-system", want: policy.LevelMetadata},
		{name: "kubelet gets node", user: "kubelet", verb: "get", resource: "nodes", want: dropped},
		{name: "kubelet gets node status", user: "kubelet", verb: "get", resource: "nodes/status", want: dropped},
		{name: "kubelet patches node status", user: "kubelet", verb: "patch", resource: "nodes/status", want: policy.LevelRequestResponse},
		{name: "node gets node", user: "system:node:n1", groups: []string{"system:nodes", "system:authenticated"}, verb: "get", resource: "nodes", want: dropped},
		{name: "node gets node status", user: "system:node:n1", groups: []string{"system:nodes"}, verb: "get", resource: "nodes/status", want: dropped},
		{name: "node lists nodes", user: "system:node:n1", groups: []string{"system:nodes"}, verb: "list", resource: "nodes", want: policy.LevelRequest},
		{name: "node gets pod", user: "system:node:n1", groups: []string{"system:nodes"}, verb: "get", resource: "pods", namespace: "default", want: policy.LevelRequest},
		{name: "controller-manager gets endpoints", user: "system:kube-controller-manager", verb: "get", resource: "endpoints", namespace: "kube-system", want: dropped},
		{name: "controller-manager updates endpoints", user: "system:kube-controller-manager", verb: "update", resource: "endpoints", namespace: "kube-system", want: dropped},
		{name: "scheduler gets endpoints", user: "system:kube-scheduler", verb: "get", resource: "endpoints", namespace: "kube-system", want: dropped},
		{name: "scheduler updates endpoints", user: "system:kube-scheduler", verb: "update", resource: "endpoints", namespace: "kube-system", want: dropped},
		{name: "endpoint-controller updates endpoints", user: "system:serviceaccount:kube-system:endpoint-controller", verb: "update", resource: "endpoints", namespace: "kube-system", want: dropped},
		{name: "controller-manager updates endpoints elsewhere", user: "system:kube-controller-manager", verb: "update", resource: "endpoints", namespace: "default", want: policy.LevelRequestResponse},
		{name: "controller-manager deletes endpoints", user: "system:kube-controller-manager", verb: "delete", resource: "endpoints", namespace: "kube-system", want: policy.LevelRequestResponse},
		{name: "apiserver gets namespace", user: "system:apiserver", verb: "get", resource: "namespaces", want: dropped},
		{name: "apiserver gets namespace status", user: "system:apiserver", verb: "get", resource: "namespaces/status", want: dropped},
		{name: "apiserver gets namespace finalize", user: "system:apiserver", verb: "get", resource: "namespaces/finalize", want: dropped},
		{name: "apiserver updates namespace finalize", user: "system:apiserver", verb: "update", resource: "namespaces/finalize", want: policy.LevelRequestResponse},
		{name: "healthz", user: "system:anonymous", verb: "get", path: "/healthz", want: dropped},
		{name: "healthz subpath with query", user: "system:anonymous", verb: "get", path: "/healthz/etcd?verbose=1", want: dropped},
		{name: "version", user: "alice", verb: "get", path: "/version", want: dropped},
		{name: "version subpath is not exempt", user: "alice", verb: "get", path: "/version/x", want: policy.LevelRequest},
		{name: "swagger", user: "alice", verb: "get", path: "/swagger.json", want: dropped},
		{name: "swagger-ui", user: "alice", verb: "get", path: "/swagger-ui/", want: dropped},
		// Metadata.
		{name: "get secret", user: "alice", verb: "get", resource: "secrets", namespace: "default", want: policy.LevelMetadata},
		{name: "create secret", user: "alice", verb: "create", resource: "secrets", namespace: "default", want: policy.LevelMetadata},
		{name: "list configmaps", user: "alice", verb: "list", resource: "configmaps", want: policy.LevelMetadata},
		{name: "update configmap", user: "alice", verb: "update", resource: "configmaps", namespace: "default", want: policy.LevelMetadata},
		{name: "tokenreview", user: "system:kube-apiserver", verb: "create", group: "authentication.k8s.io", resource: "tokenreviews", want: policy.LevelMetadata},
		{name: "secrets of another group are not secrets", user: "alice", verb: "create", group: "example.com", resource: "secrets", want: policy.LevelRequestResponse},
		// Request.
		{name: "get pod", user: "alice", verb: "get", resource: "pods", namespace: "default", want: policy.LevelRequest},
		{name: "list deployments", user: "alice", verb: "list", group: "apps", resource: "deployments", want: policy.LevelRequest},
		{name: "watch nodes", user: "alice", verb: "watch", resource: "nodes", want: policy.LevelRequest},
		{name: "get non-resource URL", user: "alice", verb: "get", path: "/apis", want: policy.LevelRequest},
		// RequestResponse.
		{name: "create deployment", user: "alice", verb: "create", group: "apps", resource: "deployments", namespace: "default", want: policy.LevelRequestResponse},
		{name: "delete pod", user: "alice", verb: "delete", resource: "pods", namespace: "default", want: policy.LevelRequestResponse},
		{name: "exec", user: "alice", verb: "create", resource: "pods/exec", namespace: "default", want: policy.LevelRequestResponse},
		{name: "post non-resource URL", user: "alice", verb: "post", path: "/logs", want: policy.LevelRequestResponse},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ev := schemas.Event{
				Level: policy.LevelRequestResponse, Stage: "ResponseComplete", Verb: tc.verb,
				RequestURI: tc.path,
				User:       schemas.UserInfo{Username: tc.user, Groups: tc.groups},
			}
			if tc.resource != "" {
				res, sub, _ := strings.Cut(tc.resource, "/")
				ev.ObjectRef = &schemas.ObjectReference{APIGroup: tc.group, Resource: res, Subresource: sub, Namespace: tc.namespace, Name: "x"}
				ev.RequestURI = "/api/v1/whatever"
			}
			d, err := p.Decide(&ev)
			require.NoError(t, err)
			if tc.want == dropped {
				require.True(t, d.Drop, "want dropped, got %+v", d)
				require.Equal(t, policy.DropLevelNone, d.Reason)
				require.NotEqual(t, policy.NoRule, d.Rule, "dropped by the default, not by a rule")
				return
			}
			require.False(t, d.Drop, "dropped by rule %d", d.Rule)
			require.Equal(t, tc.want, d.Level)
		})
	}
}

func TestTKEDefaultPolicyOmitsRequestReceived(t *testing.T) {
	p := loadPolicy(t, "tke-default.yaml")
	ev := readEvent(t, "create_deployment.json")
	ev.Stage = "RequestReceived"
	d, err := p.Decide(&ev)
	require.NoError(t, err)
	require.True(t, d.Drop)
	require.Equal(t, policy.DropOmitStage, d.Reason)
}

func TestShippedPoliciesLoad(t *testing.T) {
	files, err := filepath.Glob("../policies/*.yaml")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range files {
		p, err := policy.LoadFile(f)
		require.NoError(t, err)
		require.Equal(t, f, p.Name())
		require.Positive(t, p.Rules())
	}
}

func TestLeanPolicy(t *testing.T) {
	p := loadPolicy(t, "lean.yaml")
	for _, tc := range []struct {
		file string
		want string // "" for dropped
	}{
		{"create_deployment.json", policy.LevelMetadata},
		{"create_clusterrolebinding.json", policy.LevelRequest},
		{"create_secret.json", policy.LevelMetadata},
		{"create_nginx_pod_unsensitive_mount.json", ""}, // a node reading a pod
		{"exec_pod.json", policy.LevelMetadata},
	} {
		ev := readEvent(t, tc.file)
		d, err := p.Apply(&ev)
		require.NoError(t, err, tc.file)
		if tc.want == "" {
			require.True(t, d.Drop, tc.file)
			continue
		}
		require.False(t, d.Drop, tc.file)
		require.Equal(t, tc.want, ev.Level, tc.file)
		require.Nil(t, ev.ResponseObject, tc.file)
	}
}

func TestLoadIsStrict(t *testing.T) {
	for _, tc := range []struct {
		name, policy string
		want         []string // substrings of the error
	}{
		{
			name: "unknown top-level key",
			policy: `apiVersion: audit.k8s.io/v1
kind: Policy
omitStage: ["RequestReceived"]
rules:
- level: Metadata
`,
			want: []string{"test.yaml", `unknown field "omitStage"`},
		},
		{
			name: "unknown rule key",
			policy: `apiVersion: audit.k8s.io/v1
kind: Policy
rules:
- level: Metadata
  verb: ["get"]
`,
			want: []string{"test.yaml", `unknown field "rules[0].verb"`},
		},
		{
			name: "duplicate key",
			policy: `apiVersion: audit.k8s.io/v1
kind: Policy
rules:
- level: Metadata
  level: None
`,
			want: []string{"test.yaml", "level"},
		},
		{
			name: "invalid level names the rule",
			policy: `apiVersion: audit.k8s.io/v1
kind: Policy
rules:
- level: None
- level: Everything
`,
			want: []string{"test.yaml", "rules[1].level"},
		},
		{
			name: "wrong apiVersion",
			policy: `apiVersion: audit.k8s.io/v9
kind: Policy
rules:
- level: None
`,
			want: []string{"test.yaml"},
		},
		{name: "empty", policy: "\n", want: []string{"test.yaml", "empty"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := policy.Load("test.yaml", []byte(tc.policy))
			require.Error(t, err)
			for _, w := range tc.want {
				require.Contains(t, err.Error(), w)
			}
		})
	}
	_, err := policy.LoadFile(filepath.Join(t.TempDir(), "missing.yaml"))
	require.ErrorContains(t, err, "missing.yaml")
}

// TestNeverRaisesLevel runs every bare fixture through a policy that asks
// for RequestResponse: events recorded at a lower level keep their level
// and their (absent) bodies.
func TestNeverRaisesLevel(t *testing.T) {
	p := mustLoad(t, `apiVersion: audit.k8s.io/v1
kind: Policy
rules:
- level: RequestResponse
`)
	files, err := filepath.Glob(filepath.Join(fixtures, "*.json"))
	require.NoError(t, err)
	seen := map[string]int{}
	for _, f := range files {
		switch filepath.Base(f) {
		case "fal_01_003.json", "create_configmap_sensitive_values.json":
			continue // not one event
		}
		ev := readEvent(t, filepath.Base(f))
		orig := ev.Level
		d, err := p.Apply(&ev)
		require.NoError(t, err, f)
		require.False(t, d.Drop, f)
		require.Equal(t, 0, d.Rule)
		require.Equal(t, policy.LevelRequestResponse, d.PolicyLevel)
		require.Equal(t, orig, ev.Level, f)
		seen[orig]++
	}
	// The fixtures cover all three recorded levels.
	require.Len(t, seen, 3, "%v", seen)
}

func TestLowersLevelAndStripsBodies(t *testing.T) {
	for _, tc := range []struct {
		level            string
		wantReq, wantRes bool
	}{
		{policy.LevelMetadata, false, false},
		{policy.LevelRequest, true, false},
		{policy.LevelRequestResponse, true, true},
	} {
		p := mustLoad(t, "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: "+tc.level+"\n")
		ev := readEvent(t, "create_clusterrole.json")
		require.Equal(t, policy.LevelRequestResponse, ev.Level)
		require.NotEmpty(t, ev.RequestObject)
		require.NotEmpty(t, ev.ResponseObject)
		d, err := p.Apply(&ev)
		require.NoError(t, err)
		require.Equal(t, tc.level, d.Level)
		require.Equal(t, tc.level, ev.Level)
		require.Equal(t, tc.wantReq, ev.RequestObject != nil, tc.level)
		require.Equal(t, tc.wantRes, ev.ResponseObject != nil, tc.level)
	}
}

func TestOmitStages(t *testing.T) {
	p := mustLoad(t, `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: Metadata
  resources: [{group: "", resources: ["pods/exec"]}]
  omitStages: ["ResponseStarted"]
- level: Request
`)
	for _, tc := range []struct {
		file, stage string
		drop        bool
	}{
		{"exec_pod.json", "ResponseStarted", true},           // rule's own omitStages
		{"exec_pod.json", "RequestReceived", true},           // policy-wide omitStages
		{"exec_pod.json", "ResponseComplete", false},         // not omitted
		{"create_deployment.json", "ResponseStarted", false}, // other rule
		{"create_deployment.json", "RequestReceived", true},
		{"create_deployment.json", "Panic", false},
	} {
		ev := readEvent(t, tc.file)
		ev.Stage = tc.stage
		d, err := p.Apply(&ev)
		require.NoError(t, err)
		require.Equal(t, tc.drop, d.Drop, "%s %s", tc.file, tc.stage)
		if tc.drop {
			require.Equal(t, policy.DropOmitStage, d.Reason)
		}
	}
}

func TestNoRuleMatchedDrops(t *testing.T) {
	p := mustLoad(t, `apiVersion: audit.k8s.io/v1
kind: Policy
rules:
- level: Metadata
  users: ["bob"]
`)
	ev := readEvent(t, "create_deployment.json")
	d, err := p.Decide(&ev)
	require.NoError(t, err)
	require.Equal(t, policy.Decision{Drop: true, Reason: policy.DropLevelNone, PolicyLevel: policy.LevelNone, Rule: policy.NoRule}, d)
}

func TestUnknownEventLevel(t *testing.T) {
	p := loadPolicy(t, "tke-default.yaml")
	ev := readEvent(t, "create_deployment.json")
	ev.Level = "Everything"
	_, err := p.Apply(&ev)
	require.ErrorContains(t, err, `"Everything"`)
}

func TestAttributes(t *testing.T) {
	ev := readEvent(t, "exec_pod.json")
	ev.User.UID = "u1"
	ev.User.Extra = map[string][]string{"scopes": {"a"}}
	a := policy.Attributes(&ev)
	require.True(t, a.ResourceRequest)
	require.Equal(t, "minikube-user", a.User.GetName())
	require.Equal(t, "u1", a.User.GetUID())
	require.Equal(t, []string{"system:masters", "system:authenticated"}, a.User.GetGroups())
	require.Equal(t, map[string][]string{"scopes": {"a"}}, a.User.GetExtra())
	require.Equal(t, "create", a.Verb)
	require.Equal(t, "default", a.Namespace)
	require.Equal(t, "pods", a.Resource)
	require.Equal(t, "exec", a.Subresource)
	require.Equal(t, "v1", a.APIVersion)
	require.Equal(t, "nginx-deployment-7998647bdf-phvq7", a.Name)
	require.Equal(t, "/api/v1/namespaces/default/pods/nginx-deployment-7998647bdf-phvq7/exec", a.Path)

	nr := policy.Attributes(&schemas.Event{Verb: "get", RequestURI: "/healthz?verbose"})
	require.False(t, nr.ResourceRequest)
	require.Equal(t, "/healthz", nr.Path)
}
