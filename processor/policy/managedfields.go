package policy

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/auditpipe/auditpipe/processor/internal/jsonbytes"
)

// WithoutManagedFields returns body without metadata.managedFields, the
// way the apiserver omits them when a rule sets omitManagedFields: from
// the object itself, from every item of a list, and from every row object
// of a Table. Bodies that are not JSON objects (or have no managed fields)
// come back unchanged, as in the apiserver, which leaves objects it cannot
// access as they are. Objects that are rewritten get their keys sorted.
func WithoutManagedFields(body json.RawMessage) (json.RawMessage, error) {
	// Most bodies have no managed fields (most writes are not
	// server-side apply and many reads are of objects without them):
	// don't pay for a decode.
	if !bytes.Contains(body, []byte(`"managedFields"`)) {
		return body, nil
	}
	if out, ok := withoutManagedFieldsBytes(body); ok {
		return out, nil
	}
	return withoutManagedFieldsDecode(body)
}

// withoutManagedFieldsDecode is the general path: it decodes the body.
func withoutManagedFieldsDecode(body json.RawMessage) (json.RawMessage, error) {
	obj, ok := decodeObject(body)
	if !ok {
		return body, nil
	}
	changed, err := stripObject(obj)
	if err != nil {
		return nil, err
	}
	if items, ok := obj["items"]; ok {
		out, ch, err := stripEach(items, func(item map[string]json.RawMessage) (bool, error) {
			return stripObject(item)
		})
		if err != nil {
			return nil, fmt.Errorf("items: %w", err)
		}
		if ch {
			obj["items"], changed = out, true
		}
	}
	if rows, ok := obj["rows"]; ok && string(obj["kind"]) == `"Table"` {
		out, ch, err := stripEach(rows, func(row map[string]json.RawMessage) (bool, error) {
			inner, ok := decodeObject(row["object"])
			if !ok {
				return false, nil
			}
			ch, err := stripObject(inner)
			if err != nil || !ch {
				return false, err
			}
			row["object"], err = marshal(inner)
			return err == nil, err
		})
		if err != nil {
			return nil, fmt.Errorf("rows: %w", err)
		}
		if ch {
			obj["rows"], changed = out, true
		}
	}
	if !changed {
		return body, nil
	}
	return marshal(obj)
}

// stripObject removes metadata.managedFields from obj and reports whether
// it did.
func stripObject(obj map[string]json.RawMessage) (bool, error) {
	meta, ok := decodeObject(obj["metadata"])
	if !ok {
		return false, nil
	}
	if _, ok := meta["managedFields"]; !ok {
		return false, nil
	}
	delete(meta, "managedFields")
	out, err := marshal(meta)
	if err != nil {
		return false, fmt.Errorf("metadata: %w", err)
	}
	obj["metadata"] = out
	return true, nil
}

// stripEach applies fn to every object of a JSON array and re-encodes the
// array if fn changed any of them.
func stripEach(arr json.RawMessage, fn func(map[string]json.RawMessage) (bool, error)) (json.RawMessage, bool, error) {
	var elems []json.RawMessage
	if err := json.Unmarshal(arr, &elems); err != nil {
		return arr, false, nil // not an array: not a list, leave it
	}
	changed := false
	for i, e := range elems {
		obj, ok := decodeObject(e)
		if !ok {
			continue
		}
		ch, err := fn(obj)
		if err != nil {
			return nil, false, fmt.Errorf("[%d]: %w", i, err)
		}
		if !ch {
			continue
		}
		if elems[i], err = marshal(obj); err != nil {
			return nil, false, fmt.Errorf("[%d]: %w", i, err)
		}
		changed = true
	}
	if !changed {
		return arr, false, nil
	}
	out, err := marshal(elems)
	return out, err == nil, err
}

func decodeObject(raw json.RawMessage) (map[string]json.RawMessage, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		return nil, false
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil {
		return nil, false
	}
	return obj, true
}

// marshal is jsonbytes.Marshal as a json.RawMessage.
func marshal(v any) (json.RawMessage, error) { return jsonbytes.Marshal(v) }

// withoutManagedFieldsBytes removes metadata.managedFields of a single
// object at byte level, leaving every other byte as it is: no decode and
// re-encode of a large body. It declines (ok false) whatever it cannot do
// safely — lists, tables, escaped or repeated keys, invalid JSON — and
// the decoding path handles those.
func withoutManagedFieldsBytes(body json.RawMessage) (json.RawMessage, bool) {
	var meta *jsonbytes.Member
	safe := true
	err := jsonbytes.Members(body, func(m jsonbytes.Member) {
		switch {
		case m.KeyEscaped:
			safe = false
		case string(m.Key) == "items" || string(m.Key) == "rows":
			safe = false
		case string(m.Key) == "metadata":
			if meta != nil {
				safe = false
			}
			meta = &m
		}
	})
	if err != nil || !safe {
		return nil, false
	}
	if meta == nil {
		return body, true
	}
	mb := body[meta.ValueStart:meta.ValueEnd]
	var ms []jsonbytes.Member
	found := 0
	if err := jsonbytes.Members(mb, func(m jsonbytes.Member) {
		if m.KeyEscaped {
			safe = false
		}
		if string(m.Key) == "managedFields" {
			found++
		}
		ms = append(ms, m)
	}); err != nil || !safe || found > 1 {
		// A metadata that is not an object: nothing to strip.
		return body, err == jsonbytes.ErrNotObject && safe
	}
	if found == 0 {
		return body, true
	}
	stripped := jsonbytes.Without(mb, ms, func(m jsonbytes.Member) bool { return string(m.Key) == "managedFields" })
	out := make([]byte, 0, len(body)-len(mb)+len(stripped))
	out = append(out, body[:meta.ValueStart]...)
	out = append(out, stripped...)
	return append(out, body[meta.ValueEnd:]...), true
}
