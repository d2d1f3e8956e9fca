package flatten

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unsafe"

	"github.com/auditpipe/auditpipe/internal/jsonbytes"
)

// errFound stops a Lookup walk at its key.
var errFound = errors.New("found")

// walker flattens a JSON document in one pass over its bytes, without
// decoding it into maps (the flattening used to be half of the CLS sink's
// CPU). Bodies kept as JSON text are only skipped and then validated by
// json.Compact; every other value is validated as it is read. In lookup
// mode it enters only the objects whose key leads to target and skips the
// rest.
type walker struct {
	data   []byte
	pos    int
	emit   func(key, value string, kind Kind) error
	lookup bool
	target string
	// compact: data is valid compact JSON already (WalkCompact).
	compact bool
	// borrow: data is the bytes of an immutable string
	// (WalkCompactString), so emitted text can point into it.
	borrow bool
}

// text returns b as a string: a copy, or when borrowing, b itself.
func (w *walker) text(b []byte) string {
	if w.borrow {
		return unsafe.String(unsafe.SliceData(b), len(b))
	}
	return string(b)
}

func (w *walker) errorf(format string, args ...any) error {
	return fmt.Errorf("invalid JSON at byte %d: %s", w.pos, fmt.Sprintf(format, args...))
}

func (w *walker) document() error {
	w.skipWS()
	if w.pos >= len(w.data) || w.data[w.pos] != '{' {
		return errors.New("not a JSON object")
	}
	if err := w.object("", 0); err != nil {
		return err
	}
	if w.skipWS(); w.pos != len(w.data) {
		return fmt.Errorf("trailing data at byte %d", w.pos)
	}
	return nil
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
		key := SanitizeKey(name)
		if prefix != "" {
			key = prefix + "." + key
		}
		if w.lookup && key != w.target && !strings.HasPrefix(w.target, key+".") {
			err = w.skipValue()
		} else {
			err = w.value(key, depth+1)
		}
		if err != nil {
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
	case c == '{' && !jsonValued[key] && depth < MaxDepth:
		return w.object(key, depth)
	case c == '{' || c == '[':
		raw, err := w.skip()
		if err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		if w.compact {
			return w.emit(key, w.text(raw), JSON)
		}
		var buf bytes.Buffer
		buf.Grow(len(raw))
		if err := json.Compact(&buf, raw); err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		return w.emit(key, buf.String(), JSON)
	case c == '"':
		s, err := w.str()
		if err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		return w.emit(key, s, String)
	default: // null, true, false or a number
		lit, err := w.literal()
		if err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		switch lit[0] {
		case 'n':
			return nil // CLS has no null; an absent key says the same
		case 't', 'f':
			return w.emit(key, w.text(lit), Bool)
		}
		return w.emit(key, w.text(lit), Number) // canonical text already
	}
}

// literal reads and validates the null, boolean or number at w.pos.
func (w *walker) literal() ([]byte, error) {
	start := w.pos
	for w.pos < len(w.data) {
		if b := w.data[w.pos]; b == ',' || b == '}' || b == ']' || b == ' ' || b == '\t' || b == '\n' || b == '\r' {
			break
		}
		w.pos++
	}
	lit := w.data[start:w.pos]
	if len(lit) == 0 || !json.Valid(lit) || lit[0] == '"' || lit[0] == '{' || lit[0] == '[' {
		return nil, w.errorf("bad literal %q", lit)
	}
	return lit, nil
}

// skipValue moves past the value at w.pos without emitting it.
func (w *walker) skipValue() error {
	if w.pos >= len(w.data) {
		return w.errorf("missing value")
	}
	switch w.data[w.pos] {
	case '{', '[':
		_, err := w.skip()
		return err
	case '"':
		return w.skipStr()
	}
	_, err := w.literal()
	return err
}

// skipStr moves past the string at w.pos ('"') without decoding it.
func (w *walker) skipStr() error {
	for i := w.pos + 1; i < len(w.data); i++ {
		switch c := w.data[i]; {
		case c == '\\':
			i++
		case c == '"':
			w.pos = i + 1
			return nil
		case c < 0x20:
			w.pos = i
			return w.errorf("control character in string")
		}
	}
	return w.errorf("unterminated string")
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
				return w.text(w.data[start+1 : i]), nil
			}
			if s, ok := jsonbytes.Unescape(w.data[start+1 : i]); ok {
				return s, nil
			}
			// Not a valid escape: encoding/json says what is wrong.
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
			if err := w.skipStr(); err != nil {
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
