package cls

import (
	"encoding/json"
	"errors"
	"fmt"
)

// walker flattens a JSON document in one pass over its bytes. It replaces
// decoding into map[string]json.RawMessage level by level, which scanned
// every body once per nesting level and allocated a map per object: the
// flattening was half of the sink's CPU. Bodies kept as JSON strings are
// only skipped here and validated by json.Compact; every other value is
// validated as it is read.
type walker struct {
	f    *Flat
	data []byte
	pos  int
}

func (w *walker) errorf(format string, args ...any) error {
	return fmt.Errorf("invalid JSON at byte %d: %s", w.pos, fmt.Sprintf(format, args...))
}

func (w *walker) skipWS() {
	for w.pos < len(w.data) {
		switch w.data[w.pos] {
		case ' ', '\t', '\n', '\r':
			w.pos++
		default:
			return
		}
	}
}

// object reads the object at w.pos ('{'), emitting its members under
// prefix.
func (w *walker) object(prefix string, depth int) error {
	w.pos++ // '{'
	w.skipWS()
	if w.pos < len(w.data) && w.data[w.pos] == '}' {
		w.pos++
		return nil
	}
	for {
		if w.pos >= len(w.data) || w.data[w.pos] != '"' {
			return w.errorf("want a member name")
		}
		name, err := w.str()
		if err != nil {
			return err
		}
		w.skipWS()
		if w.pos >= len(w.data) || w.data[w.pos] != ':' {
			return w.errorf("want ':' after %q", name)
		}
		w.pos++
		w.skipWS()
		key := sanitizeKey(name)
		if prefix != "" {
			key = prefix + "." + key
		}
		if err := w.value(key, depth+1); err != nil {
			return err
		}
		w.skipWS()
		if w.pos >= len(w.data) {
			return w.errorf("unterminated object")
		}
		switch w.data[w.pos] {
		case ',':
			w.pos++
			w.skipWS()
		case '}':
			w.pos++
			return nil
		default:
			return w.errorf("want ',' or '}'")
		}
	}
}

func (w *walker) value(key string, depth int) error {
	if w.pos >= len(w.data) {
		return w.errorf("%s: missing value", key)
	}
	switch c := w.data[w.pos]; {
	case c == '{' && !jsonValued[key] && depth < maxDepth:
		return w.object(key, depth)
	case c == '{' || c == '[':
		raw, err := w.skip()
		if err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		return w.f.addJSON(key, raw)
	case c == '"':
		s, err := w.str()
		if err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		w.f.add(key, s)
		return nil
	default: // null, true, false or a number
		start := w.pos
		for w.pos < len(w.data) {
			if b := w.data[w.pos]; b == ',' || b == '}' || b == ']' || b == ' ' || b == '\t' || b == '\n' || b == '\r' {
				break
			}
			w.pos++
		}
		lit := w.data[start:w.pos]
		if !json.Valid(lit) || lit[0] == '"' || lit[0] == '{' || lit[0] == '[' {
			return fmt.Errorf("%s: %w", key, w.errorf("bad literal %q", lit))
		}
		if string(lit) == "null" {
			return nil // CLS has no null; an absent key says the same
		}
		w.f.add(key, string(lit)) // canonical text already
		return nil
	}
}

// str reads the string at w.pos ('"').
func (w *walker) str() (string, error) {
	start := w.pos
	escaped := false
	for i := start + 1; i < len(w.data); i++ {
		switch c := w.data[i]; {
		case c == '\\':
			escaped = true
			i++
		case c == '"':
			w.pos = i + 1
			if !escaped {
				return string(w.data[start+1 : i]), nil
			}
			var s string
			if err := json.Unmarshal(w.data[start:i+1], &s); err != nil {
				return "", w.errorf("string: %v", err)
			}
			return s, nil
		case c < 0x20:
			w.pos = i
			return "", w.errorf("control character in string")
		}
	}
	return "", w.errorf("unterminated string")
}

// skip moves past the object or array at w.pos and returns its bytes. It
// only balances brackets outside strings; the caller validates the bytes.
func (w *walker) skip() ([]byte, error) {
	start, depth := w.pos, 0
	for w.pos < len(w.data) {
		switch w.data[w.pos] {
		case '"':
			if _, err := w.str(); err != nil {
				return nil, err
			}
			continue
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth == 0 {
				w.pos++
				return w.data[start:w.pos], nil
			}
		}
		w.pos++
	}
	return nil, errors.New("unterminated object or array")
}
