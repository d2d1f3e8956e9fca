package cls

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/auditpipe/auditpipe/schemas"
)

// CLS limits the flattener and the chunker respect (see
// ../shared/docs/cls.md). They are the service's, not tunables.
const (
	maxValueBytes = 1 << 20 // per value
	maxGroupBytes = 5 << 20 // values per LogGroup
	maxGroupLogs  = 10000   // logs per LogGroup
	// maxDepth keeps dotted keys well inside CLS's 10 nesting levels.
	maxDepth = 6
	// maxLogBytes caps one log's values, so that a log always fits a
	// LogGroup whatever else shares it with.
	maxLogBytes = 2 << 20
)

// truncMarker ends a value cut to fit CLS's 1 MB limit; %d is the
// original size in bytes. Searching for "auditpipe-truncated" finds them.
const truncMarker = "...[auditpipe-truncated: original %d bytes]"

// jsonValued are the fields that stay one JSON string instead of being
// flattened: request and response bodies (arbitrary objects: flattening
// them would create unbounded index keys), and maps whose keys are free
// text.
var jsonValued = map[string]bool{
	"requestObject":          true,
	"responseObject":         true,
	"user.extra":             true,
	"impersonatedUser.extra": true,
	"responseStatus.details": true,
}

// Flat is one event flattened for CLS.
type Flat struct {
	Cluster, AuditID, Stage string
	// ContentHash is auditpipe.contentHash, "" when absent.
	ContentHash string
	// TimeMs is stageTimestamp in unix milliseconds.
	TimeMs   int64
	Contents []KV
	// Truncated counts values cut to fit CLS's limits.
	Truncated int
	// Bytes is the sum of keys and values, the SDK's size measure.
	Bytes int
}

// KV is one CLS content.
type KV struct{ Key, Value string }

// Flatten turns a ProcessedEvent JSON into CLS key/values: nested objects
// become dotted keys (objectRef.resource, auditpipe.cluster), arrays and
// bodies become JSON strings, keys never start with '_' and use only the
// characters CLS indexes, values over 1 MB are cut with a marker. fallback
// is the log time when the event has no stageTimestamp.
func Flatten(value []byte, fallback time.Time) (Flat, error) {
	var f Flat
	if !utf8.Valid(value) {
		return f, errors.New("not valid UTF-8")
	}
	w := walker{f: &f, data: value}
	w.skipWS()
	if w.pos >= len(w.data) || w.data[w.pos] != '{' {
		return f, errors.New("not a JSON object")
	}
	if err := w.object("", 0); err != nil {
		return f, err
	}
	if w.skipWS(); w.pos != len(w.data) {
		return f, fmt.Errorf("trailing data at byte %d", w.pos)
	}
	for _, kv := range f.Contents {
		switch kv.Key {
		case "auditID":
			f.AuditID = kv.Value
		case "stage":
			f.Stage = kv.Value
		case schemas.PipelineKey + ".cluster":
			f.Cluster = kv.Value
		case schemas.PipelineKey + ".contentHash":
			f.ContentHash = kv.Value
		case "stageTimestamp":
			if t, err := time.Parse(time.RFC3339Nano, kv.Value); err == nil {
				f.TimeMs = t.UnixMilli()
			}
		}
	}
	switch {
	case f.Cluster == "":
		return f, fmt.Errorf("missing %s.cluster", schemas.PipelineKey)
	case f.AuditID == "":
		return f, errors.New("missing auditID")
	case f.Stage == "":
		return f, errors.New("missing stage")
	}
	if f.TimeMs == 0 {
		if fallback.IsZero() {
			fallback = time.Now()
		}
		f.TimeMs = fallback.UnixMilli()
	}
	fitLog(&f)
	for _, kv := range f.Contents {
		f.Bytes += len(kv.Key) + len(kv.Value)
	}
	return f, nil
}

func (f *Flat) addJSON(key string, raw json.RawMessage) error {
	var buf bytes.Buffer
	buf.Grow(len(raw))
	if err := json.Compact(&buf, raw); err != nil {
		return fmt.Errorf("%s: %w", key, err)
	}
	f.add(key, buf.String())
	return nil
}

func (f *Flat) add(key, value string) {
	if len(value) > maxValueBytes {
		value = truncate(value, maxValueBytes)
		f.Truncated++
	}
	f.Contents = append(f.Contents, KV{key, value})
}

// truncate cuts s to at most limit bytes including the marker, on a rune
// boundary.
func truncate(s string, limit int) string {
	marker := fmt.Sprintf(truncMarker, len(s))
	cut := max(limit-len(marker), 0)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + marker
}

// fitLog cuts the largest values until the log's values fit maxLogBytes:
// an event with several near-1 MB bodies would otherwise make a LogGroup
// CLS rejects with 403 LogSizeExceed, which the SDK retries for ever.
func fitLog(f *Flat) {
	total := 0
	for _, kv := range f.Contents {
		total += len(kv.Value)
	}
	for total > maxLogBytes {
		big := 0
		for i, kv := range f.Contents {
			if len(kv.Value) > len(f.Contents[big].Value) {
				big = i
			}
			_ = kv
		}
		v := f.Contents[big].Value
		limit := max(len(v)-(total-maxLogBytes), 256)
		nv := truncate(v, limit)
		total -= len(v) - len(nv)
		f.Contents[big].Value = nv
		f.Truncated++
	}
}

// sanitizeKey maps a JSON key onto CLS's key alphabet (letters, digits,
// _ - . / @), replacing anything else with '_', and never lets it start
// with '_' (reserved by CLS): such keys get a "k" prefix.
func sanitizeKey(k string) string {
	if k == "" {
		return "k"
	}
	ok := k[0] != '_'
	for i := 0; i < len(k) && ok; i++ {
		ok = keyByte(k[i])
	}
	if ok {
		return k
	}
	b := make([]byte, 0, len(k)+1)
	if k[0] == '_' {
		b = append(b, 'k')
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !keyByte(c) {
			c = '_'
		}
		b = append(b, c)
	}
	return string(b)
}

func keyByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '_' || c == '-' || c == '.' || c == '/' || c == '@'
}
