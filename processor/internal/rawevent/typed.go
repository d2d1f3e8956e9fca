package rawevent

import (
	"bytes"
	"encoding/json"
	"strconv"

	"github.com/auditpipe/auditpipe/internal/jsonbytes"
	"github.com/auditpipe/auditpipe/schemas"
)

// decodeFast decodes the typed view from the top-level members of a
// normalized event, the way encoding/json would, without encoding/json's
// reflection and its second validating pass (about half of the
// processor's CPU per event before). It decodes only the common forms:
// unescaped keys below the top level, string values (escaped ones through
// encoding/json), objects or null where the schema has a struct or
// pointer. On anything else it returns ok false and the caller decodes
// with encoding/json, which then also gives the reason when the event is
// unusable. Bodies (requestObject, responseObject) are not decoded: Parse
// sets them as the sub-slices they are.
//
// It relies on what Parse checked before: the bytes are valid JSON and
// UTF-8, repeated keys are gone, and no key differs from a field's name
// only in case (encoding/json matches names case-insensitively; exact
// matching is then the same).
func decodeFast(value []byte, members []jsonbytes.Member, keys [][]byte) (ev schemas.Event, ok bool) {
	for i, m := range members {
		v := value[m.ValueStart:m.ValueEnd]
		switch string(keys[i]) {
		case "kind":
			ok = str(v, &ev.Kind)
		case "apiVersion":
			ok = str(v, &ev.APIVersion)
		case "level":
			ok = str(v, &ev.Level)
		case "auditID":
			ok = str(v, &ev.AuditID)
		case "stage":
			ok = str(v, &ev.Stage)
		case "requestURI":
			ok = str(v, &ev.RequestURI)
		case "verb":
			ok = str(v, &ev.Verb)
		case "userAgent":
			ok = str(v, &ev.UserAgent)
		case "user":
			ok = isNull(v) || userInfo(v, &ev.User)
		case "impersonatedUser":
			if !isNull(v) {
				ev.ImpersonatedUser = new(schemas.UserInfo)
				ok = userInfo(v, ev.ImpersonatedUser)
			} else {
				ok = true
			}
		case "sourceIPs":
			ok = strs(v, &ev.SourceIPs)
		case "objectRef":
			if !isNull(v) {
				ev.ObjectRef = new(schemas.ObjectReference)
				ok = objectRef(v, ev.ObjectRef)
			} else {
				ok = true
			}
		case "responseStatus":
			if !isNull(v) {
				ev.ResponseStatus = new(schemas.Status)
				ok = status(v, ev.ResponseStatus)
			} else {
				ok = true
			}
		case "requestReceivedTimestamp":
			ok = timestamp(v, &ev.RequestReceivedTimestamp)
		case "stageTimestamp":
			ok = timestamp(v, &ev.StageTimestamp)
		case "annotations":
			ok = !isNull(v) && stringMap(v, &ev.Annotations)
		default:
			ok = true // bodies and members the typed view has no field for
		}
		if !ok {
			return schemas.Event{}, false
		}
	}
	return ev, true
}

func isNull(v []byte) bool { return string(v) == "null" }

// str decodes a JSON string (null leaves s as it is, as encoding/json
// does); false for any other value.
func str(v []byte, s *string) bool {
	switch {
	case isNull(v):
		return true
	case len(v) < 2 || v[0] != '"':
		return false
	case bytes.IndexByte(v, '\\') < 0:
		*s = string(v[1 : len(v)-1])
		return true
	default:
		if u, ok := jsonbytes.Unescape(v[1 : len(v)-1]); ok {
			*s = u
			return true
		}
		return json.Unmarshal(v, s) == nil
	}
}

// strs decodes an array of strings (null: nil; [] an empty slice, as
// encoding/json does).
func strs(v []byte, out *[]string) bool {
	if isNull(v) {
		*out = nil
		return true
	}
	if len(v) < 2 || v[0] != '[' {
		return false
	}
	list := []string{}
	i := jsonbytes.SkipWS(v, 1)
	if v[i] == ']' {
		*out = list
		return true
	}
	for {
		if v[i] != '"' {
			return false // null elements and other values: encoding/json
		}
		end := jsonbytes.StringEnd(v, i)
		var s string
		if !str(v[i:end], &s) {
			return false
		}
		list = append(list, s)
		i = jsonbytes.SkipWS(v, end)
		switch v[i] {
		case ',':
			i = jsonbytes.SkipWS(v, i+1)
		case ']':
			*out = list
			return true
		default:
			return false
		}
	}
}

// fields calls fn with the unescaped key and the value of every member of
// the object v; false when v is not an object, a key holds escapes or fn
// says so.
// v is valid JSON (Parse normalized it), so this only finds where
// members start and end.
func fields(v []byte, fn func(key string, val []byte) bool) bool {
	return jsonbytes.Fields(v, func(k, val []byte) bool { return fn(string(k), val) })
}

func userInfo(v []byte, u *schemas.UserInfo) bool {
	return fields(v, func(k string, val []byte) bool {
		switch k {
		case "username":
			return str(val, &u.Username)
		case "uid":
			return str(val, &u.UID)
		case "groups":
			return strs(val, &u.Groups)
		case "extra":
			if isNull(val) {
				return false // rare: encoding/json
			}
			if u.Extra == nil {
				u.Extra = map[string][]string{}
			}
			return fields(val, func(ek string, ev []byte) bool {
				var list []string
				if !strs(ev, &list) {
					return false
				}
				u.Extra[ek] = list
				return true
			})
		}
		return true
	})
}

func objectRef(v []byte, o *schemas.ObjectReference) bool {
	return fields(v, func(k string, val []byte) bool {
		switch k {
		case "resource":
			return str(val, &o.Resource)
		case "namespace":
			return str(val, &o.Namespace)
		case "name":
			return str(val, &o.Name)
		case "uid":
			return str(val, &o.UID)
		case "apiGroup":
			return str(val, &o.APIGroup)
		case "apiVersion":
			return str(val, &o.APIVersion)
		case "resourceVersion":
			return str(val, &o.ResourceVersion)
		case "subresource":
			return str(val, &o.Subresource)
		}
		return true
	})
}

func status(v []byte, s *schemas.Status) bool {
	return fields(v, func(k string, val []byte) bool {
		switch k {
		case "status":
			return str(val, &s.Status)
		case "message":
			return str(val, &s.Message)
		case "reason":
			return str(val, &s.Reason)
		case "metadata":
			return raw(val, &s.Metadata)
		case "details":
			return raw(val, &s.Details)
		case "code":
			return int32Value(val, &s.Code)
		}
		return true
	})
}

// raw copies a JSON value into a RawMessage as encoding/json does; null
// goes to encoding/json.
func raw(v []byte, out *json.RawMessage) bool {
	if isNull(v) {
		return false
	}
	*out = append((*out)[:0], v...)
	return true
}

// int32Value decodes a plain integer; fractions, exponents and overflow
// go to encoding/json, which refuses them with its own words.
func int32Value(v []byte, out *int32) bool {
	if isNull(v) {
		return true
	}
	n, err := strconv.ParseInt(string(v), 10, 32)
	if err != nil {
		return false
	}
	*out = int32(n)
	return true
}

// timestamp decodes a time as encoding/json does (time.Time's own
// UnmarshalJSON); errors and null go to encoding/json.
func timestamp(v []byte, t interface{ UnmarshalJSON([]byte) error }) bool {
	if isNull(v) || len(v) < 2 || v[0] != '"' {
		return false
	}
	return t.UnmarshalJSON(v) == nil
}

// stringMap decodes an object of strings into a new map (an empty object
// gives an empty map, as encoding/json does).
func stringMap(v []byte, out *map[string]string) bool {
	m := make(map[string]string, 8) // an event has a handful of annotations
	if !fields(v, func(k string, val []byte) bool {
		if isNull(val) {
			return false // encoding/json stores ""; rare
		}
		var s string
		if !str(val, &s) {
			return false
		}
		m[k] = s
		return true
	}) {
		return false
	}
	*out = m
	return true
}
