package replay_test

import (
	"context"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/processor/policies"
	"github.com/auditpipe/auditpipe/processor/replay"
)

// BenchmarkReplay measures a replay of the public fixtures (871 raw
// records, ~630 KiB) from the in-process broker through the TKE default
// policy: dry (read + pipeline + counting) and into a Kafka topic (plus
// produce with acks=all and one fsynced checkpoint per batch).
func BenchmarkReplay(b *testing.B) {
	e := setup(b, 1)
	pol := loadPolicy(b, policies.TKEDefaultName, policies.TKEDefault)
	ctx := context.Background()
	bounds, err := e.reader.Bounds(ctx, e.raw)
	require.NoError(b, err)
	var records int64
	for _, r := range bounds {
		records += r.Len()
	}
	// The reader of setup hands batches of 7; use the command's default.
	reader := newReader(b, e.brokers, 500)

	run := func(b *testing.B, cfg replay.Config, deps replay.Deps) {
		deps.Reader, deps.Policy = reader, pol
		var bytesRead int64
		start := time.Now()
		for i := 0; b.Loop(); i++ {
			c := cfg
			if !c.DryRun {
				c.Checkpoint = filepath.Join(b.TempDir(), "cp-"+strconv.Itoa(i)+".json")
			}
			r, err := replay.New(c, deps)
			require.NoError(b, err)
			sum, err := r.Run(ctx)
			require.NoError(b, err)
			bytesRead = sum.ReadBytes
		}
		b.SetBytes(bytesRead)
		b.ReportMetric(float64(records)*float64(b.N)/time.Since(start).Seconds(), "events/s")
	}
	b.Run("dry-run", func(b *testing.B) {
		run(b, replay.Config{Topic: e.raw, DryRun: true}, replay.Deps{})
	})
	b.Run("kafka-target", func(b *testing.B) {
		target := e.topic(b, "bench")
		run(b, replay.Config{Topic: e.raw}, replay.Deps{Target: replay.KafkaTarget{Producer: e.prod, Topic: target}})
	})
}
