package bench

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/auditpipe/auditpipe/processor/policies"
	"github.com/auditpipe/auditpipe/processor/policy"
	"github.com/auditpipe/auditpipe/schemas"
)

// Audit levels of the generated events.
const (
	LevelMetadata        = "Metadata"
	LevelRequest         = "Request"
	LevelRequestResponse = "RequestResponse"
)

// Target sizes of one encoded event per level: the architecture's figures
// (about 1.4 KB at Metadata; request and response bodies are over 90 % of
// a RequestResponse event).
const (
	targetRequest         = 9 << 10
	targetRequestResponse = 22 << 10
)

// Mix is the share of each level in the generated events, in percent.
type Mix struct {
	Metadata        int `json:"metadata"`
	Request         int `json:"request"`
	RequestResponse int `json:"requestResponse"`
}

// DefaultMix is mostly Metadata, as a cluster under the TKE default policy
// sends: reads of secrets and configmaps and most control-plane traffic
// stay at Metadata; writes carry bodies.
func DefaultMix() Mix { return Mix{Metadata: 70, Request: 20, RequestResponse: 10} }

// ParseMix reads "metadata=70,request=20,requestresponse=10".
func ParseMix(s string) (Mix, error) {
	var m Mix
	for _, part := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		var n int
		if _, err := fmt.Sscanf(v, "%d", &n); !ok || err != nil || n < 0 {
			return Mix{}, fmt.Errorf("mix %q: %q is not level=percent", s, part)
		}
		switch strings.ToLower(k) {
		case "metadata":
			m.Metadata = n
		case "request":
			m.Request = n
		case "requestresponse":
			m.RequestResponse = n
		default:
			return Mix{}, fmt.Errorf("mix %q: unknown level %q (want metadata, request, requestresponse)", s, k)
		}
	}
	return m, m.Validate()
}

// Validate checks that the shares add up to 100.
func (m Mix) Validate() error {
	if m.Metadata < 0 || m.Request < 0 || m.RequestResponse < 0 || m.Metadata+m.Request+m.RequestResponse != 100 {
		return fmt.Errorf("mix metadata=%d,request=%d,requestresponse=%d: shares must be non-negative and add up to 100", m.Metadata, m.Request, m.RequestResponse)
	}
	return nil
}

func (m Mix) String() string {
	return fmt.Sprintf("metadata=%d,request=%d,requestresponse=%d", m.Metadata, m.Request, m.RequestResponse)
}

// Event is one generated audit event as the apiserver would send it.
type Event struct {
	AuditID string
	Level   string
	JSON    []byte
}

// placeholderID is replaced in an encoded template by each event's
// auditID; it has the length of a UUID so sizes do not change.
const placeholderID = "00000000-0000-4000-8000-00000000beef"

// Templates are encoded events per level, shaped after the public
// fixtures, with a placeholder auditID. They are immutable once loaded, so
// one set can feed many generators.
type Templates struct {
	byLevel map[string][][]byte
}

// Generator makes events from templates. Every event gets a unique
// auditID; everything else repeats the templates, which the pipeline's
// de-duplication does not look at.
type Generator struct {
	mix   Mix
	nonce string
	next  int
	tpl   *Templates
}

// FindFixtures looks for testdata/public-audit from dir upwards, so the
// harness runs from the repository root (make bench) and from a package
// directory (go test).
func FindFixtures(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for d := abs; ; d = filepath.Dir(d) {
		cand := filepath.Join(d, "testdata", "public-audit")
		if _, err := os.Stat(filepath.Join(cand, "SOURCES.md")); err == nil {
			return cand, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("testdata/public-audit not found in %s or above it; pass --fixtures", abs)
		}
	}
}

// NewGenerator loads the templates from the fixtures under dir and returns
// a generator for mix. nonce makes auditIDs unique across runs on a shared
// broker.
func NewGenerator(dir string, mix Mix, nonce string) (*Generator, error) {
	tpl, err := LoadTemplates(dir)
	if err != nil {
		return nil, err
	}
	return tpl.Generator(mix, nonce)
}

// Generator returns a generator for mix on these templates.
func (t *Templates) Generator(mix Mix, nonce string) (*Generator, error) {
	if err := mix.Validate(); err != nil {
		return nil, err
	}
	return &Generator{mix: mix, nonce: nonce, tpl: t}, nil
}

// LoadTemplates loads the fixtures under dir and builds one set of
// templates per level. Only fixtures the TKE default policy keeps at their
// level are used, so every generated event reaches the store unchanged in
// level and end-to-end counts add up.
func LoadTemplates(dir string) (*Templates, error) {
	evs, err := loadFixtures(dir)
	if err != nil {
		return nil, err
	}
	pol, err := policy.Load(policies.TKEDefaultName, policies.TKEDefault)
	if err != nil {
		return nil, fmt.Errorf("load TKE default policy: %w", err)
	}
	g := &Templates{byLevel: map[string][][]byte{}}
	now := time.Now().UTC().Truncate(time.Microsecond)
	for i, ev := range evs {
		ev.Kind, ev.APIVersion, ev.Stage = "Event", "audit.k8s.io/v1", "ResponseComplete"
		ev.AuditID = placeholderID
		ev.RequestReceivedTimestamp = now.Add(-15 * time.Millisecond)
		ev.StageTimestamp = now
		enrich(&ev, i)

		md := ev
		md.Level, md.RequestObject, md.ResponseObject = LevelMetadata, nil, nil
		if keep(pol, &md) {
			if err := g.add(md); err != nil {
				return nil, err
			}
		}
		// Bodies are grown from pods and deployments, the objects whose
		// writes carry managedFields and last-applied annotations.
		if len(ev.RequestObject) == 0 || ev.ObjectRef == nil || (ev.ObjectRef.Resource != "pods" && ev.ObjectRef.Resource != "deployments") {
			continue
		}
		for _, level := range []string{LevelRequest, LevelRequestResponse} {
			big, err := grow(ev, level)
			if err != nil {
				return nil, fmt.Errorf("fixture %s %s: %w", ev.ObjectRef.Resource, ev.RequestURI, err)
			}
			if keep(pol, &big) {
				if err := g.add(big); err != nil {
					return nil, err
				}
			}
		}
	}
	for _, level := range []string{LevelMetadata, LevelRequest, LevelRequestResponse} {
		if len(g.byLevel[level]) == 0 {
			return nil, fmt.Errorf("fixtures in %s: no %s template the TKE default policy keeps", dir, level)
		}
	}
	return g, nil
}

func keep(pol *policy.Policy, ev *schemas.Event) bool {
	d, err := pol.Decide(ev)
	return err == nil && !d.Drop && d.Level == ev.Level
}

func (t *Templates) add(ev schemas.Event) error {
	b, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("encode template: %w", err)
	}
	t.byLevel[ev.Level] = append(t.byLevel[ev.Level], b)
	return nil
}

// levelOf spreads the mix evenly: event i of every 100 gets the level of
// its slot, so any run of 100 events has exactly the mix.
func (g *Generator) levelOf(i int) string {
	switch s := (i * 37) % 100; {
	case s < g.mix.Metadata:
		return LevelMetadata
	case s < g.mix.Metadata+g.mix.Request:
		return LevelRequest
	default:
		return LevelRequestResponse
	}
}

// Next returns n new events.
func (g *Generator) Next(n int) []Event {
	out := make([]Event, n)
	for i := range out {
		seq := g.next
		g.next++
		level := g.levelOf(seq)
		tpls := g.tpl.byLevel[level]
		id := fmt.Sprintf("%08s-%04x-4%03x-8%03x-%012x", g.nonce, (seq>>36)&0xffff, (seq>>24)&0xfff, (seq>>12)&0xfff, seq)
		out[i] = Event{AuditID: id, Level: level, JSON: bytes.Replace(tpls[seq%len(tpls)], []byte(placeholderID), []byte(id), 1)}
	}
	return out
}

// Sizes returns the mean encoded size of the templates of each level.
func (t *Templates) Sizes() map[string]int {
	out := map[string]int{}
	for level, tpls := range t.byLevel {
		total := 0
		for _, t := range tpls {
			total += len(t)
		}
		out[level] = total / len(tpls)
	}
	return out
}

// enrich adds what a current apiserver records and the 2017-2020 fixtures
// lack: user uid and groups, authorization and latency annotations. That
// brings a Metadata event to about 1.4 KB.
func enrich(ev *schemas.Event, i int) {
	ev.User.UID = "8c1f6a2e-5b7d-4e0f-9a3c-2d4b6f8e1a0c"
	if len(ev.User.Groups) < 2 {
		ev.User.Groups = []string{"system:authenticated", "oidc:platform-admins", "oidc:sre-oncall"}
	}
	if len(ev.SourceIPs) == 0 || ev.SourceIPs[0] == "::1" {
		ev.SourceIPs = []string{fmt.Sprintf("10.24.%d.%d", i%250, 10+i%200), "192.168.1.10"}
	}
	if ev.User.Extra == nil {
		ev.User.Extra = map[string][]string{"authentication.kubernetes.io/credential-id": {"JTI=6d2f1a0b-8c3e-4b7a-9f1d-2e5c7a9b0d4f"}}
	}
	if ev.UserAgent == "" {
		ev.UserAgent = "kubectl/v1.31.4 (linux/amd64) kubernetes/a78aa47"
	}
	ann := map[string]string{
		"authorization.k8s.io/decision":                      "allow",
		"authorization.k8s.io/reason":                        fmt.Sprintf("RBAC: allowed by ClusterRoleBinding %q of ClusterRole %q to Group %q", "platform-admins-binding", "cluster-admin", "oidc:platform-admins"),
		"pod-security.kubernetes.io/enforce-policy":          "restricted:latest",
		"apiserver.latency.k8s.io/total":                     "12.345678ms",
		"apiserver.latency.k8s.io/etcd":                      "3.210987ms",
		"apiserver.latency.k8s.io/serialize-response-object": "101.5µs",
		"apiserver.latency.k8s.io/transform-response-object": "2.1µs",
	}
	for k, v := range ev.Annotations {
		ann[k] = v
	}
	ev.Annotations = ann
}

// grow builds a Request or RequestResponse event around ev's request
// object, adding containers (env, resources, probes, mounts) until the
// encoded event reaches the level's target size. A RequestResponse event's
// response is the stored object: the request plus uid, resourceVersion,
// managedFields and the kubectl last-applied-configuration annotation,
// which is why such events are large.
func grow(ev schemas.Event, level string) (schemas.Event, error) {
	var base map[string]any
	if err := json.Unmarshal(ev.RequestObject, &base); err != nil {
		return ev, fmt.Errorf("request object: %w", err)
	}
	target := targetRequest
	if level == LevelRequestResponse {
		target = targetRequestResponse
	}
	var prev schemas.Event
	prevSize := 0
	for n := 1; n <= 64; n++ {
		obj := withContainers(base, n)
		out := ev
		out.Level = level
		req, err := json.Marshal(obj)
		if err != nil {
			return ev, err
		}
		out.RequestObject, out.ResponseObject = req, nil
		if level == LevelRequestResponse {
			if out.ResponseObject, err = stored(obj, req, ev); err != nil {
				return ev, err
			}
		}
		b, err := json.Marshal(out)
		if err != nil {
			return ev, err
		}
		// Keep the container count whose size is closest to the target.
		if len(b) >= target {
			if n > 1 && target-prevSize < len(b)-target {
				return prev, nil
			}
			return out, nil
		}
		prev, prevSize = out, len(b)
	}
	return ev, errors.New("could not grow the event to its target size")
}

// podSpec finds the pod spec of a Pod or of a workload's pod template.
func podSpec(obj map[string]any) map[string]any {
	spec, _ := obj["spec"].(map[string]any)
	if tpl, ok := spec["template"].(map[string]any); ok {
		spec, _ = tpl["spec"].(map[string]any)
	}
	return spec
}

func withContainers(base map[string]any, n int) map[string]any {
	obj := deepCopy(base).(map[string]any)
	spec := podSpec(obj)
	if spec == nil {
		spec = map[string]any{}
		obj["spec"] = spec
	}
	first := map[string]any{"name": "app", "image": "nginx"}
	if cs, ok := spec["containers"].([]any); ok && len(cs) > 0 {
		if c, ok := cs[0].(map[string]any); ok {
			first = c
		}
	}
	containers := make([]any, n)
	for i := range containers {
		c := deepCopy(first).(map[string]any)
		c["name"] = fmt.Sprintf("%v-%d", first["name"], i)
		env := make([]any, 8)
		for j := range env {
			env[j] = map[string]any{"name": fmt.Sprintf("APP_SETTING_%02d", j), "value": fmt.Sprintf("value-%d-%d-of-a-typical-configuration-string", i, j)}
		}
		c["env"] = env
		c["resources"] = map[string]any{"requests": map[string]any{"cpu": "250m", "memory": "256Mi"}, "limits": map[string]any{"cpu": "1", "memory": "512Mi"}}
		c["ports"] = []any{map[string]any{"name": "http", "containerPort": 8080 + i, "protocol": "TCP"}}
		c["readinessProbe"] = map[string]any{"httpGet": map[string]any{"path": "/healthz", "port": 8080 + i, "scheme": "HTTP"}, "periodSeconds": 10, "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3}
		c["volumeMounts"] = []any{map[string]any{"name": "config", "mountPath": "/etc/app", "readOnly": true}, map[string]any{"name": "kube-api-access", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true}}
		containers[i] = c
	}
	spec["containers"] = containers
	return obj
}

// stored is the object as the apiserver returns it after an apply.
func stored(obj map[string]any, req []byte, ev schemas.Event) ([]byte, error) {
	resp := deepCopy(obj).(map[string]any)
	meta, _ := resp["metadata"].(map[string]any)
	if meta == nil {
		meta = map[string]any{}
		resp["metadata"] = meta
	}
	if meta["name"] == nil {
		meta["name"] = "bench-object"
	}
	if ev.ObjectRef != nil && ev.ObjectRef.Namespace != "" {
		meta["namespace"] = ev.ObjectRef.Namespace
	}
	meta["uid"] = "5f3c2a1e-9d8b-4c7a-b6e5-4d3c2b1a0f9e"
	meta["resourceVersion"] = "918273645"
	meta["creationTimestamp"] = ev.StageTimestamp.Format(time.RFC3339)
	ann, _ := meta["annotations"].(map[string]any)
	if ann == nil {
		ann = map[string]any{}
	}
	ann["kubectl.kubernetes.io/last-applied-configuration"] = string(req) + "\n"
	meta["annotations"] = ann
	meta["managedFields"] = []any{
		map[string]any{"manager": "kubectl-client-side-apply", "operation": "Update", "apiVersion": "v1", "time": ev.StageTimestamp.Format(time.RFC3339), "fieldsType": "FieldsV1", "fieldsV1": fieldsV1(obj)},
		map[string]any{"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1", "time": ev.StageTimestamp.Format(time.RFC3339), "fieldsType": "FieldsV1", "fieldsV1": map[string]any{"f:status": map[string]any{"f:conditions": map[string]any{".": map[string]any{}}, "f:phase": map[string]any{}}}, "subresource": "status"},
	}
	resp["status"] = map[string]any{"phase": "Pending", "qosClass": "Burstable", "conditions": []any{map[string]any{"type": "PodScheduled", "status": "True", "lastTransitionTime": ev.StageTimestamp.Format(time.RFC3339)}}}
	return json.Marshal(resp)
}

// fieldsV1 renders the field set of obj the way server-side apply does:
// "f:<name>" per field, "k:{...}" for list items keyed by name.
func fieldsV1(v any) any {
	switch t := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, child := range t {
			out["f:"+k] = fieldsV1(child)
		}
		return out
	case []any:
		out := map[string]any{}
		for i, item := range t {
			key := fmt.Sprintf("i:%d", i)
			if m, ok := item.(map[string]any); ok && m["name"] != nil {
				key = fmt.Sprintf(`k:{"name":%q}`, m["name"])
			}
			out[key] = fieldsV1(item)
		}
		out["."] = map[string]any{}
		return out
	default:
		return map[string]any{}
	}
}

func deepCopy(v any) any {
	switch t := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, c := range t {
			out[k] = deepCopy(c)
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i, c := range t {
			out[i] = deepCopy(c)
		}
		return out
	default:
		return v
	}
}

// loadFixtures reads every audit event under dir (JSON files with one
// event, JSON-lines files with many), skipping the GKE log entries and
// values that are not events, in a stable order.
func loadFixtures(dir string) ([]schemas.Event, error) {
	var files []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if (strings.HasSuffix(path, ".json") || strings.HasSuffix(path, ".jsonl")) && !strings.Contains(path, "log_entries") {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read fixtures %s: %w", dir, err)
	}
	sort.Strings(files)
	var out []schemas.Event
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("read fixture: %w", err)
		}
		dec := json.NewDecoder(bytes.NewReader(data))
		for {
			var ev schemas.Event
			err := dec.Decode(&ev)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				break // a file that is not JSON on purpose (falco/fal_01_003.json)
			}
			if ev.Kind == "Event" && ev.AuditID != "" && ev.Stage != "" {
				out = append(out, ev)
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no audit events under %s", dir)
	}
	return out, nil
}
