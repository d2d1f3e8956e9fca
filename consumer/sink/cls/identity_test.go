package cls_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/consumer/internal/eventgen"
	"github.com/auditpipe/auditpipe/consumer/sink/cls/clslocal"
	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/schemas"
)

// event returns a processed event of cluster alpha under auditID "reused"
// with content hash h, changed by change.
func event(t *testing.T, h string, change func(*schemas.ProcessedEvent)) kafka.Record {
	t.Helper()
	var pe schemas.ProcessedEvent
	require.NoError(t, json.Unmarshal(eventgen.Event("alpha", "reused", 900, time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)), &pe))
	pe.Pipeline.ContentHash = h
	if change != nil {
		change(&pe)
	}
	b, err := json.Marshal(pe)
	require.NoError(t, err)
	return kafka.Record{Topic: "audit.events", Value: b}
}

// TestReusedAuditIDIsMarkedAndRedeliveriesSkipped: decision 0012 as far as
// one process can see it (identity.go).
func TestReusedAuditIDIsMarkedAndRedeliveriesSkipped(t *testing.T) {
	srv, s, reg := setup(t, "lz4")
	ctx := context.Background()
	harmless := event(t, strings.Repeat("a", 64), nil)
	malicious := event(t, strings.Repeat("b", 64), func(pe *schemas.ProcessedEvent) {
		pe.Verb, pe.User.Username = "delete", "mallory"
	})

	// In one batch: the first is sent as is, its copy skipped, the other
	// event sent and marked.
	require.NoError(t, s.Write(ctx, []kafka.Record{harmless, harmless, malicious}))
	// A redelivery of everything sends nothing.
	require.NoError(t, s.Write(ctx, []kafka.Record{malicious, harmless}))
	// A third event under the id in a later batch is marked too.
	third := event(t, strings.Repeat("c", 64), func(pe *schemas.ProcessedEvent) { pe.Verb = "patch" })
	require.NoError(t, s.Write(ctx, []kafka.Record{third}))

	logs := srv.Logs()
	require.Len(t, logs, 3)
	marked := map[string]string{}
	for _, l := range logs {
		verb, _ := l.Get("verb")
		reused, _ := l.Get("auditpipe.auditIDReused")
		marked[verb] = reused
		h, _ := l.Get("auditpipe.contentHash")
		require.Len(t, h, 64, "the hash reaches CLS, so searches can group by it")
	}
	require.Equal(t, map[string]string{"update": "", "delete": "true", "patch": "true"}, marked)
	require.Equal(t, 2.0, testutil.ToFloat64(metric(t, reg, "auditpipe_clssink_auditid_reused_total", "")))
	require.Equal(t, 3.0, testutil.ToFloat64(metric(t, reg, "auditpipe_clssink_logs_total", "duplicate")))
	require.Equal(t, 3.0, testutil.ToFloat64(metric(t, reg, "auditpipe_clssink_logs_total", "sent")))
}

// TestUnacknowledgedIsNotRemembered: a batch abandoned before CLS
// acknowledged it (revoked partition) is sent in full when it comes again.
func TestUnacknowledgedIsNotRemembered(t *testing.T) {
	srv, s, reg := setup(t, "lz4")
	srv.FailAlways("topic-alpha", clslocal.FaultUnauthorized)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	rec := event(t, strings.Repeat("a", 64), nil)
	require.Error(t, s.Write(ctx, []kafka.Record{rec}))
	srv.Heal("topic-alpha")
	require.NoError(t, s.Write(context.Background(), []kafka.Record{rec}))
	// (The SDK's own retry of the abandoned send may land too: CLS can
	// hold the event twice, never zero times.)
	require.Equal(t, 0.0, testutil.ToFloat64(metric(t, reg, "auditpipe_clssink_logs_total", "duplicate")))
	require.GreaterOrEqual(t, srv.LogCount("topic-alpha"), int64(1))
}

// TestEventsWithoutHashAreAlwaysSent: from a processor before decision
// 0012 nothing tells a redelivery from a reuse, so the sink sends both
// and marks nothing (as before).
func TestEventsWithoutHashAreAlwaysSent(t *testing.T) {
	srv, s, reg := setup(t, "lz4")
	rec := event(t, "", nil)
	require.NoError(t, s.Write(context.Background(), []kafka.Record{rec, rec}))
	require.Equal(t, int64(2), srv.LogCount("topic-alpha"))
	require.Equal(t, 0.0, testutil.ToFloat64(metric(t, reg, "auditpipe_clssink_auditid_reused_total", "")))
}
