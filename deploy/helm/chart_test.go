package helm

import (
	"fmt"
	"path"
	"slices"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// typed is what every rendered object decodes into, by apiVersion/kind.
func newTyped(apiVersion, kind string) (any, bool) {
	switch apiVersion + "/" + kind {
	case "v1/ConfigMap":
		return &corev1.ConfigMap{}, true
	case "v1/Service":
		return &corev1.Service{}, true
	case "apps/v1/Deployment":
		return &appsv1.Deployment{}, true
	case "apps/v1/StatefulSet":
		return &appsv1.StatefulSet{}, true
	case "apps/v1/DaemonSet":
		return &appsv1.DaemonSet{}, true
	case "autoscaling/v2/HorizontalPodAutoscaler":
		return &autoscalingv2.HorizontalPodAutoscaler{}, true
	case "policy/v1/PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}, true
	case "networking.k8s.io/v1/NetworkPolicy":
		return &networkingv1.NetworkPolicy{}, true
	case "monitoring.coreos.com/v1/ServiceMonitor":
		return &monitoringv1.ServiceMonitor{}, true
	case "monitoring.coreos.com/v1/PrometheusRule":
		return &monitoringv1.PrometheusRule{}, true
	case "kafka.strimzi.io/v1/KafkaTopic":
		return &kafkaTopic{}, true
	case "kafka.strimzi.io/v1/KafkaUser":
		return &kafkaUser{}, true
	case "keda.sh/v1alpha1/ScaledObject":
		return &scaledObject{}, true
	case "keda.sh/v1alpha1/TriggerAuthentication":
		return &triggerAuthentication{}, true
	}
	return nil, false
}

// rendered is a scenario's objects, decoded.
type rendered struct {
	objs []any
}

func decodeAll(t *testing.T, objs []object) rendered {
	t.Helper()
	var r rendered
	seen := map[string]bool{}
	for _, o := range objs {
		v, ok := newTyped(o.APIVersion, o.Kind)
		if !ok {
			t.Errorf("%s %s: no type for apiVersion %s; add one to newTyped", o.Kind, o.Name, o.APIVersion)
			continue
		}
		if err := decodeStrict(o.JSON, v); err != nil {
			t.Errorf("%s %s does not decode strictly into %T: %v", o.Kind, o.Name, v, err)
			continue
		}
		if val, ok := v.(interface{ validate() error }); ok {
			if err := val.validate(); err != nil {
				t.Error(err)
			}
		}
		key := o.Kind + "/" + o.Name
		if seen[key] {
			t.Errorf("%s rendered twice", key)
		}
		seen[key] = true
		r.objs = append(r.objs, v)
	}
	return r
}

func all[T any](r rendered) []T {
	var out []T
	for _, o := range r.objs {
		if v, ok := o.(T); ok {
			out = append(out, v)
		}
	}
	return out
}

// workload is a pod template with what owns it.
type workload struct {
	kind, name string
	selector   map[string]string
	pod        corev1.PodTemplateSpec
	replicas   *int32
}

func workloads(r rendered) []workload {
	var out []workload
	for _, o := range r.objs {
		switch v := o.(type) {
		case *appsv1.Deployment:
			out = append(out, workload{"Deployment", v.Name, v.Spec.Selector.MatchLabels, v.Spec.Template, v.Spec.Replicas})
		case *appsv1.StatefulSet:
			out = append(out, workload{"StatefulSet", v.Name, v.Spec.Selector.MatchLabels, v.Spec.Template, v.Spec.Replicas})
		case *appsv1.DaemonSet:
			out = append(out, workload{"DaemonSet", v.Name, v.Spec.Selector.MatchLabels, v.Spec.Template, nil})
		}
	}
	return out
}

func configMaps(r rendered) map[string]*corev1.ConfigMap {
	out := map[string]*corev1.ConfigMap{}
	for _, cm := range all[*corev1.ConfigMap](r) {
		out[cm.Name] = cm
	}
	return out
}

func TestHelmLint(t *testing.T) {
	for _, s := range scenarios {
		t.Run(s, func(t *testing.T) {
			if out, err := helmRun(t, "lint", "--strict", chartDir(t), "--kube-version", kubeVersion, "-f", valuesFile(t, s)); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
		})
	}
}

// TestRenderedObjects decodes every object of every scenario strictly and
// checks the rules every workload follows.
func TestRenderedObjects(t *testing.T) {
	for _, s := range scenarios {
		t.Run(s, func(t *testing.T) {
			r := decodeAll(t, render(t, s))
			if len(workloads(r)) != 3 {
				t.Fatalf("%d workloads, want producer, processor and consumer", len(workloads(r)))
			}
			for _, w := range workloads(r) {
				checkPodSecurity(t, w)
				checkPodWiring(t, r, w)
			}
			checkSelectors(t, r)
		})
	}
}

// checkPodSecurity is the chart's policy: non-root (the audit-log tailer
// excepted, as uid 0 without capabilities), read-only root file system,
// no capabilities, RuntimeDefault seccomp, requests and limits, probes on
// the metrics server.
func checkPodSecurity(t *testing.T, w workload) {
	t.Helper()
	spec := w.pod.Spec
	psc := spec.SecurityContext
	where := w.kind + "/" + w.name
	if psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("%s: pod seccompProfile is not RuntimeDefault", where)
	}
	tailer := w.kind == "DaemonSet"
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
		if !tailer {
			t.Errorf("%s: runAsNonRoot is not true", where)
		}
	} else if psc.RunAsUser == nil || *psc.RunAsUser != 65532 {
		t.Errorf("%s: runAsUser is not 65532", where)
	}
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		t.Errorf("%s: the service account token is mounted; no stage talks to the Kubernetes API", where)
	}
	if spec.HostNetwork || spec.HostPID || spec.HostIPC {
		t.Errorf("%s: host namespaces", where)
	}
	for _, v := range spec.Volumes {
		if v.HostPath != nil && !tailer {
			t.Errorf("%s: hostPath volume %s", where, v.Name)
		}
	}
	if len(spec.Containers) != 1 || len(spec.InitContainers) != 0 {
		t.Fatalf("%s: %d containers, %d init containers; want one container", where, len(spec.Containers), len(spec.InitContainers))
	}
	c := spec.Containers[0]
	sc := c.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("%s: readOnlyRootFilesystem is not true", where)
	}
	if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("%s: allowPrivilegeEscalation is not false", where)
	}
	if sc == nil || sc.Privileged == nil || *sc.Privileged {
		t.Errorf("%s: privileged is not false", where)
	}
	if sc == nil || sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0 {
		t.Errorf("%s: capabilities are not drop [ALL]", where)
	}
	for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if _, ok := c.Resources.Requests[res]; !ok {
			t.Errorf("%s: no %s request", where, res)
		}
		if _, ok := c.Resources.Limits[res]; !ok {
			t.Errorf("%s: no %s limit", where, res)
		}
	}
	for name, p := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe, "startup": c.StartupProbe} {
		want := "/healthz"
		if name == "readiness" {
			want = "/readyz"
		}
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != want || p.HTTPGet.Port.String() != "metrics" {
			t.Errorf("%s: %s probe is not GET %s on the metrics port", where, name, want)
		}
	}
	if !slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool { return p.Name == "metrics" }) {
		t.Errorf("%s: no metrics port", where)
	}
	if strings.HasSuffix(c.Image, ":latest") || !strings.Contains(c.Image, ":") {
		t.Errorf("%s: image %q is not pinned", where, c.Image)
	}
}

// checkPodWiring checks that the command's config file, every mount and
// every ConfigMap the pod uses exist.
func checkPodWiring(t *testing.T, r rendered, w workload) {
	t.Helper()
	where := w.kind + "/" + w.name
	spec := w.pod.Spec
	c := spec.Containers[0]
	stage := path.Base(c.Command[0])
	if !slices.Contains([]string{"producer", "processor", "consumer"}, stage) || len(c.Command) != 4 || c.Command[1] != "run" || c.Command[2] != "--config" {
		t.Fatalf("%s: command %q, want [/usr/local/bin/<stage> run --config FILE]", where, c.Command)
	}
	vols := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		vols[v.Name] = v
	}
	claims := map[string]bool{}
	for _, sts := range all[*appsv1.StatefulSet](r) {
		if sts.Name == w.name {
			for _, pvc := range sts.Spec.VolumeClaimTemplates {
				claims[pvc.Name] = true
			}
		}
	}
	cms := configMaps(r)
	for _, m := range c.VolumeMounts {
		v, ok := vols[m.Name]
		if !ok && !claims[m.Name] {
			t.Errorf("%s: mount %s has no volume", where, m.Name)
		}
		if v.ConfigMap != nil && cms[v.ConfigMap.Name] == nil {
			t.Errorf("%s: volume %s uses ConfigMap %s, which the chart does not render", where, v.Name, v.ConfigMap.Name)
		}
		if v.Secret != nil || v.ConfigMap != nil || v.HostPath != nil && m.Name != "data" {
			if !m.ReadOnly {
				t.Errorf("%s: mount %s of a Secret/ConfigMap/host file is writable", where, m.Name)
			}
		}
	}
	cfgFile := c.Command[3]
	cm := mountedConfigMap(t, spec, c, cms, cfgFile)
	if cm == nil {
		t.Fatalf("%s: config %s is not a key of a mounted ConfigMap", where, cfgFile)
	}
	checkStageConfig(t, stage, []byte(cm.Data[path.Base(cfgFile)]), c, spec, cms)
}

// mountedConfigMap returns the ConfigMap that holds file in the container.
func mountedConfigMap(t *testing.T, spec corev1.PodSpec, c corev1.Container, cms map[string]*corev1.ConfigMap, file string) *corev1.ConfigMap {
	t.Helper()
	for _, m := range c.VolumeMounts {
		if path.Dir(file) != m.MountPath {
			continue
		}
		for _, v := range spec.Volumes {
			if v.Name == m.Name && v.ConfigMap != nil {
				if cm := cms[v.ConfigMap.Name]; cm != nil {
					if _, ok := cm.Data[path.Base(file)]; ok {
						return cm
					}
				}
			}
		}
	}
	return nil
}

// fileInPod reports whether file is there in the container: under a
// mount, and when the mount is a Secret or ConfigMap with items (or a
// ConfigMap), one of its files.
func fileInPod(spec corev1.PodSpec, c corev1.Container, cms map[string]*corev1.ConfigMap, file string) bool {
	for _, m := range c.VolumeMounts {
		if !strings.HasPrefix(file, m.MountPath+"/") {
			continue
		}
		rel := strings.TrimPrefix(file, m.MountPath+"/")
		for _, v := range spec.Volumes {
			if v.Name != m.Name {
				continue
			}
			switch {
			case v.Secret != nil && len(v.Secret.Items) > 0:
				return slices.ContainsFunc(v.Secret.Items, func(k corev1.KeyToPath) bool { return k.Path == rel })
			case v.Secret != nil:
				return true // every key of the Secret
			case v.ConfigMap != nil:
				cm := cms[v.ConfigMap.Name]
				_, ok := cm.Data[rel]
				return cm != nil && ok
			default:
				return true // emptyDir, hostPath, PVC: written at run time
			}
		}
		return true // a volume claim template
	}
	return false
}

// checkSelectors checks that Services, PDBs, NetworkPolicies, the HPA and
// ScaledObject all point at something the chart renders.
func checkSelectors(t *testing.T, r rendered) {
	t.Helper()
	ws := workloads(r)
	matches := func(sel map[string]string) []workload {
		var out []workload
		for _, w := range ws {
			if len(sel) > 0 && labels.SelectorFromSet(sel).Matches(labels.Set(w.pod.Labels)) {
				out = append(out, w)
			}
		}
		return out
	}
	for _, w := range ws {
		if got := matches(w.selector); len(got) != 1 {
			t.Errorf("%s/%s: its selector matches %d workloads' pods", w.kind, w.name, len(got))
		}
	}
	for _, svc := range all[*corev1.Service](r) {
		got := matches(svc.Spec.Selector)
		if len(got) != 1 {
			t.Errorf("Service %s selects %d workloads", svc.Name, len(got))
			continue
		}
		for _, p := range svc.Spec.Ports {
			name := p.TargetPort.String()
			if !slices.ContainsFunc(got[0].pod.Spec.Containers[0].Ports, func(cp corev1.ContainerPort) bool { return cp.Name == name }) {
				t.Errorf("Service %s: targetPort %s is not a port of %s", svc.Name, name, got[0].name)
			}
		}
	}
	for _, pdb := range all[*policyv1.PodDisruptionBudget](r) {
		if len(matches(pdb.Spec.Selector.MatchLabels)) != 1 {
			t.Errorf("PodDisruptionBudget %s selects no single workload", pdb.Name)
		}
	}
	for _, np := range all[*networkingv1.NetworkPolicy](r) {
		got := matches(np.Spec.PodSelector.MatchLabels)
		if len(got) != 1 {
			t.Errorf("NetworkPolicy %s selects %d workloads", np.Name, len(got))
			continue
		}
		for _, in := range np.Spec.Ingress {
			for _, p := range in.Ports {
				if p.Port != nil && !slices.ContainsFunc(got[0].pod.Spec.Containers[0].Ports, func(cp corev1.ContainerPort) bool { return cp.Name == p.Port.String() }) {
					t.Errorf("NetworkPolicy %s: ingress port %s is not a port of %s", np.Name, p.Port, got[0].name)
				}
			}
		}
		if !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress) || !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) {
			t.Errorf("NetworkPolicy %s does not restrict both directions", np.Name)
		}
	}
	if len(all[*networkingv1.NetworkPolicy](r)) != len(ws) {
		t.Errorf("%d NetworkPolicies for %d workloads", len(all[*networkingv1.NetworkPolicy](r)), len(ws))
	}
	target := func(kind, name string) *workload {
		for i := range ws {
			if ws[i].kind == kind && ws[i].name == name {
				return &ws[i]
			}
		}
		return nil
	}
	for _, h := range all[*autoscalingv2.HorizontalPodAutoscaler](r) {
		w := target(h.Spec.ScaleTargetRef.Kind, h.Spec.ScaleTargetRef.Name)
		if w == nil {
			t.Errorf("HPA %s: no target %s/%s", h.Name, h.Spec.ScaleTargetRef.Kind, h.Spec.ScaleTargetRef.Name)
		} else if w.replicas != nil {
			t.Errorf("HPA %s: %s sets replicas too; the two would fight", h.Name, w.name)
		}
	}
	for _, so := range all[*scaledObject](r) {
		w := target(so.Spec.ScaleTargetRef.Kind, so.Spec.ScaleTargetRef.Name)
		if w == nil {
			t.Errorf("ScaledObject %s: no target %s/%s", so.Metadata.Name, so.Spec.ScaleTargetRef.Kind, so.Spec.ScaleTargetRef.Name)
		} else if w.replicas != nil {
			t.Errorf("ScaledObject %s: %s sets replicas too; the two would fight", so.Metadata.Name, w.name)
		}
	}
}

func find[T any](t *testing.T, r rendered, match func(T) bool) T {
	t.Helper()
	for _, v := range all[T](r) {
		if match(v) {
			return v
		}
	}
	var zero T
	t.Fatalf("no %T found", zero)
	return zero
}

func kinds(r rendered) map[string]int {
	out := map[string]int{}
	for _, o := range r.objs {
		out[fmt.Sprintf("%T", o)]++
	}
	return out
}

// TestScenarios checks what distinguishes each values set.
func TestScenarios(t *testing.T) {
	t.Run("minimal", func(t *testing.T) {
		r := decodeAll(t, render(t, "minimal"))
		k := kinds(r)
		if k["*v1.StatefulSet"] != 1 || k["*v1.Deployment"] != 2 || k["*v2.HorizontalPodAutoscaler"] != 1 || k["*v1.PodDisruptionBudget"] != 2 {
			t.Errorf("kinds %v", k)
		}
		for _, unwanted := range []string{"*helm.kafkaTopic", "*helm.kafkaUser", "*helm.scaledObject", "*v1.ServiceMonitor", "*v1.PrometheusRule"} {
			if k[unwanted] != 0 {
				t.Errorf("%s rendered without being asked for", unwanted)
			}
		}
		sts := find(t, r, func(*appsv1.StatefulSet) bool { return true })
		if len(sts.Spec.VolumeClaimTemplates) != 1 || sts.Spec.VolumeClaimTemplates[0].Spec.Resources.Requests.Storage().String() != "50Gi" {
			t.Errorf("consumer PVC: %+v", sts.Spec.VolumeClaimTemplates)
		}
		find(t, r, func(s *corev1.Service) bool { return s.Name == "t-auditpipe-consumer-api" })
	})
	t.Run("cls-only", func(t *testing.T) {
		r := decodeAll(t, render(t, "cls-only"))
		if k := kinds(r); k["*v1.StatefulSet"] != 0 || k["*v1.Deployment"] != 3 {
			t.Errorf("kinds %v: the consumer without the local store is a Deployment", k)
		}
		for _, s := range all[*corev1.Service](r) {
			if strings.Contains(s.Name, "consumer-api") {
				t.Errorf("search API Service %s without the local store", s.Name)
			}
		}
		np := find(t, r, func(n *networkingv1.NetworkPolicy) bool { return n.Name == "t-auditpipe-consumer" })
		if !slices.ContainsFunc(np.Spec.Egress, func(e networkingv1.NetworkPolicyEgressRule) bool {
			return len(e.Ports) == 1 && e.Ports[0].Port.IntValue() == 443
		}) {
			t.Error("consumer NetworkPolicy does not let the CLS sink out on 443")
		}
		fleetCM := configMaps(r)["t-auditpipe-fleet"]
		if !strings.Contains(fleetCM.Data["fleet.yaml"], "policy: /etc/auditpipe/policies/strict.yaml") {
			t.Errorf("fleet policy names are not mounted paths:\n%s", fleetCM.Data["fleet.yaml"])
		}
	})
	t.Run("local-keda", func(t *testing.T) {
		r := decodeAll(t, render(t, "local-keda"))
		so := find(t, r, func(*scaledObject) bool { return true })
		var groups []string
		for _, tr := range so.Spec.Triggers {
			groups = append(groups, tr.Metadata["consumerGroup"])
			if tr.Metadata["sasl"] != "scram_sha512" || tr.Metadata["tls"] != "enable" || tr.AuthenticationRef == nil {
				t.Errorf("trigger %s: %v", tr.Name, tr.Metadata)
			}
		}
		if !slices.Equal(groups, []string{"auditpipe-consumer", "auditpipe-consumer.cls"}) {
			t.Errorf("ScaledObject groups %v, want both sinks' groups", groups)
		}
		ta := find(t, r, func(*triggerAuthentication) bool { return true })
		var params []string
		for _, s := range ta.Spec.SecretTargetRef {
			params = append(params, s.Parameter)
		}
		if !slices.Equal(params, []string{"ca", "password"}) || len(ta.Spec.Env) != 1 || ta.Spec.Env[0].Parameter != "username" {
			t.Errorf("TriggerAuthentication %v env %v", params, ta.Spec.Env)
		}
		sts := find(t, r, func(*appsv1.StatefulSet) bool { return true })
		env := sts.Spec.Template.Spec.Containers[0].Env
		if len(env) != 1 || env[0].Name != ta.Spec.Env[0].Name || env[0].Value != "auditpipe-consumer" {
			t.Errorf("consumer env %v does not carry the user name KEDA reads", env)
		}
	})
	t.Run("strimzi", func(t *testing.T) {
		r := decodeAll(t, render(t, "strimzi"))
		topics := map[string]*kafkaTopic{}
		for _, kt := range all[*kafkaTopic](r) {
			topics[kt.Spec.TopicName] = kt
		}
		for name, parts := range map[string]int32{"audit.raw": 24, "audit.events": 24, "audit.dlq": 3, "audit.alerts": 3} {
			kt := topics[name]
			if kt == nil {
				t.Errorf("no KafkaTopic for %s", name)
				continue
			}
			if kt.Spec.Partitions != parts || kt.Spec.Replicas != 3 || kt.Spec.Config["min.insync.replicas"] != "2" || kt.Spec.Config["retention.ms"] == "" {
				t.Errorf("KafkaTopic %s: %+v", name, kt.Spec)
			}
		}
		acl := func(user, typ, name string) []string {
			u := find(t, r, func(k *kafkaUser) bool { return k.Metadata.Name == user })
			for _, a := range u.Spec.Authorization.ACLs {
				if a.Resource.Type == typ && a.Resource.Name == name {
					return a.Operations
				}
			}
			return nil
		}
		for _, c := range []struct {
			user, typ, name string
			want            []string
		}{
			{"auditpipe-producer", "topic", "audit.raw", []string{"Write", "Describe"}},
			{"auditpipe-producer", "topic", "audit.events", nil},
			{"auditpipe-processor", "topic", "audit.raw", []string{"Read", "Describe"}},
			{"auditpipe-processor", "topic", "audit.events", []string{"Write", "Describe"}},
			{"auditpipe-processor", "topic", "audit.alerts", []string{"Write", "Describe"}},
			{"auditpipe-processor", "transactionalId", "auditpipe-processor", []string{"Write", "Describe"}},
			{"auditpipe-processor", "group", "auditpipe-processor", []string{"Read", "Describe"}},
			{"auditpipe-consumer", "topic", "audit.events", []string{"Read", "Describe"}},
			{"auditpipe-consumer", "topic", "audit.raw", nil},
			{"auditpipe-consumer", "group", "auditpipe-consumer.cls", []string{"Read", "Describe"}},
		} {
			if got := acl(c.user, c.typ, c.name); !slices.Equal(got, c.want) {
				t.Errorf("%s on %s %s: %v, want %v", c.user, c.typ, c.name, got, c.want)
			}
		}
		sm := find(t, r, func(*monitoringv1.ServiceMonitor) bool { return true })
		var metricsSvcs int
		for _, s := range all[*corev1.Service](r) {
			if labels.SelectorFromSet(sm.Spec.Selector.MatchLabels).Matches(labels.Set(s.Labels)) {
				metricsSvcs++
			}
		}
		if metricsSvcs != 3 || sm.Labels["release"] != "prometheus" {
			t.Errorf("ServiceMonitor selects %d Services, labels %v", metricsSvcs, sm.Labels)
		}
		var dashboards int
		for _, cm := range configMaps(r) {
			if cm.Labels["grafana_dashboard"] == "1" {
				dashboards++
			}
		}
		if dashboards != 2 {
			t.Errorf("%d dashboard ConfigMaps, want 2", dashboards)
		}
	})
	t.Run("daemonset", func(t *testing.T) {
		r := decodeAll(t, render(t, "daemonset"))
		ds := find(t, r, func(*appsv1.DaemonSet) bool { return true })
		spec := ds.Spec.Template.Spec
		if spec.NodeSelector["node-role.kubernetes.io/control-plane"] != "" || len(spec.Tolerations) == 0 || spec.Tolerations[0].Key != "node-role.kubernetes.io/control-plane" {
			t.Errorf("DaemonSet does not go to control-plane nodes: %v %v", spec.NodeSelector, spec.Tolerations)
		}
		var hostLog bool
		for _, v := range spec.Volumes {
			if v.HostPath != nil && v.HostPath.Path == "/var/log/kubernetes/audit" {
				hostLog = true
			}
		}
		if !hostLog {
			t.Error("the audit log directory is not mounted from the host")
		}
		for _, s := range all[*corev1.Service](r) {
			if s.Name == "t-auditpipe-producer" {
				t.Error("a webhook Service in tail mode")
			}
		}
	})
}

// TestValuesRejected: typos and inconsistent values fail at render time,
// with a message that names the problem.
func TestValuesRejected(t *testing.T) {
	for _, c := range []struct {
		name, scenario string
		set            []string
		want           string
	}{
		{"typo", "minimal", []string{"producer.replica=3"}, "additional properties 'replica' not allowed"},
		{"nested typo", "minimal", []string{"consumer.local.maxage=1h"}, "'maxage' not allowed"},
		{"bad enum", "minimal", []string{"processor.delivery=exactly-twice"}, "processor/delivery"},
		{"unknown engine", "minimal", []string{"consumer.local.engine=sqlite3"}, "consumer/local/engine"},
		{"shutdown not in seconds", "minimal", []string{"shutdownTimeout=1m"}, "shutdownTimeout"},
		{"replicas over partitions", "minimal", []string{"processor.replicas=13"}, "processor.replicas (13) must not exceed kafka.partitions.raw (12)"},
		{"keda over partitions", "local-keda", []string{"consumer.keda.maxReplicaCount=20"}, "consumer.keda.maxReplicaCount (20)"},
		{"webhook without auth", "minimal", []string{"producer.webhook.clientCASecret="}, "producer.webhook: set clientCASecret or tokensSecret"},
		{"CLS without endpoint", "cls-only", []string{"consumer.cls.endpoint="}, "consumer.cls.endpoint"},
		{"no sink", "cls-only", []string{"consumer.cls.mode=off"}, "consumer: no sink"},
		{"API without token", "minimal", []string{"consumer.api.tokenSecret="}, "consumer.api.tokenSecret"},
		{"unknown policy", "cls-only", []string{"fleet.clusters.dev-1.policy=lax.yaml"}, `fleet.clusters.dev-1.policy: "lax.yaml" is not a key of processor.policies`},
		{"tailer without cluster", "daemonset", []string{"producer.daemonset.cluster="}, "producer.daemonset.cluster"},
		{"strimzi with PLAIN", "strimzi", []string{"kafka.auth=plain"}, "Strimzi users authenticate with tls or scram-sha-512"},
	} {
		t.Run(c.name, func(t *testing.T) {
			args := renderArgs(t, "-f", valuesFile(t, c.scenario))
			for _, s := range c.set {
				args = append(args, "--set", s)
			}
			_, err := helmRun(t, args...)
			if err == nil {
				t.Fatalf("helm template accepted %v", c.set)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error does not say %q:\n%v", c.want, err)
			}
		})
	}
}
