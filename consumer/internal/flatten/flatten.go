// Package flatten defines the key names under which an event's fields are
// searchable: the CLS sink sends exactly these key/values to CLS, and the
// local store indexes and looks up fields by the same names, so a key that
// works in the CLS console works locally and the two can never disagree.
//
// Nested objects become dotted keys (objectRef.resource, auditpipe.cluster);
// map keys that contain dots are kept whole inside the dotted name
// (annotations.authorization.k8s.io/decision,
// user.extra.authentication.kubernetes.io/credential-id); arrays, request and
// response bodies become compact JSON text; null and empty objects send
// nothing (a missing field, not an empty one); keys are mapped onto CLS's key
// alphabet. The package knows nothing about CLS's size limits or about
// SQLite: those belong to the sink and the store.
package flatten

import "unsafe"

// MaxDepth keeps dotted keys well inside CLS's 10 nesting levels: an object
// this deep is sent as one JSON value.
const MaxDepth = 6

// Kind is the JSON type a value had in the event.
type Kind byte

// Value kinds.
const (
	String Kind = 's' // a JSON string, unescaped
	Number Kind = 'n' // a JSON number, in its canonical text
	Bool   Kind = 'b' // true or false
	JSON   Kind = 'j' // an array, a body or an object past MaxDepth, compact JSON text
)

// jsonValued are the fields that stay one JSON string instead of being
// flattened: request and response bodies (arbitrary objects: flattening
// them would create unbounded keys) and status details. Maps of free keys
// with flat values (annotations, user.extra) are flattened: their keys are
// bounded per cluster and runbooks address them by name.
var jsonValued = map[string]bool{
	"requestObject":          true,
	"responseObject":         true,
	"responseStatus.details": true,
}

// JSONValued reports whether the object under key is sent as one JSON text.
func JSONValued(key string) bool { return jsonValued[key] }

// SanitizeKey maps a JSON member name onto CLS's key alphabet (letters,
// digits, _ - . / @), replacing anything else with '_', and never lets it
// start with '_' (reserved by CLS): such names get a "k" prefix.
func SanitizeKey(k string) string {
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

// Walk calls emit for every key/value of the JSON object doc, in document
// order. It validates doc as it goes (bodies are validated by compacting
// them) and stops at the first error, emit's included.
func Walk(doc []byte, emit func(key, value string, kind Kind) error) error {
	w := walker{data: doc, emit: emit}
	return w.document()
}

// WalkCompact is Walk for a document already validated and compacted
// (json.Compact), as the store holds events: arrays and bodies are emitted
// as they stand instead of being compacted again, which is most of Walk's
// cost.
func WalkCompact(doc []byte, emit func(key, value string, kind Kind) error) error {
	w := walker{data: doc, emit: emit, compact: true}
	return w.document()
}

// WalkCompactString is WalkCompact for a document held in a string. The
// keys and values it emits that appear verbatim in doc (unescaped strings,
// numbers, arrays and bodies) are substrings of doc rather than copies: no
// allocation per value, and they stay valid as long as doc is referenced
// (the local store keeps doc as the stored event anyway).
func WalkCompactString(doc string, emit func(key, value string, kind Kind) error) error {
	w := walker{data: unsafe.Slice(unsafe.StringData(doc), len(doc)), emit: emit, compact: true, borrow: true}
	return w.document()
}

// Lookup returns the value that Walk would emit under key, reading only the
// objects on the way to it. A key Walk would not emit (absent, null, an
// object that is flattened further) is not found. When doc holds the key
// twice (duplicate JSON members, or a dotted member name that spells the
// same key as a nested object), the first in document order wins. doc must
// be valid, compacted JSON (as the store holds it; see WalkCompact); on
// invalid JSON Lookup reports not found.
func Lookup(doc []byte, key string) (value string, kind Kind, found bool) {
	w := walker{data: doc, target: key, lookup: true, compact: true}
	w.emit = func(k, v string, kd Kind) error {
		if k == key {
			value, kind, found = v, kd, true
			return errFound
		}
		return nil
	}
	_ = w.document()
	return value, kind, found
}
