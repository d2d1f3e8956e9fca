package localtest

import (
	"cmp"
	"encoding/json"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/schemas"
)

// Key is an event's identity without the content hash (decision 0012).
type Key struct{ Cluster, AuditID, Stage string }

// KeyOf is the Key of a stored or written event.
func KeyOf(tb testing.TB, raw []byte) Key {
	tb.Helper()
	var ev schemas.ProcessedEvent
	require.NoError(tb, json.Unmarshal(raw, &ev))
	return Key{ev.Pipeline.Cluster, ev.AuditID, ev.Stage}
}

// Keys are the Keys of events, in their order.
func Keys(tb testing.TB, events []json.RawMessage) []Key {
	tb.Helper()
	out := make([]Key, 0, len(events))
	for _, e := range events {
		out = append(out, KeyOf(tb, e))
	}
	return out
}

// WantKeys returns the Keys of the events match accepts, in the stores'
// result order: newest stageTimestamp first, then cluster, auditID, stage.
func WantKeys(events []Event, match func(Event) bool) []Key {
	var sel []Event
	for _, e := range events {
		if match(e) {
			sel = append(sel, e)
		}
	}
	slices.SortFunc(sel, func(a, b Event) int {
		if c := b.StageTimestamp.UnixMilli() - a.StageTimestamp.UnixMilli(); c != 0 {
			return cmp.Compare(c, 0)
		}
		return cmp.Or(cmp.Compare(a.Pipeline.Cluster, b.Pipeline.Cluster),
			cmp.Compare(a.AuditID, b.AuditID), cmp.Compare(a.Stage, b.Stage))
	})
	out := []Key{}
	for _, e := range sel {
		out = append(out, Key{e.Pipeline.Cluster, e.AuditID, e.Stage})
	}
	return out
}

// WithHash returns e's JSON with auditpipe.contentHash set to h and change
// (when not nil) applied to the event.
func WithHash(tb testing.TB, e Event, h string, change func(*schemas.ProcessedEvent)) []byte {
	tb.Helper()
	pe := e.ProcessedEvent
	pe.Pipeline.ContentHash = h
	if change != nil {
		change(&pe)
	}
	b, err := json.Marshal(pe)
	require.NoError(tb, err)
	return b
}

// AsMap decodes a stored or written event for comparison.
func AsMap(tb testing.TB, b []byte) map[string]any {
	tb.Helper()
	var m map[string]any
	require.NoError(tb, json.Unmarshal(b, &m))
	return m
}
