package flatten

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"
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
			if s, ok := unescape(w.data[start+1 : i]); ok {
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

// unescape decodes the body of a JSON string holding escapes exactly as
// encoding/json does (invalid UTF-8 and lone surrogates become U+FFFD),
// without its reflection and validation pass: escaped strings are common
// (Go's encoder writes & < > as \u0026 \u003c \u003e, in request URIs
// and user agents). ok is false on a malformed escape.
func unescape(b []byte) (s string, ok bool) {
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); {
		c := b[i]
		switch {
		case c == '\\':
			if i+1 >= len(b) {
				return "", false
			}
			switch b[i+1] {
			case '"', '\\', '/':
				out = append(out, b[i+1])
			case 'b':
				out = append(out, '\b')
			case 'f':
				out = append(out, '\f')
			case 'n':
				out = append(out, '\n')
			case 'r':
				out = append(out, '\r')
			case 't':
				out = append(out, '\t')
			case 'u':
				r := hex4(b[i+2:])
				if r < 0 {
					return "", false
				}
				i += 6
				if utf16.IsSurrogate(r) {
					if r2 := uEscape(b[i:]); r2 >= 0 {
						if dec := utf16.DecodeRune(r, r2); dec != unicode.ReplacementChar {
							out = utf8.AppendRune(out, dec)
							i += 6
							continue
						}
					}
					r = unicode.ReplacementChar
				}
				out = utf8.AppendRune(out, r)
				continue
			default:
				return "", false
			}
			i += 2
		case c < utf8.RuneSelf:
			out = append(out, c)
			i++
		default:
			r, size := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && size == 1 {
				out = utf8.AppendRune(out, unicode.ReplacementChar)
			} else {
				out = append(out, b[i:i+size]...)
			}
			i += size
		}
	}
	return string(out), true
}

// uEscape returns the rune of the \uXXXX at the start of b, or -1.
func uEscape(b []byte) rune {
	if len(b) < 6 || b[0] != '\\' || b[1] != 'u' {
		return -1
	}
	return hex4(b[2:])
}

// hex4 returns the value of the four hex digits at the start of b, or -1.
func hex4(b []byte) rune {
	if len(b) < 4 {
		return -1
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return -1
		}
		r = r<<4 | rune(c)
	}
	return r
}
