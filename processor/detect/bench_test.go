package detect_test

import (
	"path/filepath"
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
