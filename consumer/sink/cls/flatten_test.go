package cls

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestFlatten(t *testing.T) {
	ev := `{"kind":"Event","auditID":"a1","stage":"ResponseComplete","verb":"create",
	"user":{"username":"alice","groups":["g1","g2"],"extra":{"scopes.example.com/x":["1"]}},
	"objectRef":{"resource":"pods","namespace":"ns"},"responseStatus":{"code":201},
	"requestObject":{"kind":"Pod","spec":{"a":[1,2]}},"stageTimestamp":"2026-11-27T10:00:00.123456Z",
	"annotations":{"authorization.k8s.io/decision":"allow","weird key:x":"v"},
	"_private":"p","nothing":null,"ok":true,
	"auditpipe":{"cluster":"c1","schemaVersion":1}}`
	f, err := Flatten([]byte(ev), time.Time{})
	require.NoError(t, err)
	got := map[string]string{}
	for _, kv := range f.Contents {
		require.False(t, strings.HasPrefix(kv.Key, "_"), kv.Key)
		got[kv.Key] = kv.Value
	}
	require.Equal(t, map[string]string{
		"kind": "Event", "auditID": "a1", "stage": "ResponseComplete", "verb": "create",
		"user.username": "alice", "user.groups": `["g1","g2"]`, "user.extra.scopes.example.com/x": `["1"]`,
		"objectRef.resource": "pods", "objectRef.namespace": "ns", "responseStatus.code": "201",
		"requestObject":  `{"kind":"Pod","spec":{"a":[1,2]}}`,
		"stageTimestamp": "2026-11-27T10:00:00.123456Z",
		"annotations.authorization.k8s.io/decision": "allow", "annotations.weird_key_x": "v",
		"k_private": "p", "ok": "true",
		"auditpipe.cluster": "c1", "auditpipe.schemaVersion": "1",
	}, got)
	require.Equal(t, "c1", f.Cluster)
	require.Equal(t, "a1", f.AuditID)
	require.Equal(t, time.Date(2026, 11, 27, 10, 0, 0, 123e6, time.UTC).UnixMilli(), f.TimeMs)
}

func TestFlattenRejects(t *testing.T) {
	for name, v := range map[string]string{
		"not json":   `nope`,
		"array":      `[1]`,
		"no cluster": `{"auditID":"a","stage":"s"}`,
		"no auditID": `{"stage":"s","auditpipe":{"cluster":"c"}}`,
		"bad utf8":   "{\"auditID\":\"\xff\"}",
	} {
		_, err := Flatten([]byte(v), time.Time{})
		require.Error(t, err, name)
	}
}

func TestTruncateKeepsUTF8AndLimit(t *testing.T) {
	s := strings.Repeat("é", maxValueBytes) // 2 bytes per rune
	out := truncate(s, maxValueBytes)
	require.LessOrEqual(t, len(out), maxValueBytes)
	require.True(t, strings.HasSuffix(out, "...[auditpipe-truncated: original 2097152 bytes]"))
	require.True(t, strings.HasPrefix(out, "éé"))
	require.NotContains(t, out, "\uFFFD")
}

func TestFitLogCapsAnEvent(t *testing.T) {
	f := Flat{Contents: []KV{{"a", strings.Repeat("a", 1<<20)}, {"b", strings.Repeat("b", 1<<20)}, {"c", strings.Repeat("c", 1<<20)}, {"d", "small"}}}
	fitLog(&f)
	total := 0
	for _, kv := range f.Contents {
		total += len(kv.Value)
	}
	require.LessOrEqual(t, total, maxLogBytes)
	require.Equal(t, "small", f.Contents[3].Value)
}
