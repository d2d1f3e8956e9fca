package event

import (
	"bytes"
	"encoding/json"
	"unicode/utf8"

	"github.com/auditpipe/auditpipe/internal/jsonbytes"
)

// The functions here read JSON already known to be valid (jsonbytes.Valid, or
// an item of an EventList that encoding/json decoded) in one pass, with
// no copies, and give up (ok false) on every form they do not read
// exactly as encoding/json does: escaped or non-ASCII keys (encoding/json
// folds keys with Unicode rules), escaped strings, values of the wrong
// type. The callers then use encoding/json, which also says what is
// wrong. They exist because the receiver decoded every event four times
// (validate and decode the list, validate and decode each item), most of
// its CPU per event.

// SplitEventList reads the kind, apiVersion and items of the EventList
// body as encoding/json reads them into a struct with those fields (keys
// matched case-insensitively, the last of repeated keys wins, items null
// gives nil). Items are sub-slices of body. ok is false when body is not
// valid JSON or holds a form only encoding/json reads.
func SplitEventList(body []byte) (kind, apiVersion string, items []json.RawMessage, ok bool) {
	// jsonbytes validates as encoding/json does, in a third of the time.
	if !jsonbytes.Valid(body) {
		return "", "", nil, false
	}
	ok = walkObject(body, func(key, v []byte) bool {
		switch {
		case bytes.EqualFold(key, []byte("kind")):
			return stringValue(v, &kind)
		case bytes.EqualFold(key, []byte("apiVersion")):
			return stringValue(v, &apiVersion)
		case bytes.EqualFold(key, []byte("items")):
			return splitArray(v, &items)
		}
		return true
	})
	return kind, apiVersion, items, ok
}

// identifyValid is Identify for an item known to be valid JSON.
func identifyValid(item []byte) (Identity, string) {
	var id Identity
	if walkObject(item, func(key, v []byte) bool {
		switch {
		case bytes.EqualFold(key, []byte("kind")):
			return stringValue(v, &id.Kind)
		case bytes.EqualFold(key, []byte("auditID")):
			return stringValue(v, &id.AuditID)
		case bytes.EqualFold(key, []byte("stage")):
			return stringValue(v, &id.Stage)
		}
		return true
	}) {
		return id, checkIdentity(id)
	}
	return Identify(item)
}

// walkObject calls fn with every key and value of the valid JSON object
// b; false when b is not an object, a key is escaped or not ASCII, or fn
// returns false.
func walkObject(b []byte, fn func(key, value []byte) bool) bool {
	i := ws(b, 0)
	if i >= len(b) || b[i] != '{' {
		return false
	}
	i = ws(b, i+1)
	if b[i] == '}' {
		return true
	}
	for {
		end := stringEnd(b, i)
		key := b[i+1 : end-1]
		for _, c := range key {
			if c == '\\' || c >= 0x80 {
				return false
			}
		}
		i = ws(b, ws(b, end)+1) // past the colon
		vend := skipValue(b, i)
		if !fn(key, b[i:vend]) {
			return false
		}
		i = ws(b, vend)
		if b[i] == '}' {
			return true
		}
		i = ws(b, i+1) // past the comma
	}
}

// stringValue sets s from a string without escapes; null leaves it as
// it is (as encoding/json does).
func stringValue(v []byte, s *string) bool {
	if string(v) == "null" {
		return true
	}
	if len(v) < 2 || v[0] != '"' || bytes.IndexByte(v, '\\') >= 0 || !utf8.Valid(v) {
		return false // escapes, and invalid UTF-8 encoding/json replaces
	}
	*s = string(v[1 : len(v)-1])
	return true
}

// splitArray sets items to the elements of the array v (null: nil; []:
// empty, not nil, as encoding/json does).
func splitArray(v []byte, items *[]json.RawMessage) bool {
	if string(v) == "null" {
		*items = nil
		return true
	}
	if v[0] != '[' {
		return false
	}
	out := []json.RawMessage{}
	i := ws(v, 1)
	if v[i] != ']' {
		for {
			end := skipValue(v, i)
			out = append(out, json.RawMessage(v[i:end:end]))
			i = ws(v, end)
			if v[i] == ']' {
				break
			}
			i = ws(v, i+1)
		}
	}
	*items = out
	return true
}

func ws(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// stringEnd is the offset after the closing quote of the string at b[i].
func stringEnd(b []byte, i int) int {
	// In a valid string, a quote ends it unless an odd number of
	// backslashes precede it.
	for j := i + 1; j < len(b); {
		k := bytes.IndexByte(b[j:], '"')
		if k < 0 {
			return len(b)
		}
		j += k
		n := 0
		for b[j-1-n] == '\\' {
			n++
		}
		if n%2 == 0 {
			return j + 1
		}
		j++
	}
	return len(b)
}

// skipValue is the offset after the valid JSON value at b[i].
func skipValue(b []byte, i int) int {
	switch b[i] {
	case '"':
		return stringEnd(b, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				j = stringEnd(b, j) - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return len(b)
	default: // number, true, false, null
		j := i
		for j < len(b) {
			switch b[j] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return j
			}
			j++
		}
		return j
	}
}
