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
	return jsonbytes.Fields(b, func(key, value []byte) bool {
		for _, c := range key {
			if c >= 0x80 {
				return false
			}
		}
		return fn(key, value)
	})
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
	i := jsonbytes.SkipWS(v, 1)
	if v[i] != ']' {
		for {
			end := jsonbytes.SkipValue(v, i)
			out = append(out, json.RawMessage(v[i:end:end]))
			i = jsonbytes.SkipWS(v, end)
			if v[i] == ']' {
				break
			}
			i = jsonbytes.SkipWS(v, i+1)
		}
	}
	*items = out
	return true
}
