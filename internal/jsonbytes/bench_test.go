package jsonbytes_test

import (
	"os"
	"testing"

	"github.com/auditpipe/auditpipe/internal/jsonbytes"
)

// The scans of a RequestResponse event: validation only (Members) and
// normalization (Normalize), which also resolves repeated keys and depth.
func BenchmarkScan(b *testing.B) {
	ev, err := os.ReadFile("../../testdata/public-audit/falco/create_nginx_pod_privileged_2nd_container.json")
	if err != nil {
		b.Fatal(err)
	}
	b.Run("Members", func(b *testing.B) {
		b.SetBytes(int64(len(ev)))
		for b.Loop() {
			if err := jsonbytes.Members(ev, func(jsonbytes.Member) {}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Normalize", func(b *testing.B) {
		b.SetBytes(int64(len(ev)))
		for b.Loop() {
			if _, err := jsonbytes.Normalize(ev, 256, []byte(`"x"`), nil); err != nil {
				b.Fatal(err)
			}
		}
	})
}
