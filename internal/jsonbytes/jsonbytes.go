// Package jsonbytes finds the members of a JSON object without decoding
// their values, and validates what it skips. The processor uses it to read
// the small fields of an audit event while request and response bodies,
// over 90 % of a large event, stay as bytes: they are validated in one
// pass and copied, never decoded and re-encoded.
//
// Validation follows encoding/json: the same grammar and nesting limit,
// no UTF-8 check (encoding/json accepts invalid UTF-8 too).
package jsonbytes

import (
	"errors"
	"fmt"
)

// maxDepth is encoding/json's nesting limit.
const maxDepth = 10000

// SyntaxError says what is wrong and where.
type SyntaxError struct {
	Msg    string
	Offset int
}

func (e *SyntaxError) Error() string { return fmt.Sprintf("%s at offset %d", e.Msg, e.Offset) }

func syntaxErr(off int, format string, args ...any) error {
	return &SyntaxError{Msg: fmt.Sprintf(format, args...), Offset: off}
}

// Member is one member of an object. Key is the key without quotes;
// KeyEscaped is true when it holds escapes (then Key is raw, undecoded).
// Value is b[ValueStart:ValueEnd]; Start is where the member's key begins.
type Member struct {
	Key        []byte
	KeyEscaped bool
	Start      int
	ValueStart int
	ValueEnd   int
}

// ErrNotObject is returned by Members when the value is not an object.
var ErrNotObject = errors.New("not a JSON object")

// Members validates b, which must hold exactly one JSON object (with
// optional surrounding whitespace), and calls fn for each of its members
// in order. It returns ErrNotObject when b holds another valid value.
func Members(b []byte, fn func(Member)) error {
	i := skipWS(b, 0)
	if i >= len(b) {
		return syntaxErr(i, "unexpected end of JSON input")
	}
	if b[i] != '{' {
		end, err := skip(b, i, 0)
		if err != nil {
			return err
		}
		if j := skipWS(b, end); j != len(b) {
			return syntaxErr(j, "invalid character %q after top-level value", b[j])
		}
		return ErrNotObject
	}
	end, err := object(b, i, 0, fn)
	if err != nil {
		return err
	}
	if j := skipWS(b, end); j != len(b) {
		return syntaxErr(j, "invalid character %q after top-level value", b[j])
	}
	return nil
}

// Valid reports whether b is one valid JSON value.
func Valid(b []byte) bool {
	i := skipWS(b, 0)
	end, err := skip(b, i, 0)
	return err == nil && skipWS(b, end) == len(b)
}

func skipWS(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// object parses the object at b[i] == '{' and returns the offset after it.
func object(b []byte, i, depth int, fn func(Member)) (int, error) {
	if depth >= maxDepth {
		return 0, syntaxErr(i, "exceeded max depth")
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		return i + 1, nil
	}
	for {
		if i >= len(b) {
			return 0, syntaxErr(i, "unexpected end of JSON input")
		}
		if b[i] != '"' {
			return 0, syntaxErr(i, "invalid character %q looking for beginning of object key string", b[i])
		}
		start := i
		end, escaped, err := str(b, i)
		if err != nil {
			return 0, err
		}
		key := b[i+1 : end-1]
		i = skipWS(b, end)
		if i >= len(b) {
			return 0, syntaxErr(i, "unexpected end of JSON input")
		}
		if b[i] != ':' {
			return 0, syntaxErr(i, "invalid character %q after object key", b[i])
		}
		vs := skipWS(b, i+1)
		ve, err := skip(b, vs, depth+1)
		if err != nil {
			return 0, err
		}
		if fn != nil {
			fn(Member{Key: key, KeyEscaped: escaped, Start: start, ValueStart: vs, ValueEnd: ve})
		}
		i = skipWS(b, ve)
		if i >= len(b) {
			return 0, syntaxErr(i, "unexpected end of JSON input")
		}
		switch b[i] {
		case ',':
			i = skipWS(b, i+1)
		case '}':
			return i + 1, nil
		default:
			return 0, syntaxErr(i, "invalid character %q after object key:value pair", b[i])
		}
	}
}

// skip validates the value at b[i] and returns the offset after it.
func skip(b []byte, i, depth int) (int, error) {
	if i >= len(b) {
		return 0, syntaxErr(i, "unexpected end of JSON input")
	}
	switch c := b[i]; {
	case c == '{':
		return object(b, i, depth, nil)
	case c == '[':
		if depth >= maxDepth {
			return 0, syntaxErr(i, "exceeded max depth")
		}
		i = skipWS(b, i+1)
		if i < len(b) && b[i] == ']' {
			return i + 1, nil
		}
		for {
			end, err := skip(b, i, depth+1)
			if err != nil {
				return 0, err
			}
			i = skipWS(b, end)
			if i >= len(b) {
				return 0, syntaxErr(i, "unexpected end of JSON input")
			}
			switch b[i] {
			case ',':
				i = skipWS(b, i+1)
			case ']':
				return i + 1, nil
			default:
				return 0, syntaxErr(i, "invalid character %q after array element", b[i])
			}
		}
	case c == '"':
		end, _, err := str(b, i)
		return end, err
	case c == '-' || (c >= '0' && c <= '9'):
		return number(b, i)
	case c == 't':
		return literal(b, i, "true")
	case c == 'f':
		return literal(b, i, "false")
	case c == 'n':
		return literal(b, i, "null")
	default:
		return 0, syntaxErr(i, "invalid character %q looking for beginning of value", c)
	}
}

func literal(b []byte, i int, lit string) (int, error) {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return 0, syntaxErr(i, "invalid literal, want %s", lit)
	}
	return i + len(lit), nil
}

// special marks the bytes that end the fast path inside a string.
var special = func() (t [256]bool) {
	for c := range 0x20 {
		t[c] = true
	}
	t['"'], t['\\'] = true, true
	return t
}()

// str validates the string at b[i] == '"' and returns the offset after
// the closing quote and whether it holds escapes.
func str(b []byte, i int) (int, bool, error) {
	escaped := false
	i++
	for {
		for i < len(b) && !special[b[i]] {
			i++
		}
		if i >= len(b) {
			return 0, false, syntaxErr(i, "unexpected end of JSON input in string")
		}
		switch c := b[i]; c {
		case '"':
			return i + 1, escaped, nil
		case '\\':
			escaped = true
			if i+1 >= len(b) {
				return 0, false, syntaxErr(i, "unexpected end of JSON input in string escape")
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if len(b)-i < 6 || !hex(b[i+2]) || !hex(b[i+3]) || !hex(b[i+4]) || !hex(b[i+5]) {
					return 0, false, syntaxErr(i, "invalid \\u escape in string")
				}
				i += 6
			default:
				return 0, false, syntaxErr(i+1, "invalid character %q in string escape code", b[i+1])
			}
		default:
			return 0, false, syntaxErr(i, "invalid control character %#x in string", c)
		}
	}
}

func hex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

func digits(b []byte, i int) int {
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	return i
}

func number(b []byte, i int) (int, error) {
	start := i
	if b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		i = digits(b, i+1)
	default:
		return 0, syntaxErr(start, "invalid number")
	}
	if i < len(b) && b[i] == '.' {
		j := digits(b, i+1)
		if j == i+1 {
			return 0, syntaxErr(i, "invalid number: no digits after decimal point")
		}
		i = j
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := digits(b, i)
		if j == i {
			return 0, syntaxErr(i, "invalid number: no digits in exponent")
		}
		i = j
	}
	return i, nil
}

// Remove returns b without the members of the object in b for which drop
// returns true, in a new slice; the other bytes are kept as they are. It
// returns b itself when nothing is dropped. b must be a valid object.
func Remove(b []byte, drop func(Member) bool) ([]byte, error) {
	var ms []Member
	if err := Members(b, func(m Member) { ms = append(ms, m) }); err != nil {
		return nil, err
	}
	return Without(b, ms, drop), nil
}

// Without is Remove for an object whose members were already collected
// with Members, in order, so that b is not scanned again.
func Without(b []byte, members []Member, drop func(Member) bool) []byte {
	type span struct{ from, to int }
	var cut []span
	prevEnd := -1    // end of the previous kept member's value
	open := false    // the last cut reaches the member before this one
	leading := false // ... and started at the object's first member
	for _, m := range members {
		if drop(m) {
			switch {
			case open:
				cut[len(cut)-1].to = m.ValueEnd
			case prevEnd >= 0:
				// From the end of the previous kept value, so its comma
				// goes with this member.
				cut = append(cut, span{prevEnd, m.ValueEnd})
				open = true
			default:
				// Leading members: their trailing comma is taken when
				// the next kept member is seen.
				cut = append(cut, span{m.Start, m.ValueEnd})
				open, leading = true, true
			}
			continue
		}
		if open && leading {
			cut[len(cut)-1].to = m.Start
		}
		open, leading = false, false
		prevEnd = m.ValueEnd
	}
	if len(cut) == 0 {
		return b
	}
	out := make([]byte, 0, len(b))
	last := 0
	for _, c := range cut {
		out = append(out, b[last:c.from]...)
		last = c.to
	}
	return append(out, b[last:]...)
}
