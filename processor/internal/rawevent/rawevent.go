// Package rawevent keeps an apiserver audit event as the JSON it was sent
// in and edits only what the pipeline must change, so that the processed
// event is the apiserver's event: every member it sent keeps its value
// and its form (timestamps, numbers, escapes, members this version of
// auditpipe does not know), nothing it did not send is added, and only
// the policy (level, bodies), redaction, the size limit and the added
// top-level "auditpipe" member change it.
//
// The typed schemas.Event is only a view for reading (policy evaluation,
// redaction hints, enrichment). To make every later reader (the policy,
// the redactor, encoding/json in the store, SQLite's json_extract, CLS)
// see the same values, Parse first normalizes the bytes: repeated keys
// keep their last member (as encoding/json reads them), containers
// nested deeper than MaxDepth are cut and marked, and events that
// readers could still read differently are refused: invalid UTF-8, a
// member of the typed part whose key differs from a field's name only in
// case, or an "auditpipe" member of their own.
package rawevent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/auditpipe/auditpipe/internal/jsonbytes"
	"github.com/auditpipe/auditpipe/schemas"
)

// MaxDepth is the deepest nesting kept (the event object is level 1):
// far deeper than any Kubernetes object (a CRD's schema is a few dozen
// levels), and far below the 1000 levels past which SQLite's JSON
// functions fail, which would break every search of the local store that
// touches the event.
const MaxDepth = 256

// Top-level members the pipeline edits.
const (
	keyLevel          = "level"
	keyRequestObject  = "requestObject"
	keyResponseObject = "responseObject"
	keyAnnotations    = "annotations"
)

// cutValue replaces a container nested deeper than MaxDepth.
var cutValue = []byte(strconv.Quote(schemas.CutValue))

// Event is an apiserver event as normalized JSON with its top-level
// members located.
type Event struct {
	value   []byte
	members []jsonbytes.Member
	keys    [][]byte // unescaped keys of members
	level   string   // the level as sent
	cut     []string
}

// Cut returns the JSON Pointers of the subtrees replaced with
// schemas.CutValue because they were nested deeper than MaxDepth.
func (e *Event) Cut() []string { return e.cut }

// Parse normalizes value and decodes its typed view, or says why it is
// not an event the pipeline can pass on (a reason for the DLQ).
func Parse(value []byte) (*Event, schemas.Event, string) {
	if !utf8.Valid(value) {
		// Decoders replace invalid bytes with U+FFFD, so two events that
		// differ only there would become one; no valid rendering keeps
		// them apart without changing valid events too.
		off := invalidUTF8(value)
		return nil, schemas.Event{}, fmt.Sprintf("not valid UTF-8: byte %#x at offset %d", value[off], off)
	}
	var buf [24]jsonbytes.Member // an event has about 18 top-level members
	n, err := jsonbytes.Normalize(value, MaxDepth, cutValue, buf[:0])
	if err != nil {
		// encoding/json says what is wrong in the words operators know.
		if _, reason := decodeTyped(value); reason != "" {
			return nil, schemas.Event{}, reason
		}
		return nil, schemas.Event{}, "not JSON: " + err.Error()
	}
	e := &Event{value: n.Value, members: n.Members, keys: make([][]byte, len(n.Members)), cut: n.Cut}
	var req, resp []byte
	for i, m := range n.Members {
		key := m.Key
		if m.KeyEscaped {
			key = []byte(unquote(n.Value[m.Start:m.ValueStart]))
		}
		e.keys[i] = key
		switch string(key) {
		case keyRequestObject:
			req = n.Value[m.ValueStart:m.ValueEnd]
		case keyResponseObject:
			resp = n.Value[m.ValueStart:m.ValueEnd]
		}
	}
	if reason := e.ambiguous(); reason != "" {
		return nil, schemas.Event{}, reason
	}
	ev, reason := decodeView(n.Value, e, req, resp)
	if reason != "" {
		return nil, ev, reason
	}
	e.level = ev.Level
	return e, ev, ""
}

// decodeView decodes the typed view of the normalized value: with
// decodeFast when it can, else with encoding/json.
func decodeView(value []byte, e *Event, req, resp []byte) (schemas.Event, string) {
	if ev, ok := decodeFast(value, e.members, e.keys); ok {
		ev.RequestObject, ev.ResponseObject = req, resp
		return ev, checkTyped(ev)
	}
	return decodeSlow(value, e, req, resp)
}

// decodeSlow decodes the typed view with encoding/json.
func decodeSlow(value []byte, e *Event, req, resp []byte) (schemas.Event, string) {
	var ev schemas.Event
	var reason string
	if req == nil && resp == nil {
		ev, reason = decodeTyped(value)
	} else {
		// The bodies, nearly all of a large event, are not decoded: the
		// typed view gets them as the sub-slices they are.
		head := jsonbytes.Without(value, e.members, func(m jsonbytes.Member) bool {
			k := e.keyOf(m)
			return string(k) == keyRequestObject || string(k) == keyResponseObject
		})
		ev, reason = decodeTyped(head)
		ev.RequestObject, ev.ResponseObject = req, resp
	}
	return ev, reason
}

// keyOf returns the unescaped key of m, one of e.members.
func (e *Event) keyOf(m jsonbytes.Member) []byte {
	for i := range e.members {
		if e.members[i].Start == m.Start {
			return e.keys[i]
		}
	}
	return m.Key
}

// unquote returns the key of a member from its bytes up to its value
// (the quoted key, whitespace and the colon).
func unquote(keyColon []byte) string {
	end := bytes.LastIndexByte(keyColon, ':')
	var s string
	_ = json.Unmarshal(bytes.TrimSpace(keyColon[:end]), &s) // validated by Normalize
	return s
}

func invalidUTF8(b []byte) int {
	for i := 0; i < len(b); {
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && size == 1 {
			return i
		}
		i += size
	}
	return 0
}

// Field names of the typed view, by the object they are in.
var (
	eventFields  = jsonNames(reflect.TypeFor[schemas.ProcessedEvent]())
	userFields   = jsonNames(reflect.TypeFor[schemas.UserInfo]())
	objectFields = jsonNames(reflect.TypeFor[schemas.ObjectReference]())
	statusFields = jsonNames(reflect.TypeFor[schemas.Status]())
)

// fieldSet is the JSON names of a struct's fields.
type fieldSet map[string]bool

func jsonNames(t reflect.Type) fieldSet {
	names := fieldSet{}
	for f := range t.Fields() {
		if f.Anonymous {
			for n := range jsonNames(f.Type) {
				names[n] = true
			}
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name != "" && name != "-" {
			names[name] = true
		}
	}
	return names
}

// ambiguous refuses events that readers could still read differently
// after normalization: encoding/json matches a struct field's name case
// insensitively, so {"verb":"get","Verb":"delete"} is "delete" to the
// policy and to the store's Go decoder but "get" to json_extract; and an
// "auditpipe" member of the event's own would be read as (or merged
// into) the processor's.
func (e *Event) ambiguous() string {
	for i, key := range e.keys {
		if bytes.EqualFold(key, []byte(schemas.PipelineKey)) {
			return fmt.Sprintf("not an audit event: it has a member %q, the key the processor adds", key)
		}
		if r := caseVariant(key, eventFields, nil); r != "" {
			return r
		}
		var fields fieldSet
		switch string(key) {
		case "user", "impersonatedUser":
			fields = userFields
		case "objectRef":
			fields = objectFields
		case "responseStatus":
			fields = statusFields
		default:
			continue
		}
		m := e.members[i]
		var reason string
		err := jsonbytes.Members(e.value[m.ValueStart:m.ValueEnd], func(sub jsonbytes.Member) {
			k := sub.Key
			if sub.KeyEscaped {
				k = []byte(unquote(e.value[m.ValueStart:m.ValueEnd][sub.Start:sub.ValueStart]))
			}
			if r := caseVariant(k, fields, key); r != "" && reason == "" {
				reason = r
			}
		})
		if err != nil && !errors.Is(err, jsonbytes.ErrNotObject) {
			return "not JSON: " + err.Error()
		}
		if reason != "" {
			return reason
		}
	}
	return ""
}

// caseVariant says why name is ambiguous when it differs from one of
// fields only in case (as encoding/json folds it, which includes U+212A
// KELVIN SIGN for "k").
func caseVariant(name []byte, fields fieldSet, parent []byte) string {
	if fields[string(name)] {
		return "" // the field itself: nearly every member
	}
	for f := range fields {
		if bytes.EqualFold(name, []byte(f)) {
			prefix := ""
			if parent != nil {
				prefix = string(parent) + "."
			}
			return fmt.Sprintf("not an audit event: member %s%q differs from the field %q only in case", prefix, name, f)
		}
	}
	return ""
}

// decodeTyped decodes the typed view with encoding/json.
func decodeTyped(value []byte) (schemas.Event, string) {
	var ev schemas.Event
	if err := json.Unmarshal(value, &ev); err != nil {
		if serr, ok := errors.AsType[*json.SyntaxError](err); ok {
			return ev, fmt.Sprintf("not JSON: %v at offset %d", serr, serr.Offset)
		}
		return ev, "not an audit event: " + strings.TrimPrefix(err.Error(), "json: ")
	}
	return ev, checkTyped(ev)
}

// checkTyped says why a decoded typed view is not an audit event the
// pipeline can pass on, "" when it is.
func checkTyped(ev schemas.Event) string {
	var missing []string
	for _, f := range []struct{ name, value string }{{"auditID", ev.AuditID}, {"stage", ev.Stage}, {"verb", ev.Verb}} {
		if f.value == "" {
			missing = append(missing, f.name)
		}
	}
	switch {
	case ev.Kind != "" && ev.Kind != "Event":
		// Items of a webhook EventList may lack kind and apiVersion.
		return fmt.Sprintf("not an audit event: kind %q", ev.Kind)
	case ev.APIVersion != "" && ev.APIVersion != "audit.k8s.io/v1" && ev.APIVersion != "audit.k8s.io/v1beta1":
		return fmt.Sprintf("not an audit event: apiVersion %q", ev.APIVersion)
	case len(missing) > 0:
		return "not an audit event: missing " + strings.Join(missing, ", ")
	}
	return ""
}

// Encode writes the processed event: the members of the event in their
// order and form, with the level and bodies pe now has (the policy and
// redaction may have changed them), the truncation annotation when
// pe.Pipeline.Truncated, and pe.Pipeline under "auditpipe" last. Other
// fields of pe.Event are not read: they were only a view.
func (e *Event) Encode(pe *schemas.ProcessedEvent) ([]byte, error) {
	out := make([]byte, 0, len(e.value)+1024)
	out = append(out, '{')
	n := 0
	annotated := false
	for i, m := range e.members {
		v := e.value[m.ValueStart:m.ValueEnd]
		switch string(e.keys[i]) {
		case keyLevel:
			if pe.Level != e.level {
				v = strconv.AppendQuote(nil, pe.Level)
			}
		case keyRequestObject:
			v = pe.RequestObject
		case keyResponseObject:
			v = pe.ResponseObject
		case keyAnnotations:
			if pe.Pipeline.Truncated {
				var err error
				if v, err = withTruncated(v); err != nil {
					return nil, err
				}
				annotated = true
			}
		}
		if v == nil {
			continue // a body the policy or the size limit dropped
		}
		if n > 0 {
			out = append(out, ',')
		}
		n++
		// The key as sent, with its colon.
		out = append(out, e.value[m.Start:m.ValueStart]...)
		out = append(out, v...)
	}
	if pe.Pipeline.Truncated && !annotated {
		out = append(out, `,"annotations":{`+truncatedMember+`}`...)
	}
	out = append(out, `,"`+schemas.PipelineKey+`":`...)
	if pl, ok := appendPipeline(out, &pe.Pipeline); ok {
		return append(pl, '}'), nil
	}
	pl, err := jsonbytes.Marshal(pe.Pipeline)
	if err != nil {
		return nil, fmt.Errorf("auditpipe member: %w", err)
	}
	out = append(out, pl...)
	return append(out, '}'), nil
}

// The annotation the apiserver's truncating backend
// (k8s.io/apiserver/plugin/pkg/audit/truncate) sets when it drops the
// bodies of an event that is too large; we do the same for the same
// reason.
const (
	truncatedKey    = "audit.k8s.io/truncated"
	truncatedMember = `"` + truncatedKey + `":"true"`
)

// withTruncated adds the truncation annotation to the annotations object
// v (or null), or sets it when present.
func withTruncated(v []byte) ([]byte, error) {
	if string(v) == "null" {
		return []byte(`{` + truncatedMember + `}`), nil
	}
	var ms []jsonbytes.Member
	if err := jsonbytes.Members(v, func(m jsonbytes.Member) { ms = append(ms, m) }); err != nil {
		return nil, fmt.Errorf("annotations: %w", err)
	}
	for _, m := range ms {
		k := string(m.Key)
		if m.KeyEscaped {
			k = unquote(v[m.Start:m.ValueStart])
		}
		if k == truncatedKey {
			out := append([]byte{}, v[:m.ValueStart]...)
			out = append(out, `"true"`...)
			return append(out, v[m.ValueEnd:]...), nil
		}
	}
	out := append([]byte{}, v[:len(v)-1]...) // without the closing brace
	if len(ms) > 0 {
		out = append(out, ',')
	}
	out = append(out, truncatedMember...)
	return append(out, '}'), nil
}
