package rawevent

import (
	"math"
	"strconv"
	"time"

	"github.com/auditpipe/auditpipe/schemas"
)

// appendPipeline appends the JSON of p, byte for byte what
// jsonbytes.Marshal(p) writes, without encoding/json's reflection (a tenth
// of the processor's CPU per event when it went through encoding/json).
// It handles the forms the pipeline writes: strings of printable ASCII
// without quotes or backslashes, UTC times within years 0 to 9999, latencies
// that encoding/json writes without an exponent. On anything else it
// returns false, and the caller encodes with encoding/json, which then
// also refuses what it refuses. TestAppendPipelineMatchesEncodingJSON
// fills every field of the schema, so a field added to schemas.Pipeline
// but not here fails it.
func appendPipeline(dst []byte, p *schemas.Pipeline) ([]byte, bool) {
	w := pipelineWriter{b: dst, ok: true}
	w.b = append(w.b, `{"schemaVersion":`...)
	w.b = strconv.AppendInt(w.b, int64(p.SchemaVersion), 10)
	w.str(`,"cluster":`, p.Cluster)
	w.str(`,"source":`, p.Source)
	w.time(`,"receivedAt":`, p.ReceivedAt)
	w.time(`,"processedAt":`, p.ProcessedAt)
	w.str(`,"originalLevel":`, p.OriginalLevel)
	w.str(`,"origin":{"topic":`, p.Origin.Topic)
	w.b = append(w.b, `,"partition":`...)
	w.b = strconv.AppendInt(w.b, int64(p.Origin.Partition), 10)
	w.b = append(w.b, `,"offset":`...)
	w.b = strconv.AppendInt(w.b, p.Origin.Offset, 10)
	w.b = append(w.b, '}')
	w.strs(`,"redacted":`, p.Redacted)
	if p.Truncated {
		w.b = append(w.b, `,"truncated":true`...)
	}
	if c := p.ClusterInfo; c != nil {
		w.b = append(w.b, `,"clusterInfo":{`...)
		n := len(w.b)
		w.optStr(`"displayName":`, c.DisplayName, n)
		w.optStr(`"region":`, c.Region, n)
		w.optStr(`"environment":`, c.Environment, n)
		w.optStr(`"owner":`, c.Owner, n)
		w.b = append(w.b, '}')
	}
	w.principal(`,"principal":`, p.Principal)
	w.principal(`,"impersonated":`, p.Impersonated)
	w.optStr(`,"operation":`, p.Operation, -1)
	w.optStr(`,"outcome":`, p.Outcome, -1)
	if p.LatencyMs != nil {
		w.b = append(w.b, `,"latencyMs":`...)
		w.float(*p.LatencyMs)
	}
	w.optStr(`,"sourceIP":`, p.SourceIP, -1)
	w.optStr(`,"sourceIPType":`, p.SourceIPType, -1)
	if p.AuditIDReused {
		w.b = append(w.b, `,"auditIDReused":true`...)
	}
	w.strs(`,"cut":`, p.Cut)
	w.optStr(`,"contentHash":`, p.ContentHash, -1)
	w.strs(`,"detections":`, p.Detections)
	w.b = append(w.b, '}')
	return w.b, w.ok
}

// pipelineWriter appends JSON to b; ok turns false at the first value it
// cannot write as encoding/json would.
type pipelineWriter struct {
	b  []byte
	ok bool
}

// str appends key (with its colon and any leading comma) and s.
func (w *pipelineWriter) str(key, s string) {
	w.b = append(w.b, key...)
	w.quote(s)
}

// optStr is str for an omitempty field. first is the length of b right
// after the enclosing object's opening brace: the key's leading comma is
// dropped when the field is the object's first (-1: never first).
func (w *pipelineWriter) optStr(key, s string, first int) {
	if s == "" {
		return
	}
	if first >= 0 && len(w.b) > first {
		w.b = append(w.b, ',')
	}
	w.str(key, s)
}

// quote appends s as a JSON string when it needs no escaping.
func (w *pipelineWriter) quote(s string) {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			w.ok = false
			return
		}
	}
	w.b = append(w.b, '"')
	w.b = append(w.b, s...)
	w.b = append(w.b, '"')
}

// strs appends an omitempty []string field.
func (w *pipelineWriter) strs(key string, list []string) {
	if len(list) == 0 {
		return
	}
	w.b = append(w.b, key...)
	w.b = append(w.b, '[')
	for i, s := range list {
		if i > 0 {
			w.b = append(w.b, ',')
		}
		w.quote(s)
	}
	w.b = append(w.b, ']')
}

func (w *pipelineWriter) principal(key string, p *schemas.Principal) {
	if p == nil {
		return
	}
	w.str(key+`{"type":`, p.Type)
	w.optStr(`,"namespace":`, p.Namespace, -1)
	w.optStr(`,"name":`, p.Name, -1)
	w.b = append(w.b, '}')
}

// time appends a UTC t as time.Time's MarshalJSON does (RFC 3339 with
// nanoseconds); other zones and years outside 0 to 9999 are left to it.
func (w *pipelineWriter) time(key string, t time.Time) {
	if _, offset := t.Zone(); offset != 0 || t.Year() < 0 || t.Year() > 9999 {
		w.ok = false
		return
	}
	w.b = append(w.b, key...)
	w.b = append(w.b, '"')
	w.b = t.AppendFormat(w.b, time.RFC3339Nano)
	w.b = append(w.b, '"')
}

// float appends f as encoding/json does when it needs no exponent.
func (w *pipelineWriter) float(f float64) {
	if a := math.Abs(f); math.IsNaN(f) || math.IsInf(f, 0) || (a != 0 && (a < 1e-6 || a >= 1e21)) {
		w.ok = false
		return
	}
	w.b = strconv.AppendFloat(w.b, f, 'f', -1, 64)
}
