package enrich_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/auditpipe/auditpipe/internal/fleet"
	"github.com/auditpipe/auditpipe/processor/enrich"
	"github.com/auditpipe/auditpipe/schemas"
	"github.com/stretchr/testify/require"
)

const fixtures = "../../testdata/public-audit"

// event reads line (0-based) of a public fixture.
func event(tb testing.TB, file string, line int) schemas.Event {
	tb.Helper()
	f, err := os.Open(filepath.Join(fixtures, file))
	require.NoError(tb, err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for i := 0; sc.Scan(); i++ {
		if i == line {
			var ev schemas.Event
			require.NoError(tb, json.Unmarshal(sc.Bytes(), &ev))
			return ev
		}
	}
	require.NoError(tb, sc.Err())
	tb.Fatalf("%s has no line %d", file, line)
	return schemas.Event{}
}

func ms(f float64) *float64 { return &f }

// TestFillOnPublicFixtures checks every enrichment field on real events.
func TestFillOnPublicFixtures(t *testing.T) {
	cases := []struct {
		file string
		line int
		want schemas.Pipeline
	}{{
		file: "falco/exec_pod.json",
		want: schemas.Pipeline{Principal: &schemas.Principal{Type: "human"}, Operation: "exec", Outcome: "success",
			LatencyMs: ms(35.798), SourceIP: "192.168.99.1", SourceIPType: "private"},
	}, {
		file: "falco/attach_pod.json",
		want: schemas.Pipeline{Principal: &schemas.Principal{Type: "human"}, Operation: "exec", Outcome: "success"},
	}, {
		file: "falco/create_clusterrolebinding.json",
		want: schemas.Pipeline{Principal: &schemas.Principal{Type: "human"}, Operation: "rbac", Outcome: "success", LatencyMs: ms(7.271)},
	}, {
		file: "falco/delete_clusterrole.json",
		want: schemas.Pipeline{Principal: &schemas.Principal{Type: "human"}, Operation: "rbac"},
	}, {
		file: "falco/delete_secret.json",
		want: schemas.Pipeline{Principal: &schemas.Principal{Type: "human"}, Operation: "delete", Outcome: "success", LatencyMs: ms(4.464)},
	}, {
		file: "falco/create_deployment.json",
		want: schemas.Pipeline{Principal: &schemas.Principal{Type: "human"}, Operation: "write", Outcome: "success"},
	}, {
		file: "falco/anonymous_creates_namespace_foo.json",
		want: schemas.Pipeline{Principal: &schemas.Principal{Type: "anonymous"}, Operation: "write", Outcome: "success"},
	}, {
		file: "falco/create_service_account_token_secret.json",
		want: schemas.Pipeline{Principal: &schemas.Principal{Type: "control-plane"}, Operation: "write", SourceIP: "127.0.0.1", SourceIPType: "loopback"},
	}, {
		file: "falco/create_nginx_pod_unsensitive_mount.json",
		want: schemas.Pipeline{Principal: &schemas.Principal{Type: "node", Name: "minikube"}},
	}, {
		file: "falco/create_nginx_pod_hostnetwork.json",
		want: schemas.Pipeline{Principal: &schemas.Principal{Type: "serviceaccount", Namespace: "kube-system", Name: "replicaset-controller"}},
	}, {
		// GKE spells the core group "core"; a 404 is a failure.
		file: "stackdriver-webhook-bridge/k8s_audit_events/delete_service_failed_not_found.json",
		want: schemas.Pipeline{Principal: &schemas.Principal{Type: "human"}, Operation: "delete", Outcome: "failed",
			LatencyMs: ms(0), SourceIP: "146.74.94.74", SourceIPType: "public"},
	}, {
		file: "stackdriver-webhook-bridge/k8s_audit_events/exec_pod.json",
		want: schemas.Pipeline{Operation: "exec"},
	}, {
		// system:admin impersonating bob, forbidden, over IPv6 loopback.
		file: "audit2rbac/demo.v1.jsonl",
		want: schemas.Pipeline{Principal: &schemas.Principal{Type: "human"}, Impersonated: &schemas.Principal{Type: "human"},
			Operation: "read", Outcome: "denied", SourceIP: "::1", SourceIPType: "loopback"},
	}}
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			ev := event(t, tc.file, tc.line)
			var got schemas.Pipeline
			enrich.Fill(&got, &ev)
			w := tc.want
			if w.Principal != nil {
				require.Equal(t, w.Principal, got.Principal)
			}
			if w.Impersonated != nil {
				require.Equal(t, w.Impersonated, got.Impersonated)
			}
			if w.Operation != "" {
				require.Equal(t, w.Operation, got.Operation)
			}
			if w.Outcome != "" {
				require.Equal(t, w.Outcome, got.Outcome)
			}
			if w.LatencyMs != nil {
				require.NotNil(t, got.LatencyMs)
				require.InDelta(t, *w.LatencyMs, *got.LatencyMs, 1e-9)
			}
			if w.SourceIP != "" {
				require.Equal(t, w.SourceIP, got.SourceIP)
				require.Equal(t, w.SourceIPType, got.SourceIPType)
			}
		})
	}
}

func TestAudit2rbacImpersonatedServiceAccount(t *testing.T) {
	// Every impersonation of sa1 in the audit2rbac demo log.
	f, err := os.ReadFile(filepath.Join(fixtures, "audit2rbac/demo.v1.jsonl"))
	require.NoError(t, err)
	n := 0
	for line := range splitLines(f) {
		var ev schemas.Event
		require.NoError(t, json.Unmarshal(line, &ev))
		if ev.ImpersonatedUser == nil || ev.ImpersonatedUser.Username != "system:serviceaccount:ns1:sa1" {
			continue
		}
		var p schemas.Pipeline
		enrich.Fill(&p, &ev)
		require.Equal(t, &schemas.Principal{Type: "serviceaccount", Namespace: "ns1", Name: "sa1"}, p.Impersonated)
		n++
	}
	require.Positive(t, n)
}

func splitLines(b []byte) func(func([]byte) bool) {
	return func(yield func([]byte) bool) {
		sc := bufio.NewScanner(bytesReader(b))
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			if len(sc.Bytes()) > 0 && !yield(sc.Bytes()) {
				return
			}
		}
	}
}

func TestClassifyUser(t *testing.T) {
	cases := []struct {
		user schemas.UserInfo
		want schemas.Principal
	}{
		{schemas.UserInfo{}, schemas.Principal{Type: "unauthenticated"}},
		{schemas.UserInfo{Username: "system:anonymous", Groups: []string{"system:unauthenticated"}}, schemas.Principal{Type: "anonymous"}},
		{schemas.UserInfo{Username: "x", Groups: []string{"system:unauthenticated"}}, schemas.Principal{Type: "unauthenticated"}},
		{schemas.UserInfo{Username: "system:serviceaccount:kube-system:coredns"}, schemas.Principal{Type: "serviceaccount", Namespace: "kube-system", Name: "coredns"}},
		{schemas.UserInfo{Username: "system:serviceaccount:broken"}, schemas.Principal{Type: "human"}},
		{schemas.UserInfo{Username: "system:node:ip-10-0-0-1"}, schemas.Principal{Type: "node", Name: "ip-10-0-0-1"}},
		{schemas.UserInfo{Username: "kubelet", Groups: []string{"system:nodes"}}, schemas.Principal{Type: "node"}},
		{schemas.UserInfo{Username: "system:kube-proxy"}, schemas.Principal{Type: "node"}},
		{schemas.UserInfo{Username: "system:kube-scheduler"}, schemas.Principal{Type: "control-plane"}},
		{schemas.UserInfo{Username: "system:apiserver"}, schemas.Principal{Type: "control-plane"}},
		{schemas.UserInfo{Username: "alice@example.com", Groups: []string{"system:authenticated"}}, schemas.Principal{Type: "human"}},
	}
	for _, tc := range cases {
		require.Equal(t, tc.want, enrich.ClassifyUser(tc.user), "%+v", tc.user)
	}
}

func TestOperationAndOutcome(t *testing.T) {
	ref := func(group, res, sub string) *schemas.ObjectReference {
		return &schemas.ObjectReference{APIGroup: group, Resource: res, Subresource: sub}
	}
	ops := []struct {
		verb string
		ref  *schemas.ObjectReference
		want string
	}{
		{"get", nil, "other"},
		{"watch", ref("", "pods", ""), "read"},
		{"create", ref("", "pods", "portforward"), "exec"},
		{"get", ref("", "pods", "exec"), "exec"},
		{"get", ref("rbac.authorization.k8s.io", "roles", ""), "read"},
		{"bind", ref("rbac.authorization.k8s.io", "clusterroles", ""), "rbac"},
		{"patch", ref("rbac.authorization.k8s.io", "rolebindings", ""), "rbac"},
		{"create", ref("authentication.k8s.io", "tokenreviews", ""), "auth-check"},
		{"create", ref("authorization.k8s.io", "selfsubjectaccessreviews", ""), "auth-check"},
		{"deletecollection", ref("", "events", ""), "delete"},
		{"impersonate", ref("", "users", ""), "other"},
	}
	for _, tc := range ops {
		require.Equal(t, tc.want, enrich.Operation(&schemas.Event{Verb: tc.verb, ObjectRef: tc.ref}), "%s %+v", tc.verb, tc.ref)
	}
	outcomes := []struct {
		ev   schemas.Event
		want string
	}{
		{schemas.Event{Stage: "RequestReceived"}, "unknown"},
		{schemas.Event{Stage: "ResponseComplete", ResponseStatus: &schemas.Status{Code: 200}}, "success"},
		{schemas.Event{Stage: "ResponseComplete", ResponseStatus: &schemas.Status{Code: 401}}, "denied"},
		{schemas.Event{Stage: "ResponseComplete", ResponseStatus: &schemas.Status{Code: 500}}, "failed"},
		{schemas.Event{Stage: "Panic"}, "failed"},
		// The decision wins over a code an admission webhook rewrote.
		{schemas.Event{Stage: "ResponseComplete", ResponseStatus: &schemas.Status{Code: 500}, Annotations: map[string]string{enrich.DecisionAnnotation: "forbid"}}, "denied"},
	}
	for _, tc := range outcomes {
		require.Equal(t, tc.want, enrich.Outcome(&tc.ev), "%+v", tc.ev)
	}
}

func TestLatencyAndIP(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	_, ok := enrich.LatencyMs(&schemas.Event{StageTimestamp: t0})
	require.False(t, ok, "missing received timestamp")
	_, ok = enrich.LatencyMs(&schemas.Event{RequestReceivedTimestamp: t0.Add(time.Second), StageTimestamp: t0})
	require.False(t, ok, "out of order")
	l, ok := enrich.LatencyMs(&schemas.Event{RequestReceivedTimestamp: t0, StageTimestamp: t0.Add(1500 * time.Microsecond)})
	require.True(t, ok)
	require.InDelta(t, 1.5, l, 1e-9)

	for ip, want := range map[string]string{
		"10.1.2.3": "private", "172.16.0.1": "private", "192.168.1.1": "private", "100.64.0.9": "private",
		"fd00::1": "private", "127.0.0.1": "loopback", "::ffff:127.0.0.1": "loopback", "169.254.169.254": "link-local",
		"8.8.8.8": "public", "2001:4860::8888": "public", "not-an-ip": "invalid",
	} {
		require.Equal(t, want, enrich.IPType(ip), ip)
	}
}

func TestCluster(t *testing.T) {
	require.Nil(t, enrich.Cluster(fleet.Cluster{}, false))
	require.Equal(t, &schemas.ClusterInfo{DisplayName: "Prod", Region: "eu", Environment: "production", Owner: "team"},
		enrich.Cluster(fleet.Cluster{DisplayName: "Prod", Region: "eu", Environment: "production", Owner: "team", Policy: "x"}, true))
}

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }
