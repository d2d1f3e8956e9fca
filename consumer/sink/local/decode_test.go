package local

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/consumer/internal/eventgen"
	"github.com/auditpipe/auditpipe/consumer/sink/local/localtest"
	"github.com/auditpipe/auditpipe/schemas"
)

// decodeRow reads the columns in its walk over the JSON (decision 0025);
// they must be exactly what decoding the event into schemas.ProcessedEvent
// gives, as the store computed them before.
func TestDecodeRowColumnsMatchTheSchemaDecode(t *testing.T) {
	values := localtest.Values(localtest.All(t))
	ts := time.Date(2026, 5, 1, 10, 0, 0, 123456000, time.UTC)
	for i, size := range []int{1400, 9000, 22 << 10} {
		values = append(values, eventgen.Event("c1", fmt.Sprintf("gen-%d", i), size, ts))
	}
	// Edge cases a decoder into the schema type handles in its own way.
	values = append(values,
		[]byte(`{"auditID":"a","stage":"ResponseComplete","verb":"get","auditpipe":{"cluster":"c"},"responseStatus":{"code":0},"sourceIPs":[],"user":{"groups":[]}}`),
		[]byte(`{"auditID":"b","stage":"ResponseComplete","auditpipe":{"cluster":"c"},"objectRef":null,"stageTimestamp":null,"user":{"groups":["x",null,"y"]}}`),
		[]byte("{ \"auditID\" : \"c\",\n \"stage\":\"Panic\", \"auditpipe\": {\"cluster\":\"c\", \"receivedAt\":\"2026-05-01T10:00:00.5+02:00\"}, \"sourceIPs\":[\"10.0.0.1\",\"10.0.0.2\"] }"),
	)
	var buf bytes.Buffer
	for i, v := range values {
		got, err := decodeRow(v, &buf)
		require.NoError(t, err, "value %d", i)
		var ev schemas.ProcessedEvent
		require.NoError(t, json.Unmarshal(v, &ev), "value %d", i)
		want := eventRow{
			cluster: ev.Pipeline.Cluster,
			auditID: ev.AuditID,
			stage:   ev.Stage,
			compared: compared{
				contentHash:     ev.Pipeline.ContentHash,
				level:           ev.Level,
				verb:            ev.Verb,
				username:        ev.User.Username,
				groups:          strings.Join(ev.User.Groups, "\n"),
				userAgent:       ev.UserAgent,
				requestReceived: unixMilli(ev.RequestReceivedTimestamp),
				stageTS:         unixMilli(ev.StageTimestamp),
			},
			receivedAt: unixMilli(ev.Pipeline.ReceivedAt),
		}
		if o := ev.ObjectRef; o != nil {
			want.resource, want.subresource, want.namespace, want.name, want.apiGroup = o.Resource, o.Subresource, o.Namespace, o.Name, o.APIGroup
		}
		if st := ev.ResponseStatus; st != nil && st.Code != 0 {
			want.code.Int64, want.code.Valid = int64(st.Code), true
		}
		if len(ev.SourceIPs) > 0 {
			want.sourceIP = ev.SourceIPs[0]
		}
		buf.Reset()
		require.NoError(t, json.Compact(&buf, v))
		want.event = buf.String()
		text, kv, err := indexWords(buf.Bytes(), nil, nil)
		require.NoError(t, err)
		want.text, want.kv = string(text), string(kv)
		require.Equal(t, want, got, "value %d", i)
	}
}

// A column of the wrong JSON type makes the value invalid, as the decode
// into the schema type did; the rest of the document does not matter.
func TestDecodeRowRejectsColumnsOfTheWrongType(t *testing.T) {
	base := `"auditID":"a","stage":"ResponseComplete","auditpipe":{"cluster":"c"}`
	for _, extra := range []string{
		`"verb":5`,
		`"user":{"groups":"admins"}`,
		`"responseStatus":{"code":"200"}`,
		`"responseStatus":{"code":200.5}`,
		`"stageTimestamp":"yesterday"`,
		`"sourceIPs":[1]`,
		`"auditpipe":{"cluster":true}`,
	} {
		v := []byte("{" + base + "," + extra + "}")
		var buf bytes.Buffer
		_, err := decodeRow(v, &buf)
		require.Error(t, err, "%s", v)
		var ev schemas.ProcessedEvent
		require.Error(t, json.Unmarshal(v, &ev), "the schema decode accepts %s", v)
	}
}
