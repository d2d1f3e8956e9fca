package detect_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/auditpipe/auditpipe/processor/detect"
	"github.com/auditpipe/auditpipe/schemas"
	"github.com/stretchr/testify/require"
)

const fixtures = "../../testdata/public-audit"

func defaultSet(tb testing.TB) *detect.Set {
	tb.Helper()
	s, err := detect.LoadDefault("")
	require.NoError(tb, err)
	return s
}

// readEvents parses a fixture: one JSON event, or JSON lines.
func readEvents(tb testing.TB, path string) []schemas.Event {
	tb.Helper()
	b, err := os.ReadFile(path)
	require.NoError(tb, err)
	var ev schemas.Event
	if err := json.Unmarshal(b, &ev); err == nil {
		return []schemas.Event{ev}
	}
	var out []schemas.Event
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 8<<20)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var ev schemas.Event
		require.NoError(tb, json.Unmarshal(line, &ev), path)
		out = append(out, ev)
	}
	require.NoError(tb, sc.Err())
	return out
}

func ids(rules []*detect.Rule) []string {
	out := []string{}
	for _, r := range rules {
		out = append(out, r.ID)
	}
	sort.Strings(out)
	return out
}

// The expected matches come from what each Falco trace contains (its file
// name, checked against its body by hand), not from running the rules.
var falcoExpected = map[string][]string{
	"anonymous_creates_namespace_foo.json":                                   {"anonymous-allowed"},
	"attach_cluster_admin_role.json":                                         {"cluster-admin-binding"},
	"attach_pod.json":                                                        {"exec-into-pod"},
	"create_cluster_role_pod_exec.json":                                      nil,
	"create_cluster_role_wildcard_resources.json":                            {"wildcard-role"},
	"create_cluster_role_wildcard_verbs.json":                                {"wildcard-role"},
	"create_cluster_role_write_privileges.json":                              nil,
	"create_clusterrole.json":                                                nil,
	"create_clusterrolebinding.json":                                         nil, // binds system:basic-user
	"create_configmap.json":                                                  nil,
	"create_configmap_no_sensitive_values.json":                              nil,
	"create_configmap_sensitive_values.json":                                 nil,
	"create_deployment.json":                                                 nil,
	"create_kube_system_secret.json":                                         {"kube-system-change"}, // by user "admin"
	"create_nginx_pod_hostnetwork.json":                                      {"host-namespace-pod"},
	"create_nginx_pod_no_secctx_1st_container_privileged_2nd_container.json": {"privileged-pod"},
	"create_nginx_pod_nohostnetwork.json":                                    nil,
	"create_nginx_pod_privileged.json":                                       {"privileged-pod"},
	"create_nginx_pod_privileged_2nd_container.json":                         {"privileged-pod"},
	"create_nginx_pod_sensitive_mount.json":                                  {"sensitive-mount"},
	"create_nginx_pod_sensitive_mount_2nd_container.json":                    {"sensitive-mount"},
	"create_nginx_pod_unprivileged.json":                                     nil,
	"create_nginx_pod_unsensitive_mount.json":                                nil,
	"create_nginx_service_nodeport.json":                                     {"nodeport-service"},
	"create_nginx_service_nonodeport.json":                                   nil,
	"create_pod_kube_public_namespace.json":                                  nil,
	"create_pod_kube_system_namespace.json":                                  nil, // by kube-system's replicaset-controller
	"create_secret.json":                                                     nil, // a write, not a read
	"create_service.json":                                                    nil,
	"create_service_account_token_secret.json":                               nil,
	"create_serviceaccount.json":                                             nil,
	"create_serviceaccount_kube_public_namespace.json":                       nil,
	"create_serviceaccount_kube_system_namespace.json":                       {"kube-system-change"}, // by minikube-user
	"delete_cluster_role_kube_aggregator.json":                               nil,
	"delete_clusterrole.json":                                                nil,
	"delete_clusterrolebinding.json":                                         nil,
	"delete_configmap.json":                                                  nil,
	"delete_deployment.json":                                                 nil,
	"delete_namespace_foo.json":                                              nil,
	"delete_secret.json":                                                     nil,
	"delete_service.json":                                                    nil,
	"delete_serviceaccount.json":                                             nil,
	"exec_pod.json":                                                          {"exec-into-pod"},
	"minikube_creates_namespace_foo.json":                                    nil,
	"modify_cluster_role_node_problem_detector.json":                         nil,
	"some-user_creates_namespace_foo.json":                                   nil,
}

func TestDefaultRulesOnFalcoTraces(t *testing.T) {
	set := defaultSet(t)
	files, err := filepath.Glob(filepath.Join(fixtures, "falco", "*.json"))
	require.NoError(t, err)
	covered := map[string]bool{}
	for _, f := range files {
		name := filepath.Base(f)
		if name == "fal_01_003.json" {
			continue // a malformed-input case, not an event
		}
		want, ok := falcoExpected[name]
		require.True(t, ok, "no expectation for %s", name)
		if want == nil {
			want = []string{}
		}
		for _, ev := range readEvents(t, f) {
			got, errs := set.Evaluate(&ev, &schemas.Pipeline{Cluster: "c1"})
			require.Empty(t, errs, name)
			require.Equal(t, want, ids(got), name)
			for _, id := range want {
				covered[id] = true
			}
		}
	}
	// Every shipped rule that a Falco trace can show has a positive case.
	for _, id := range set.Enabled() {
		switch id {
		case "secret-read-by-human", "auditid-reused":
			continue // no trace of these; constructed cases below
		}
		require.True(t, covered[id], "no Falco trace matched %s", id)
	}
}

func TestDefaultRulesQuietOnAudit2rbac(t *testing.T) {
	set := defaultSet(t)
	for _, name := range []string{"demo.v1.jsonl", "demo-original-2017.v1beta1.jsonl"} {
		evs := readEvents(t, filepath.Join(fixtures, "audit2rbac", name))
		require.NotEmpty(t, evs)
		for _, ev := range evs {
			got, errs := set.Evaluate(&ev, nil)
			require.Empty(t, errs, ev.AuditID)
			require.Empty(t, ids(got), "%s %s %s %s", name, ev.AuditID, ev.Verb, ev.RequestURI)
		}
	}
}

// ev builds an event: a successful request of user at ResponseComplete,
// changed by the options.
type evOpt func(*schemas.Event)

func build(verb, resource string, opts ...evOpt) *schemas.Event {
	ev := &schemas.Event{Kind: "Event", APIVersion: "audit.k8s.io/v1", Level: "RequestResponse", AuditID: "a1",
		Stage: "ResponseComplete", Verb: verb, RequestURI: "/api/v1/" + resource,
		User:           schemas.UserInfo{Username: "jane@example.com", Groups: []string{"system:authenticated"}},
		ObjectRef:      &schemas.ObjectReference{Resource: resource, Namespace: "default", APIVersion: "v1"},
		ResponseStatus: &schemas.Status{Code: 200},
		Annotations:    map[string]string{"authorization.k8s.io/decision": "allow"}}
	for _, o := range opts {
		o(ev)
	}
	return ev
}

func user(name string, groups ...string) evOpt {
	return func(ev *schemas.Event) { ev.User = schemas.UserInfo{Username: name, Groups: groups} }
}
func ns(n string) evOpt    { return func(ev *schemas.Event) { ev.ObjectRef.Namespace = n } }
func sub(s string) evOpt   { return func(ev *schemas.Event) { ev.ObjectRef.Subresource = s } }
func group(g string) evOpt { return func(ev *schemas.Event) { ev.ObjectRef.APIGroup = g } }
func stage(s string) evOpt { return func(ev *schemas.Event) { ev.Stage = s } }
func code(c int32) evOpt   { return func(ev *schemas.Event) { ev.ResponseStatus.Code = c } }
func uri(u string) evOpt   { return func(ev *schemas.Event) { ev.RequestURI = u; ev.ObjectRef = nil } }
func decision(d string) evOpt {
	return func(ev *schemas.Event) { ev.Annotations["authorization.k8s.io/decision"] = d }
}
func req(body string) evOpt {
	return func(ev *schemas.Event) { ev.RequestObject = json.RawMessage(body) }
}
func metadataLevel() evOpt {
	return func(ev *schemas.Event) { ev.Level = "Metadata"; ev.RequestObject = nil }
}

func pod(spec string) string {
	return `{"kind":"Pod","apiVersion":"v1","metadata":{"name":"p"},"spec":` + spec + `}`
}

func TestDefaultRulesOnConstructedEvents(t *testing.T) {
	set := defaultSet(t)
	const sa = "system:serviceaccount:ci:deployer"
	cases := []struct {
		name string
		ev   *schemas.Event
		pl   *schemas.Pipeline
		want []string
	}{
		// exec-into-pod
		{"exec started", build("create", "pods", sub("exec"), stage("ResponseStarted"), code(101)), nil, []string{"exec-into-pod"}},
		{"attach started", build("create", "pods", sub("attach"), stage("ResponseStarted"), code(101)), nil, []string{"exec-into-pod"}},
		{"exec complete is the same request", build("create", "pods", sub("exec"), code(101)), nil, nil},
		{"port-forward", build("create", "pods", sub("portforward"), stage("ResponseStarted")), nil, nil},
		{"pod log", build("get", "pods", sub("log"), stage("ResponseStarted")), nil, nil},

		// privileged-pod
		{"privileged init container", build("create", "pods", req(pod(`{"initContainers":[{"name":"i","securityContext":{"privileged":true}}],"containers":[{"name":"c"}]}`))), nil, []string{"privileged-pod"}},
		{"privileged third container", build("create", "pods", req(pod(`{"containers":[{"name":"a"},{"name":"b","securityContext":{}},{"name":"c","securityContext":{"privileged":true}}]}`))), nil, []string{"privileged-pod"}},
		{"privileged ephemeral container", build("patch", "pods", sub("ephemeralcontainers"), req(`{"spec":{"ephemeralContainers":[{"name":"debugger","securityContext":{"privileged":true}}]}}`)), nil, []string{"privileged-pod"}},
		{"privileged false", build("create", "pods", req(pod(`{"containers":[{"name":"a","securityContext":{"privileged":false}}]}`))), nil, nil},
		{"privileged string is not true", build("create", "pods", req(pod(`{"containers":[{"name":"a","securityContext":{"privileged":"true"}}]}`))), nil, nil},
		{"pod create at Metadata has no body", build("create", "pods", metadataLevel()), nil, nil},
		{"privileged pod read back", build("get", "pods", req(pod(`{"containers":[{"name":"a","securityContext":{"privileged":true}}]}`))), nil, nil},
		{"privileged deployment template is not a pod", build("create", "deployments", group("apps"), req(`{"kind":"Deployment","spec":{"template":{"spec":{"containers":[{"name":"a","securityContext":{"privileged":true}}]}}}}`)), nil, nil},

		// host-namespace-pod
		{"hostPID", build("create", "pods", req(pod(`{"hostPID":true,"containers":[{"name":"a"}]}`))), nil, []string{"host-namespace-pod"}},
		{"hostIPC", build("create", "pods", req(pod(`{"hostIPC":true,"containers":[{"name":"a"}]}`))), nil, []string{"host-namespace-pod"}},
		{"hostNetwork false", build("create", "pods", req(pod(`{"hostNetwork":false,"containers":[{"name":"a"}]}`))), nil, nil},

		// sensitive-mount
		{"docker socket", build("create", "pods", req(pod(`{"volumes":[{"name":"s","hostPath":{"path":"/var/run/docker.sock","type":"Socket"}}],"containers":[{"name":"a"}]}`))), nil, []string{"sensitive-mount"}},
		{"under /proc, unclean", build("create", "pods", req(pod(`{"volumes":[{"name":"e","emptyDir":{}},{"name":"s","hostPath":{"path":"/proc//sys/"}}],"containers":[{"name":"a"}]}`))), nil, []string{"sensitive-mount"}},
		{"host root", build("create", "pods", req(pod(`{"volumes":[{"name":"s","hostPath":{"path":"/"}}],"containers":[{"name":"a"}]}`))), nil, []string{"sensitive-mount"}},
		{"data dir", build("create", "pods", req(pod(`{"volumes":[{"name":"s","hostPath":{"path":"/data/cache"}}],"containers":[{"name":"a"}]}`))), nil, nil},
		{"prefix of a name is not a parent", build("create", "pods", req(pod(`{"volumes":[{"name":"s","hostPath":{"path":"/etcd-backup"}}],"containers":[{"name":"a"}]}`))), nil, nil},

		// cluster-admin-binding
		{"namespaced binding to cluster-admin", build("create", "rolebindings", group("rbac.authorization.k8s.io"), req(`{"roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"cluster-admin"},"subjects":[{"kind":"User","name":"eve"}]}`)), nil, []string{"cluster-admin-binding"}},
		{"binding to a Role named cluster-admin", build("create", "rolebindings", group("rbac.authorization.k8s.io"), req(`{"roleRef":{"kind":"Role","name":"cluster-admin"}}`)), nil, nil},
		{"binding to cluster-admin-lite", build("create", "clusterrolebindings", group("rbac.authorization.k8s.io"), ns(""), req(`{"roleRef":{"kind":"ClusterRole","name":"cluster-admin-lite"}}`)), nil, nil},

		// wildcard-role
		{"role with * verbs", build("update", "roles", group("rbac.authorization.k8s.io"), req(`{"rules":[{"apiGroups":[""],"resources":["pods"],"verbs":["get"]},{"apiGroups":["apps"],"resources":["deployments"],"verbs":["*"]}]}`)), nil, []string{"wildcard-role"}},
		{"apiserver reconciling cluster-admin", build("update", "clusterroles", group("rbac.authorization.k8s.io"), ns(""), user("system:apiserver", "system:masters"), req(`{"rules":[{"apiGroups":["*"],"resources":["*"],"verbs":["*"]}]}`)), nil, nil},
		{"role with a resource ending in *", build("create", "roles", group("rbac.authorization.k8s.io"), req(`{"rules":[{"apiGroups":[""],"resources":["pods/*"],"verbs":["get"]}]}`)), nil, nil},

		// anonymous-allowed
		{"anonymous reads secrets", build("list", "secrets", user("system:anonymous", "system:unauthenticated")), nil, []string{"anonymous-allowed"}},
		{"unauthenticated group", build("get", "configmaps", user("someone", "system:unauthenticated")), nil, []string{"anonymous-allowed"}},
		{"anonymous healthz", build("get", "", user("system:anonymous", "system:unauthenticated"), uri("/healthz")), nil, nil},
		{"anonymous readyz verbose", build("get", "", user("system:anonymous", "system:unauthenticated"), uri("/readyz?verbose")), nil, nil},
		{"anonymous livez check", build("get", "", user("system:anonymous", "system:unauthenticated"), uri("/livez/ping")), nil, nil},
		{"anonymous version", build("get", "", user("system:anonymous", "system:unauthenticated"), uri("/version")), nil, nil},
		{"anonymous metrics", build("get", "", user("system:anonymous", "system:unauthenticated"), uri("/metrics")), nil, []string{"anonymous-allowed"}},
		{"anonymous denied", build("list", "pods", user("system:anonymous", "system:unauthenticated"), decision("forbid"), code(403)), nil, nil},

		// secret-read-by-human
		{"human gets a secret", build("get", "secrets"), nil, []string{"secret-read-by-human"}},
		{"human watches secrets", build("watch", "secrets"), nil, []string{"secret-read-by-human"}},
		{"service account gets a secret", build("get", "secrets", user(sa)), nil, nil},
		{"node gets a secret", build("get", "secrets", user("system:node:n1", "system:nodes")), nil, nil},
		{"human denied a secret", build("get", "secrets", decision("forbid"), code(403)), nil, nil},
		{"human reads configmaps", build("get", "configmaps"), nil, nil},

		// kube-system-change
		{"service account of another namespace patches kube-system", build("patch", "configmaps", ns("kube-system"), user(sa)), nil, []string{"kube-system-change"}},
		{"human deletes in kube-system", build("delete", "pods", ns("kube-system")), nil, []string{"kube-system-change"}},
		{"kube-system's own controller", build("update", "configmaps", ns("kube-system"), user("system:serviceaccount:kube-system:kube-proxy")), nil, nil},
		{"scheduler lease", build("update", "leases", ns("kube-system"), group("coordination.k8s.io"), user("system:kube-scheduler")), nil, nil},
		{"human reads kube-system", build("get", "configmaps", ns("kube-system")), nil, nil},
		{"human denied in kube-system", build("delete", "pods", ns("kube-system"), decision("forbid"), code(403)), nil, nil},

		// nodeport-service
		{"patch to NodePort", build("patch", "services", req(`{"spec":{"type":"NodePort"}}`)), nil, []string{"nodeport-service"}},
		{"LoadBalancer", build("create", "services", req(`{"spec":{"type":"LoadBalancer"}}`)), nil, nil},
		{"service at Metadata", build("create", "services", metadataLevel()), nil, nil},

		// auditid-reused
		{"reused id, any stage", build("get", "pods", stage("RequestReceived")), &schemas.Pipeline{AuditIDReused: true}, []string{"auditid-reused"}},
		{"reused id unmarked", build("get", "pods"), &schemas.Pipeline{}, nil},

		// several at once, in rule order
		{"privileged hostNetwork pod in kube-system by a human", build("create", "pods", ns("kube-system"), req(pod(`{"hostNetwork":true,"containers":[{"name":"a","securityContext":{"privileged":true}}]}`))), nil,
			[]string{"host-namespace-pod", "kube-system-change", "privileged-pod"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, errs := set.Evaluate(tc.ev, tc.pl)
			require.Empty(t, errs)
			want := slices.Clone(tc.want)
			if want == nil {
				want = []string{}
			}
			sort.Strings(want)
			require.Equal(t, want, ids(got))
		})
	}
}

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "rules.yaml")
	require.NoError(t, os.WriteFile(p, []byte(body), 0o600))
	return p
}

func TestUserRulesReplaceAndAdd(t *testing.T) {
	p := writeFile(t, `
rules:
  - id: secret-read-by-human
    description: tuned
    severity: low
    condition: objectRef.resource == "secrets" && verb == "get" && principal.type == "human"
    exceptions:
      users: [breakglass@example.com]
      namespaces: [sandbox]
  - id: ci-writes-prod
    description: CI writes
    severity: info
    condition: verb == "create"
    exceptions:
      serviceAccounts: [ci/*]
`)
	set, err := detect.LoadDefault(p)
	require.NoError(t, err)
	rules := set.Rules()
	require.Len(t, rules, len(defaultSet(t).Rules())+1)
	i := slices.IndexFunc(rules, func(r *detect.Rule) bool { return r.ID == "secret-read-by-human" })
	require.Equal(t, "low", rules[i].Severity)
	require.Equal(t, p+":3", rules[i].Source)

	got, _ := set.Evaluate(build("get", "secrets"), nil)
	require.Equal(t, []string{"secret-read-by-human"}, ids(got))
	got, _ = set.Evaluate(build("get", "secrets", user("breakglass@example.com")), nil)
	require.Empty(t, ids(got))
	got, _ = set.Evaluate(build("get", "secrets", ns("sandbox")), nil)
	require.Empty(t, ids(got))
	got, _ = set.Evaluate(build("create", "configmaps", user("system:serviceaccount:ci:bot")), nil)
	require.Empty(t, ids(got))
	got, _ = set.Evaluate(build("create", "configmaps", user("system:serviceaccount:cd:bot")), nil)
	require.Equal(t, []string{"ci-writes-prod"}, ids(got))
}

func TestOverrides(t *testing.T) {
	p := writeFile(t, `
rules:
  - id: all-creates
    description: off unless a cluster enables it
    severity: info
    enabled: false
    condition: verb == "create"
`)
	set, err := detect.LoadDefault(p)
	require.NoError(t, err)
	ev := build("create", "services", req(`{"spec":{"type":"NodePort"}}`))
	got, _ := set.Evaluate(ev, nil)
	require.Equal(t, []string{"nodeport-service"}, ids(got))

	c, err := set.WithOverrides([]string{"all-creates"}, []string{"nodeport-service"})
	require.NoError(t, err)
	got, _ = c.Evaluate(ev, nil)
	require.Equal(t, []string{"all-creates"}, ids(got))
	// The original is unchanged.
	got, _ = set.Evaluate(ev, nil)
	require.Equal(t, []string{"nodeport-service"}, ids(got))

	_, err = set.WithOverrides([]string{"no-such-rule"}, nil)
	require.ErrorContains(t, err, "no-such-rule")
	_, err = set.WithOverrides([]string{"all-creates"}, []string{"all-creates"})
	require.Error(t, err)
}

func TestLoadRejects(t *testing.T) {
	for name, tc := range map[string]struct{ body, want string }{
		"unknown key": {`rules:
  - id: r1
    description: d
    severity: low
    conditon: verb == "get"
`, `rules.yaml:5:5: rule r1: unknown key "conditon"`},
		"unknown exception key": {`rules:
  - id: r1
    description: d
    severity: low
    condition: verb == "get"
    exceptions:
      user: [x]
`, `rules.yaml:7:7: rule r1: exceptions: unknown key "user"`},
		"unknown top-level key": {"rule: []\n", `rules.yaml:1:1: unknown key "rule"`},
		"bad CEL in block": {`rules:
  - id: r1
    description: d
    severity: low
    condition: >-
      verb == "get" &&
      nosuch.field == 1
`, `rules.yaml:6: rule r1: condition: ERROR: <input>:1:18: undeclared reference to 'nosuch'`},
		"bad CEL syntax": {`rules:
  - id: r2
    description: d
    severity: low
    condition: verb ==
`, `rules.yaml:5: rule r2: condition:`},
		"not bool":            {"rules:\n  - {id: r1, description: d, severity: low, condition: verb}\n", `rules.yaml:2: rule r1: condition: evaluates to string, want bool`},
		"bad severity":        {"rules:\n  - {id: r1, description: d, severity: urgent, condition: 'true'}\n", `rule r1: severity "urgent"`},
		"bad id":              {"rules:\n  - {id: R_1, description: d, severity: low, condition: 'true'}\n", `rules.yaml:2: rule R_1: id "R_1"`},
		"bad stage":           {"rules:\n  - {id: r1, description: d, severity: low, stages: [Done], condition: 'true'}\n", `stages: "Done"`},
		"bad technique":       {"rules:\n  - {id: r1, description: d, severity: low, technique: 1611, condition: 'true'}\n", `technique "1611"`},
		"bad service account": {"rules:\n  - {id: r1, description: d, severity: low, condition: 'true', exceptions: {serviceAccounts: [ci]}}\n", `"ci": want namespace/name`},
		"duplicate id":        {"rules:\n  - {id: r1, description: d, severity: low, condition: 'true'}\n  - {id: r1, description: d, severity: low, condition: 'true'}\n", `rules.yaml:3: rule r1: id already defined at line 2`},
		"no condition":        {"rules:\n  - {id: r1, description: d, severity: low}\n", `condition: must not be empty`},
	} {
		t.Run(name, func(t *testing.T) {
			p := writeFile(t, tc.body)
			_, err := detect.LoadDefault(p)
			require.Error(t, err)
			require.Contains(t, err.Error(), p+":")
			require.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestShippedRulesDescribeThemselves(t *testing.T) {
	want := []string{"exec-into-pod", "privileged-pod", "host-namespace-pod", "sensitive-mount", "cluster-admin-binding",
		"wildcard-role", "anonymous-allowed", "secret-read-by-human", "kube-system-change", "nodeport-service", "auditid-reused"}
	set := defaultSet(t)
	require.Equal(t, want, set.Enabled())
	for _, r := range set.Rules() {
		require.True(t, strings.HasPrefix(r.Source, detect.DefaultRulesName+":"), r.ID)
		require.NotEmpty(t, r.Description, r.ID)
	}
}

func TestMalformedBodyIsAnErrorNotAMatch(t *testing.T) {
	set := defaultSet(t)
	// Bodies reach the rules validated; this one is cut short to show a
	// scanner failure surfaces as a rule error, not a panic or a match.
	ev := build("create", "pods", req(`{"spec":{"containers":[{"securityContext":{"privileged":true}`))
	got, errs := set.Evaluate(ev, nil)
	require.Empty(t, ids(got))
	require.NotEmpty(t, errs)
}

// TestHelpers exercises the CEL helpers through user rules, on a pod, a
// Deployment's and a CronJob's pod templates and RBAC bodies.
func TestHelpers(t *testing.T) {
	p := writeFile(t, `
rules:
  - id: evil-image
    description: an image from evil/
    severity: low
    condition: containers(requestObject).exists(c, c.image.startsWith("evil/"))
  - id: three-containers
    description: containers of all kinds are counted
    severity: low
    condition: size(containers(requestObject)) == 3
  - id: run-as-root
    description: a container field probe
    severity: low
    condition: 0 in containerFields(requestObject, "securityContext.runAsUser")
  - id: docker-sock
    description: volumes of the pod template
    severity: low
    condition: volumes(requestObject).exists(v, pathUnder(string(v.?hostPath.?path.orValue("")), ["/var/run/docker.sock"]))
  - id: binds-group
    description: subjects and roleRef
    severity: low
    condition: subjects(requestObject).exists(s, s.kind == "Group" && s.name == "devs") && roleRef(requestObject).name == "edit"
  - id: secrets-rule
    description: role rules
    severity: low
    condition: roleRules(requestObject).exists(r, "secrets" in r.resources)
  - id: healthz
    description: uriPath strips the query
    severity: low
    condition: uriPath(requestURI) == "/healthz"
`)
	set, err := detect.Load(detect.Source{Name: p, Data: mustRead(t, p)})
	require.NoError(t, err)
	cases := []struct {
		name string
		ev   *schemas.Event
		want []string
	}{
		{"pod with init and ephemeral containers", build("create", "pods", req(pod(`{"containers":[{"name":"a","image":"nginx"}],
			"initContainers":[{"name":"i","image":"evil/miner","securityContext":{"runAsUser":0}}],"ephemeralContainers":[{"name":"e","image":"busybox"}]}`))),
			[]string{"evil-image", "run-as-root", "three-containers"}},
		{"deployment template", build("create", "deployments", group("apps"), req(`{"kind":"Deployment","spec":{"template":{"spec":{
			"containers":[{"name":"a","image":"evil/x"}],"volumes":[{"name":"s","hostPath":{"path":"/var/run/docker.sock"}}]}}}}`)),
			[]string{"docker-sock", "evil-image"}},
		{"cronjob template", build("create", "cronjobs", group("batch"), req(`{"kind":"CronJob","spec":{"jobTemplate":{"spec":{"template":{"spec":{
			"containers":[{"name":"a","image":"evil/x","securityContext":{"runAsUser":1000}}]}}}}}}`)),
			[]string{"evil-image"}},
		{"binding", build("create", "rolebindings", group("rbac.authorization.k8s.io"), req(`{"roleRef":{"kind":"ClusterRole","name":"edit"},"subjects":[{"kind":"User","name":"x"},{"kind":"Group","name":"devs"}]}`)),
			[]string{"binds-group"}},
		{"role", build("create", "roles", group("rbac.authorization.k8s.io"), req(`{"rules":[{"resources":["pods"]},{"resources":["configmaps","secrets"],"verbs":["get"]}]}`)),
			[]string{"secrets-rule"}},
		{"no body: helpers see nothing", build("create", "pods", metadataLevel()), nil},
		{"healthz", build("get", "", uri("/healthz?verbose")), []string{"healthz"}},
	}
	for _, tc := range cases {
		got, errs := set.Evaluate(tc.ev, nil)
		require.Empty(t, errs, tc.name)
		want := tc.want
		if want == nil {
			want = []string{}
		}
		require.Equal(t, want, ids(got), tc.name)
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	return b
}
