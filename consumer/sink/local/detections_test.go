package local_test

import (
	"context"
	"encoding/json"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/consumer/sink/local"
	"github.com/auditpipe/auditpipe/consumer/sink/local/localtest"
)

// TestSearchDetections: the processor stores matched rule ids as
// auditpipe.detections (a list); auditpipe.detections:<rule> finds exactly
// the events that matched the rule, with nothing added to the store for it.
func TestSearchDetections(t *testing.T) {
	s, _ := openStore(t, local.Options{})
	events := localtest.Falco(t)
	require.Greater(t, len(events), 6)
	marks := map[int][]string{
		0: {"privileged-pod"},
		2: {"exec-into-pod"},
		4: {"host-namespace-pod", "privileged-pod"},
		5: {"privileged-pod-audit"}, // a user rule whose id extends another's
	}
	var values [][]byte
	for i, e := range events {
		e.Pipeline.Detections = marks[i]
		b, err := json.Marshal(e.ProcessedEvent)
		require.NoError(t, err)
		values = append(values, b)
	}
	res, err := s.Write(context.Background(), values)
	require.NoError(t, err)
	require.Zero(t, res.Invalid)

	found := func(query string) []string {
		t.Helper()
		r, err := search(t, s, local.SearchRequest{Limit: 100}, query)
		require.NoError(t, err, query)
		var ids []string
		for _, raw := range r.Events {
			var ev struct {
				AuditID string `json:"auditID"`
			}
			require.NoError(t, json.Unmarshal(raw, &ev))
			ids = append(ids, ev.AuditID)
		}
		slices.Sort(ids)
		return ids
	}
	want := func(idx ...int) []string {
		var ids []string
		for _, i := range idx {
			ids = append(ids, events[i].AuditID)
		}
		slices.Sort(ids)
		return ids
	}
	require.Equal(t, want(2), found(`auditpipe.detections:exec-into-pod`))
	require.Equal(t, want(4), found(`auditpipe.detections:host-namespace-pod`))
	require.Equal(t, want(0, 2, 4, 5), found(`auditpipe.detections:*`))
	// CLS's words: '-' does not split one (decision 0006), so the longer
	// id privileged-pod-audit is another word and is not found.
	require.Equal(t, want(0, 4), found(`auditpipe.detections:privileged-pod`))
}
