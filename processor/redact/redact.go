// Package redact removes secret material from audit events, whatever the
// audit policy recorded: the values of a Secret's data and stringData, the
// copy of a Secret in its kubectl.kubernetes.io/last-applied-configuration
// annotation, TokenReview and TokenRequest tokens, and ConfigMap values
// that plainly hold credentials. Each value is replaced with
// schemas.RedactedValue; keys stay, so an auditor still sees which entries
// changed.
//
// Redaction fails closed: a body that must be redacted but cannot be
// parsed is replaced as a whole. Bodies that cannot hold secret material
// (by the request's resource and a byte-level look for the sensitive
// kinds) are not decoded at all, which keeps large bodies cheap.
package redact

import (
	"bytes"
	"encoding/json"
	"github.com/auditpipe/auditpipe/internal/jsonbytes"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/auditpipe/auditpipe/schemas"
)

// LastAppliedAnnotation is where kubectl apply keeps a full copy of the
// applied object, so for a Secret a copy of its values.
const LastAppliedAnnotation = "kubectl.kubernetes.io/last-applied-configuration"

// Kinds whose bodies hold secret material.
const (
	kindSecret       = "Secret"
	kindTokenReview  = "TokenReview"
	kindTokenRequest = "TokenRequest"
	kindConfigMap    = "ConfigMap"
)

// marker is schemas.RedactedValue as a JSON string.
var marker = json.RawMessage(strconv.Quote(schemas.RedactedValue))

// credentialWords mark a ConfigMap entry (by key or value) as holding a
// credential. ConfigMaps are not meant for secrets, so only entries that
// say plainly what they are lose their values; the list follows Falco's
// "ConfigMap with private credentials" rule, widened to common spellings.
var credentialWords = []string{
	"password", "passwd", "passphrase", "secret", "token", "credential",
	"private_key", "private-key", "privatekey", "private key",
	"access_key", "access-key", "accesskey", "api_key", "api-key", "apikey",
}

// Event redacts ev's request and response bodies in place and returns the
// JSON Pointers (from the event's root) of what it replaced, or nil.
func Event(ev *schemas.Event) []string {
	hint := hintFor(ev.ObjectRef)
	var paths []string
	ev.RequestObject = body(ev.RequestObject, "/requestObject", hint, &paths)
	ev.ResponseObject = body(ev.ResponseObject, "/responseObject", hint, &paths)
	return paths
}

// FailedClosed returns how many of paths, as Event returns them, are
// whole bodies: bodies that had to be redacted but could not be read (not
// a JSON object or patch, or not re-encodable) and were replaced by the
// marker. The event stays in the trail without that body, so nothing
// leaks, but an auditor loses what the request said; the processor counts
// these (auditpipe_processor_redaction_failures_total).
func FailedClosed(paths []string) int {
	n := 0
	for _, p := range paths {
		if p == "/requestObject" || p == "/responseObject" {
			n++
		}
	}
	return n
}

// hintFor is the kind a body of a request on ref holds when it does not
// say (patches, items of lists).
func hintFor(ref *schemas.ObjectReference) string {
	if ref == nil {
		return ""
	}
	// Some converters (GKE's, in the public fixtures) spell the core
	// group "core".
	core := ref.APIGroup == "" || ref.APIGroup == "core"
	switch {
	case core && ref.Resource == "secrets":
		// Including subresources: none exists today, and a body under
		// one would be a Secret's.
		return kindSecret
	case core && ref.Resource == "configmaps" && ref.Subresource == "":
		return kindConfigMap
	case ref.APIGroup == "authentication.k8s.io" && ref.Resource == "tokenreviews":
		return kindTokenReview
	case core && ref.Resource == "serviceaccounts" && ref.Subresource == "token":
		return kindTokenRequest
	}
	return ""
}

// mayHoldSecrets says whether a body needs a look: the request's resource
// says so, or the bytes mention a sensitive kind (lists and tables of
// other resources, a List sent to a generic endpoint).
func mayHoldSecrets(raw []byte, hint string) bool {
	if hint != "" {
		return true
	}
	// Three scans of the body's bytes (SIMD-fast) instead of a decode:
	// Secret and SecretList, TokenReview and TokenRequest, ConfigMap and
	// ConfigMapList, as kind values.
	for _, k := range [...]string{`"Secret`, `"TokenRe`, `"ConfigMap`} {
		if bytes.Contains(raw, []byte(k)) {
			return true
		}
	}
	// A kind spelled with escapes ("\u0053ecret") means the same to a
	// decoder but not to the byte look above.
	return escapedLetter(raw)
}

// escapedLetter says whether raw holds a \u escape of an ASCII letter
// (U+0041 to U+007A). The escapes encoders write on their own (\u003c,
// \u0026, control characters) are not letters, so ordinary bodies stay
// on the fast path.
func escapedLetter(raw []byte) bool {
	for {
		i := bytes.Index(raw, []byte(`\u00`))
		if i < 0 || i+5 >= len(raw) {
			return false
		}
		if c := raw[i+4]; c >= '4' && c <= '7' {
			return true
		}
		raw = raw[i+4:]
	}
}

func body(raw json.RawMessage, path, hint string, paths *[]string) json.RawMessage {
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 || string(trimmed) == "null" || !mayHoldSecrets(raw, hint) {
		return raw
	}
	var v any
	switch trimmed[0] {
	case '{':
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(raw, &obj); err != nil {
			break
		}
		if !redactObject(obj, path, hint, paths) {
			return raw
		}
		v = obj
	case '[':
		// A JSON patch (RFC 6902) of a sensitive object: every value an
		// operation carries may be secret.
		var ops []map[string]json.RawMessage
		if err := json.Unmarshal(raw, &ops); err != nil {
			break
		}
		if !sensitive(hint) {
			return raw
		}
		changed := false
		for i, op := range ops {
			if _, ok := op["value"]; ok {
				op["value"] = marker
				*paths = append(*paths, path+"/"+strconv.Itoa(i)+"/value")
				changed = true
			}
		}
		if !changed {
			return raw
		}
		v = ops
	}
	if v == nil {
		// Not an object or patch we can read: when it may be secret,
		// drop it whole rather than guess.
		if !sensitive(hint) {
			return raw
		}
		*paths = append(*paths, path)
		return marker
	}
	out, err := marshal(v)
	if err != nil {
		*paths = append(*paths, path)
		return marker
	}
	return out
}

// sensitive says whether a body of this kind must not pass unread.
func sensitive(kind string) bool {
	return kind == kindSecret || kind == kindTokenReview || kind == kindTokenRequest
}

// redactObject redacts obj, an object of kind hint unless it says its own
// kind, and reports whether it changed anything.
func redactObject(obj map[string]json.RawMessage, path, hint string, paths *[]string) bool {
	kind := stringField(obj, "kind")
	changed := false
	// Lists and tables: items of a typed list carry no kind of their own.
	if items, ok := obj["items"]; ok && (kind == "" || strings.HasSuffix(kind, "List")) {
		itemHint := strings.TrimSuffix(kind, "List")
		if itemHint == "" {
			itemHint = hint
		}
		if out, ch := eachObject(items, path+"/items", func(item map[string]json.RawMessage, p string) bool {
			return redactObject(item, p, itemHint, paths)
		}); ch {
			obj["items"], changed = out, true
		}
		return changed
	}
	if rows, ok := obj["rows"]; ok && kind == "Table" {
		if out, ch := eachObject(rows, path+"/rows", func(row map[string]json.RawMessage, p string) bool {
			inner, ok := decodeObject(row["object"])
			if !ok || !redactObject(inner, p+"/object", hint, paths) {
				return false
			}
			b, err := marshal(inner)
			if err != nil {
				row["object"] = marker
				return true
			}
			row["object"] = b
			return true
		}); ch {
			obj["rows"], changed = out, true
		}
		return changed
	}
	lenient := false
	switch kind {
	case kindSecret, kindTokenReview, kindTokenRequest, kindConfigMap:
	case "Status", "DeleteOptions", "PartialObjectMetadata":
		// Responses and options on a sensitive endpoint: they carry no
		// values of their own, so only the fields that would be secret
		// are redacted.
		if hint == "" {
			return false
		}
		kind, lenient = hint, true
	default:
		// A patch or an object without kind on a sensitive endpoint.
		// Other kinds (DeleteOptions, Status) hold no secret values, but
		// on a Secret endpoint we treat the body as a Secret anyway: it
		// costs nothing and fails closed.
		if hint == "" {
			return false
		}
		kind = hint
	}
	switch kind {
	case kindSecret:
		for k := range obj {
			switch k {
			case "apiVersion", "kind", "metadata", "type", "immutable":
			case "data", "stringData":
				changed = redactValues(obj, k, path, paths, nil) || changed
			default:
				if lenient {
					continue
				}
				// Unknown top-level fields (a misspelled "Data" in a
				// patch) could carry values too.
				obj[k] = marker
				*paths = append(*paths, path+"/"+escape(k))
				changed = true
			}
		}
		changed = redactLastApplied(obj, path, paths) || changed
	case kindConfigMap:
		if redactValues(obj, "data", path, paths, looksLikeCredential) {
			changed = true
			// The last-applied copy holds the same values.
			redactLastApplied(obj, path, paths)
		}
	case kindTokenReview:
		changed = redactField(obj, "spec", "token", path, paths)
	case kindTokenRequest:
		changed = redactField(obj, "status", "token", path, paths)
	}
	return changed
}

// redactValues replaces the values of the object obj[field] for which
// keep is nil or true; a non-object field is replaced whole.
func redactValues(obj map[string]json.RawMessage, field, path string, paths *[]string, match func(k string, v json.RawMessage) bool) bool {
	raw, ok := obj[field]
	if !ok || string(bytes.TrimSpace(raw)) == "null" {
		return false
	}
	m, ok := decodeObject(raw)
	if !ok {
		if match != nil {
			return false
		}
		obj[field] = marker
		*paths = append(*paths, path+"/"+escape(field))
		return true
	}
	changed := false
	for _, k := range sortedKeys(m) {
		if match != nil && !match(k, m[k]) {
			continue
		}
		m[k] = marker
		*paths = append(*paths, path+"/"+escape(field)+"/"+escape(k))
		changed = true
	}
	if !changed {
		return false
	}
	b, err := marshal(m)
	if err != nil {
		b = marker
	}
	obj[field] = b
	return true
}

func looksLikeCredential(k string, v json.RawMessage) bool {
	lk, lv := strings.ToLower(k), strings.ToLower(string(v))
	for _, w := range credentialWords {
		if strings.Contains(lk, w) || strings.Contains(lv, w) {
			return true
		}
	}
	return false
}

// redactField replaces obj[outer][inner].
func redactField(obj map[string]json.RawMessage, outer, inner, path string, paths *[]string) bool {
	m, ok := decodeObject(obj[outer])
	if !ok {
		return false
	}
	if _, ok := m[inner]; !ok {
		return false
	}
	m[inner] = marker
	b, err := marshal(m)
	if err != nil {
		b = marker
	}
	obj[outer] = b
	*paths = append(*paths, path+"/"+outer+"/"+inner)
	return true
}

func redactLastApplied(obj map[string]json.RawMessage, path string, paths *[]string) bool {
	meta, ok := decodeObject(obj["metadata"])
	if !ok {
		return false
	}
	ann, ok := decodeObject(meta["annotations"])
	if !ok {
		return false
	}
	if _, ok := ann[LastAppliedAnnotation]; !ok {
		return false
	}
	ann[LastAppliedAnnotation] = marker
	a, err := marshal(ann)
	if err != nil {
		a = marker
	}
	meta["annotations"] = a
	m, err := marshal(meta)
	if err != nil {
		m = marker
	}
	obj["metadata"] = m
	*paths = append(*paths, path+"/metadata/annotations/"+escape(LastAppliedAnnotation))
	return true
}

// eachObject applies fn to each object of the array arr.
func eachObject(arr json.RawMessage, path string, fn func(map[string]json.RawMessage, string) bool) (json.RawMessage, bool) {
	var elems []json.RawMessage
	if err := json.Unmarshal(arr, &elems); err != nil {
		return arr, false
	}
	changed := false
	for i, e := range elems {
		obj, ok := decodeObject(e)
		if !ok || !fn(obj, path+"/"+strconv.Itoa(i)) {
			continue
		}
		b, err := marshal(obj)
		if err != nil {
			b = marker
		}
		elems[i], changed = b, true
	}
	if !changed {
		return arr, false
	}
	out, err := marshal(elems)
	if err != nil {
		return marker, true
	}
	return out, true
}

func decodeObject(raw json.RawMessage) (map[string]json.RawMessage, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		return nil, false
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, false
	}
	return m, true
}

func stringField(obj map[string]json.RawMessage, key string) string {
	var s string
	if raw, ok := obj[key]; ok {
		_ = json.Unmarshal(raw, &s) // not a string: no kind
	}
	return s
}

func sortedKeys(m map[string]json.RawMessage) []string {
	// Deterministic Redacted lists make outputs comparable.
	return slices.Sorted(maps.Keys(m))
}

// escape encodes a key as a JSON Pointer reference token (RFC 6901).
func escape(k string) string {
	return strings.ReplaceAll(strings.ReplaceAll(k, "~", "~0"), "/", "~1")
}

// marshal is jsonbytes.Marshal as a json.RawMessage.
func marshal(v any) (json.RawMessage, error) { return jsonbytes.Marshal(v) }
