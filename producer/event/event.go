// Package event holds what the webhook receiver and the file tailer both
// do to one audit event before it becomes a raw-topic record: check that
// it is an audit event at all, find its key, and shrink it the way
// kube-apiserver's truncate backend does when it is too large.
package event

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// TruncatedAnnotation is the annotation kube-apiserver's truncate backend
// sets on an event whose bodies it dropped.
const TruncatedAnnotation = "audit.k8s.io/truncated"

// Identity is the part of an event the producer needs.
type Identity struct {
	Kind    string `json:"kind"`
	AuditID string `json:"auditID"`
	Stage   string `json:"stage"`
}

// Identify parses the identity of item; reason is set when item is not an
// audit event.
func Identify(item []byte) (Identity, string) {
	var id Identity
	trimmed := bytes.TrimSpace(item)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return id, "not a JSON object"
	}
	if err := json.Unmarshal(item, &id); err != nil {
		return id, "not an audit event: " + err.Error()
	}
	return id, checkIdentity(id)
}

// checkIdentity says why a decoded identity is not an audit event's, ""
// when it is.
func checkIdentity(id Identity) string {
	switch {
	case id.Kind != "" && id.Kind != "Event":
		return fmt.Sprintf("not an audit event: kind %q", id.Kind)
	case id.AuditID == "":
		return "not an audit event: no auditID"
	case id.Stage == "":
		return "not an audit event: no stage"
	}
	return ""
}

// Classify decides what becomes of item under a size limit of maxBytes.
// value is what goes on the raw topic: item itself when it fits (the bytes
// as sent), or item without its bodies (truncated is then true). When
// reason is set the item belongs on the dead-letter topic, and value is
// item cut to maxBytes so that the dead letter fits in a Kafka record.
func Classify(item []byte, maxBytes int) (id Identity, value []byte, truncated bool, reason string) {
	return classify(item, maxBytes, Identify)
}

// ClassifyValid is Classify for an item known to be valid JSON, such as
// an item of an EventList that was validated as a whole: it reads the
// identity without a second validating pass.
func ClassifyValid(item []byte, maxBytes int) (id Identity, value []byte, truncated bool, reason string) {
	return classify(item, maxBytes, identifyValid)
}

func classify(item []byte, maxBytes int, identify func([]byte) (Identity, string)) (id Identity, value []byte, truncated bool, reason string) {
	id, reason = identify(item)
	if reason == "" && len(item) > maxBytes {
		var small []byte
		if small, reason = Truncate(item, maxBytes); reason == "" {
			return id, small, true, ""
		}
	}
	if reason != "" {
		if len(item) > maxBytes {
			reason += fmt.Sprintf(" (item of %d bytes cut to its first %d)", len(item), maxBytes)
			item = item[:maxBytes]
		}
		return id, item, false, reason
	}
	return id, item, false, ""
}

// Truncate drops requestObject and responseObject from an oversized event
// and annotates it, as kube-apiserver's truncate backend does. This is the
// one case where the raw topic holds re-encoded bytes rather than the
// bytes as sent. reason is set when the event is still too large.
func Truncate(item []byte, limit int) ([]byte, string) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(item, &fields); err != nil {
		return nil, "not an audit event: " + err.Error()
	}
	delete(fields, "requestObject")
	delete(fields, "responseObject")
	annotations := map[string]string{}
	if raw, ok := fields["annotations"]; ok && string(raw) != "null" {
		// Annotations that are not a string map go to the DLQ with the
		// reason rather than being silently replaced.
		if err := json.Unmarshal(raw, &annotations); err != nil {
			return nil, fmt.Sprintf("event of %d bytes exceeds the limit of %d, and its annotations are not a string map: %v", len(item), limit, err)
		}
	}
	annotations[TruncatedAnnotation] = "true"
	a, _ := json.Marshal(annotations)
	fields["annotations"] = a
	out, err := json.Marshal(fields)
	if err != nil {
		return nil, "re-encode truncated event: " + err.Error()
	}
	if len(out) > limit {
		return nil, fmt.Sprintf("event exceeds maxEventBytes %d even without requestObject and responseObject (%d bytes)", limit, len(out))
	}
	return out, ""
}
