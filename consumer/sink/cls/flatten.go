package cls

import (
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/auditpipe/auditpipe/consumer/internal/flatten"
	"github.com/auditpipe/auditpipe/schemas"
)

// CLS limits the flattener and the chunker respect (see
// ../shared/docs/cls.md). They are the service's, not tunables.
const (
	maxValueBytes = 1 << 20 // per value
	maxGroupBytes = 5 << 20 // values per LogGroup
	maxGroupLogs  = 10000   // logs per LogGroup
	// maxLogBytes caps one log's values, so that a log always fits a
	// LogGroup whatever else shares it with.
	maxLogBytes = 2 << 20
)

// truncMarker ends a value cut to fit CLS's 1 MB limit; %d is the
// original size in bytes. Searching for "auditpipe-truncated" finds them.
const truncMarker = "...[auditpipe-truncated: original %d bytes]"

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

// Flatten turns a ProcessedEvent JSON into CLS key/values named by
// consumer/internal/flatten (the key names the local store searches by too):
// nested objects become dotted keys (objectRef.resource, auditpipe.cluster),
// arrays and bodies become JSON strings, keys never start with '_' and use
// only the characters CLS indexes. Values over 1 MB are cut with a marker. fallback
// is the log time when the event has no stageTimestamp.
func Flatten(value []byte, fallback time.Time) (Flat, error) {
	var f Flat
	if !utf8.Valid(value) {
		return f, errors.New("not valid UTF-8")
	}
	err := flatten.Walk(value, func(key, v string, _ flatten.Kind) error {
		f.add(key, v)
		return nil
	})
	if err != nil {
		return f, err
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
