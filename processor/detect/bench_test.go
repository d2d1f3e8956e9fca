package detect_test

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/auditpipe/auditpipe/schemas"
)

// BenchmarkEvaluate is the shipped rules alone on one Falco trace each:
// a Metadata event no rule looks into, and a pod create three rules look
// into.
//
//	go test -run '^$' -bench BenchmarkEvaluate -benchmem -cpu 1 ./detect
func BenchmarkEvaluate(b *testing.B) {
	set := defaultSet(b)
	for _, name := range []string{"create_secret.json", "create_nginx_pod_privileged_2nd_container.json", "exec_pod.json"} {
		ev := readEvents(b, filepath.Join(fixtures, "falco", name))[0]
		pl := &schemas.Pipeline{Cluster: "c1"}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				set.Evaluate(&ev, pl)
			}
		})
	}
}

// BenchmarkEvaluatePodContainers is the rules on a pod create with n
// unprivileged containers: the cost that grows with the body.
func BenchmarkEvaluatePodContainers(b *testing.B) {
	set := defaultSet(b)
	for _, n := range []int{1, 20} {
		var cs []string
		for i := range n {
			cs = append(cs, fmt.Sprintf(`{"name":"c%d","image":"registry.example.com/team/sidecar:v1.2.3","env":[{"name":"LOG_LEVEL","value":"info"}],"resources":{"limits":{"cpu":"500m"}},"ports":[{"containerPort":8080}]}`, i))
		}
		ev := schemas.Event{AuditID: "a", Stage: "ResponseComplete", Verb: "create", User: schemas.UserInfo{Username: "system:serviceaccount:kube-system:replicaset-controller"},
			ObjectRef:      &schemas.ObjectReference{Resource: "pods", Namespace: "default", APIVersion: "v1"},
			RequestObject:  []byte(`{"kind":"Pod","apiVersion":"v1","metadata":{"name":"p"},"spec":{"containers":[` + strings.Join(cs, ",") + `]}}`),
			ResponseStatus: &schemas.Status{Code: 201}}
		b.Run(fmt.Sprintf("containers=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				set.Evaluate(&ev, nil)
			}
		})
	}
}
