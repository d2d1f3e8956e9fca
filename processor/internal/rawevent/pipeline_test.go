package rawevent

import (
	"math"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/internal/jsonbytes"
	"github.com/auditpipe/auditpipe/schemas"
)

// TestAppendPipelineMatchesEncodingJSON: for pipelines with every field
// filled at random (plain and awkward strings, times, latencies, nil and
// empty slices and pointers), appendPipeline writes what
// jsonbytes.Marshal writes whenever it says it could, and it can for the
// forms the processor writes.
func TestAppendPipelineMatchesEncodingJSON(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	fast := 0
	for i := range 5000 {
		var p schemas.Pipeline
		fill(t, rnd, reflect.ValueOf(&p).Elem())
		want, err := jsonbytes.Marshal(p)
		got, ok := appendPipeline([]byte("prefix"), &p)
		if !ok {
			continue
		}
		fast++
		require.NoError(t, err, "iteration %d: %+v", i, p)
		require.Equal(t, "prefix"+string(want), string(got), "iteration %d", i)
	}
	require.Greater(t, fast, 500, "the fast path is the common path")

	// What the processor writes for a typical event.
	latency := 12.345
	p := schemas.Pipeline{
		SchemaVersion: schemas.SchemaVersion, Cluster: "cls-1", Source: schemas.SourceWebhook,
		ReceivedAt: time.Date(2026, 1, 2, 3, 4, 5, 600, time.UTC), ProcessedAt: time.Date(2026, 1, 2, 3, 4, 6, 0, time.UTC),
		OriginalLevel: "Metadata", Origin: schemas.Origin{Topic: "audit.raw", Partition: 3, Offset: 42},
		Principal: &schemas.Principal{Type: schemas.PrincipalHuman}, Operation: "write", Outcome: "success",
		LatencyMs: &latency, SourceIP: "10.0.0.1", SourceIPType: "private", ContentHash: "ab12",
	}
	want, err := jsonbytes.Marshal(p)
	require.NoError(t, err)
	got, ok := appendPipeline(nil, &p)
	require.True(t, ok)
	require.Equal(t, string(want), string(got))
}

// Values fill picks: plain ones (the fast path's) nearly always, awkward
// ones (left to encoding/json) now and then, so that both paths are run.
var (
	plainStrings   = []string{"", "", "a", "cls-1", "10.0.0.1", "system:serviceaccount:kube-system:x", "a b~/c", "<&>"}
	awkwardStrings = []string{`q"uote`, `back\slash`, "tab\t", "nl\n", "\x01", "é", "\u2028", "\xff", "\x7f"}
	plainFloats    = []float64{0, 1, 12.345, 0.000001, 1e20, -3.5, 1.0 / 3}
	awkwardFloats  = []float64{math.Copysign(0, -1), 0.0000001, 1e21, math.NaN(), math.Inf(1)}
	plainTimes     = []time.Time{{}, time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC), time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	awkwardTimes   = []time.Time{time.Date(2026, 1, 2, 3, 4, 5, 120000000, time.FixedZone("x", 3600)),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2026, 1, 2, 3, 4, 5, 6, time.FixedZone("y", 30*3600))}
)

func pick[T any](rnd *rand.Rand, plain, awkward []T) T {
	if rnd.IntN(50) == 0 {
		return awkward[rnd.IntN(len(awkward))]
	}
	return plain[rnd.IntN(len(plain))]
}

// fill sets v, and every field under it, to a random value; it fails on a
// kind it does not know, so a new kind of field is noticed here.
func fill(t *testing.T, rnd *rand.Rand, v reflect.Value) {
	t.Helper()
	if v.Type() == reflect.TypeFor[time.Time]() {
		v.Set(reflect.ValueOf(pick(rnd, plainTimes, awkwardTimes)))
		return
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(pick(rnd, plainStrings, awkwardStrings))
	case reflect.Bool:
		v.SetBool(rnd.IntN(2) == 0)
	case reflect.Int, reflect.Int32, reflect.Int64:
		v.SetInt(rnd.Int64N(1<<31) - 1<<30)
	case reflect.Float64:
		v.SetFloat(pick(rnd, plainFloats, awkwardFloats))
	case reflect.Pointer:
		if rnd.IntN(3) == 0 {
			v.SetZero()
			return
		}
		v.Set(reflect.New(v.Type().Elem()))
		fill(t, rnd, v.Elem())
	case reflect.Slice:
		switch n := rnd.IntN(5); n {
		case 0:
			v.SetZero()
		default:
			v.Set(reflect.MakeSlice(v.Type(), n-1, n-1))
			for i := range n - 1 {
				fill(t, rnd, v.Index(i))
			}
		}
	case reflect.Struct:
		for i := range v.NumField() {
			fill(t, rnd, v.Field(i))
		}
	default:
		t.Fatalf("fill: no values for %s", v.Type())
	}
}
