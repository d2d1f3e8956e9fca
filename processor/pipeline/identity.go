package pipeline

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"sync"
	"unicode/utf16"
	"unicode/utf8"
)

// ContentHash returns the lowercase hex SHA-256 of the canonical form of
// raw, an audit event as the apiserver sent it (the audit.raw record
// value). The identity of an event is (cluster, auditID, stage, content
// hash), decision 0012: a retransmission has the same hash and collapses
// downstream, while a different event under a reused auditID (the
// apiserver takes auditIDs from a client's Audit-ID header) has another
// one and is kept.
//
// The hash is of the raw event, never of the processed one, so that a
// replay through another policy, or a change to redaction or enrichment,
// does not make every event look new.
//
// What does not count (the same event reaches us formatted differently by
// the webhook and the log backend, or re-encoded by a tool):
//   - whitespace between tokens, and the order of object members;
//   - how a string is escaped ("\u0041" is "A");
//   - how a number is spelled when the values are equal in float64 and
//     exactly representable (1, 1.0, 1e0, 10E-1); integers without a
//     fraction or exponent keep their digits, so large ones stay exact;
//   - the top-level kind and apiVersion: items of a webhook EventList
//     usually lack them while log lines carry them, and the processor
//     only accepts Event / audit.k8s.io anyway.
//
// Everything else counts: any value, any key, duplicated keys (kept, in
// their order, so a smuggled second "verb" changes the hash), array order,
// and the bytes of strings (invalid UTF-8 and lone surrogates are hashed
// as they are, not replaced). The canonical form is frozen: changing it
// would make every replayed event look reused.
func ContentHash(raw []byte) (string, error) {
	c := canonPool.Get().(*canonicalizer)
	defer c.release()
	c.in, c.i, c.out, c.members = raw, 0, c.out[:0], c.members[:0]
	c.ws()
	if c.i >= len(c.in) || c.in[c.i] != '{' {
		return "", errors.New("content hash: not a JSON object")
	}
	if err := c.object(0); err != nil {
		return "", fmt.Errorf("content hash: %w", err)
	}
	c.ws()
	if c.i != len(c.in) {
		return "", fmt.Errorf("content hash: data after the object at offset %d", c.i)
	}
	sum := sha256.Sum256(c.out)
	return hex.EncodeToString(sum[:]), nil
}

// Canonical form, a binary encoding that is unambiguous without any
// escaping: every value starts with a tag; strings and numbers are
// length-prefixed (uvarint); an object is 'o', then per member 'k', the
// key's length and bytes and the value, then 'e'; an array is 'a', its
// values, 'e'.
const (
	tagNull   = 'n'
	tagTrue   = 't'
	tagFalse  = 'f'
	tagNumber = 'd'
	tagString = 's'
	tagArray  = 'a'
	tagObject = 'o'
	tagKey    = 'k'
	tagEnd    = 'e'
)

// maxHashDepth is encoding/json's nesting limit: anything deeper was
// already refused by the decoder.
const maxHashDepth = 10000

// canonPool keeps the buffers: the canonical form is about as large as
// the event, and the processor hashes every event.
var canonPool = sync.Pool{New: func() any { return new(canonicalizer) }}

func (c *canonicalizer) release() {
	c.in = nil
	if cap(c.out) > 4<<20 {
		return // an unusually large event: let it go
	}
	canonPool.Put(c)
}

func isTypeMeta(key []byte) bool {
	return string(key) == "kind" || string(key) == "apiVersion"
}

type canonicalizer struct {
	in      []byte
	i       int
	out     []byte
	scratch []byte   // reordering of object members
	str     []byte   // a decoded string
	members []member // the members of the objects being read, innermost last
}

func (c *canonicalizer) ws() {
	for c.i < len(c.in) {
		switch c.in[c.i] {
		case ' ', '\t', '\n', '\r':
			c.i++
		default:
			return
		}
	}
}

func (c *canonicalizer) errf(format string, a ...any) error {
	return fmt.Errorf(format+" at offset %d", append(a, c.i)...)
}

func (c *canonicalizer) value(depth int) error {
	c.ws()
	if c.i >= len(c.in) {
		return c.errf("unexpected end")
	}
	switch b := c.in[c.i]; {
	case b == '{':
		return c.object(depth + 1)
	case b == '[':
		return c.array(depth + 1)
	case b == '"':
		c.out = append(c.out, tagString)
		return c.appendString()
	case b == '-' || (b >= '0' && b <= '9'):
		return c.number()
	case b == 'n' && bytes.HasPrefix(c.in[c.i:], litNull):
		c.i += len(litNull)
		c.out = append(c.out, tagNull)
	case b == 't' && bytes.HasPrefix(c.in[c.i:], litTrue):
		c.i += len(litTrue)
		c.out = append(c.out, tagTrue)
	case b == 'f' && bytes.HasPrefix(c.in[c.i:], litFalse):
		c.i += len(litFalse)
		c.out = append(c.out, tagFalse)
	default:
		return c.errf("unexpected character %q", b)
	}
	return nil
}

var litNull, litTrue, litFalse = []byte("null"), []byte("true"), []byte("false")

// appendString appends the length and bytes of the string at c.i to
// c.out.
func (c *canonicalizer) appendString() error {
	// Fast path: no escapes, the bytes between the quotes are the string.
	rest := c.in[c.i+1:]
	if end := bytes.IndexByte(rest, '"'); end >= 0 && bytes.IndexByte(rest[:end], '\\') < 0 {
		c.out = binary.AppendUvarint(c.out, uint64(end))
		c.out = append(c.out, rest[:end]...)
		c.i += end + 2
		return nil
	}
	s, err := c.string()
	if err != nil {
		return err
	}
	c.out = binary.AppendUvarint(c.out, uint64(len(s)))
	c.out = append(c.out, s...)
	return nil
}

// member is one object member's place in c.out: the key's decoded bytes
// are out[keyStart:keyEnd], the whole encoded member out[start:end].
type member struct{ start, keyStart, keyEnd, end int }

func (c *canonicalizer) object(depth int) error {
	if depth > maxHashDepth {
		return c.errf("exceeded max depth")
	}
	c.i++ // {
	c.out = append(c.out, tagObject)
	base := len(c.members)
	c.ws()
	if c.i < len(c.in) && c.in[c.i] == '}' {
		c.i++
		c.out = append(c.out, tagEnd)
		return nil
	}
	for {
		c.ws()
		if c.i >= len(c.in) || c.in[c.i] != '"' {
			return c.errf("want an object key")
		}
		m := member{start: len(c.out)}
		c.out = append(c.out, tagKey)
		if err := c.appendString(); err != nil {
			return err
		}
		// The key's bytes end c.out, after their length.
		m.keyEnd = len(c.out)
		_, n := binary.Uvarint(c.out[m.start+1:])
		m.keyStart = m.start + 1 + n
		c.ws()
		if c.i >= len(c.in) || c.in[c.i] != ':' {
			return c.errf("want ':' after an object key")
		}
		c.i++
		if err := c.value(depth); err != nil {
			return err
		}
		m.end = len(c.out)
		if depth == 0 && isTypeMeta(c.out[m.keyStart:m.keyEnd]) {
			c.out = c.out[:m.start] // type metadata, see ContentHash
		} else {
			c.members = append(c.members, m)
		}
		c.ws()
		if c.i >= len(c.in) {
			return c.errf("unexpected end in an object")
		}
		if c.in[c.i] == ',' {
			c.i++
			continue
		}
		if c.in[c.i] != '}' {
			return c.errf("want ',' or '}' in an object")
		}
		c.i++
		break
	}
	c.sortMembers(c.members[base:])
	c.members = c.members[:base]
	c.out = append(c.out, tagEnd)
	return nil
}

// sortMembers rewrites the members, which are the tail of c.out, in key
// order, stable so that duplicated keys keep their order.
func (c *canonicalizer) sortMembers(members []member) {
	key := func(m member) []byte { return c.out[m.keyStart:m.keyEnd] }
	cmp := func(a, b member) int { return bytes.Compare(key(a), key(b)) }
	if len(members) < 2 || slices.IsSortedFunc(members, cmp) {
		return
	}
	start := members[0].start
	slices.SortStableFunc(members, cmp)
	c.scratch = c.scratch[:0]
	for _, m := range members {
		c.scratch = append(c.scratch, c.out[m.start:m.end]...)
	}
	copy(c.out[start:], c.scratch)
}

func (c *canonicalizer) array(depth int) error {
	if depth > maxHashDepth {
		return c.errf("exceeded max depth")
	}
	c.i++ // [
	c.out = append(c.out, tagArray)
	c.ws()
	if c.i < len(c.in) && c.in[c.i] == ']' {
		c.i++
		c.out = append(c.out, tagEnd)
		return nil
	}
	for {
		if err := c.value(depth); err != nil {
			return err
		}
		c.ws()
		if c.i >= len(c.in) {
			return c.errf("unexpected end in an array")
		}
		if c.in[c.i] == ',' {
			c.i++
			continue
		}
		if c.in[c.i] != ']' {
			return c.errf("want ',' or ']' in an array")
		}
		c.i++
		break
	}
	c.out = append(c.out, tagEnd)
	return nil
}

// string decodes the string at c.i into c.str and returns it (valid until
// the next call). Escapes are decoded; other bytes are kept as they are,
// invalid UTF-8 included. A \u escape of a lone surrogate becomes its
// WTF-8 bytes, so it stays distinct from U+FFFD.
func (c *canonicalizer) string() ([]byte, error) {
	c.i++ // opening quote
	c.str = c.str[:0]
	for {
		start := c.i
		for c.i < len(c.in) && c.in[c.i] != '"' && c.in[c.i] != '\\' {
			if c.in[c.i] < 0x20 {
				return nil, c.errf("control character in a string")
			}
			c.i++
		}
		c.str = append(c.str, c.in[start:c.i]...)
		if c.i >= len(c.in) {
			return nil, c.errf("unterminated string")
		}
		if c.in[c.i] == '"' {
			c.i++
			return c.str, nil
		}
		// A backslash.
		if c.i+1 >= len(c.in) {
			return nil, c.errf("unterminated escape")
		}
		e := c.in[c.i+1]
		c.i += 2
		switch e {
		case '"', '\\', '/':
			c.str = append(c.str, e)
		case 'b':
			c.str = append(c.str, '\b')
		case 'f':
			c.str = append(c.str, '\f')
		case 'n':
			c.str = append(c.str, '\n')
		case 'r':
			c.str = append(c.str, '\r')
		case 't':
			c.str = append(c.str, '\t')
		case 'u':
			r, ok := c.hex4()
			if !ok {
				return nil, c.errf("bad \\u escape")
			}
			if utf16.IsSurrogate(r) {
				// A pair is one code point; a lone half is kept as is.
				save := c.i
				if c.i+1 < len(c.in) && c.in[c.i] == '\\' && c.in[c.i+1] == 'u' {
					c.i += 2
					if r2, ok := c.hex4(); ok {
						if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
							c.str = utf8.AppendRune(c.str, dec)
							continue
						}
					}
				}
				c.i = save
				c.str = append(c.str, 0xE0|byte(r>>12), 0x80|byte(r>>6)&0x3F, 0x80|byte(r)&0x3F)
				continue
			}
			c.str = utf8.AppendRune(c.str, r)
		default:
			return nil, c.errf("bad escape \\%c", e)
		}
	}
}

func (c *canonicalizer) hex4() (rune, bool) {
	if c.i+4 > len(c.in) {
		return 0, false
	}
	var r rune
	for _, b := range c.in[c.i : c.i+4] {
		switch {
		case b >= '0' && b <= '9':
			r = r<<4 | rune(b-'0')
		case b >= 'a' && b <= 'f':
			r = r<<4 | rune(b-'a'+10)
		case b >= 'A' && b <= 'F':
			r = r<<4 | rune(b-'A'+10)
		default:
			return 0, false
		}
	}
	c.i += 4
	return r, true
}

// number appends the canonical spelling of the number at c.i.
func (c *canonicalizer) number() error {
	start := c.i
	if c.in[c.i] == '-' {
		c.i++
	}
	integer := true
	for c.i < len(c.in) {
		switch b := c.in[c.i]; {
		case b >= '0' && b <= '9', b == '+', b == '-':
		case b == '.' || b == 'e' || b == 'E':
			integer = false
		default:
			goto done
		}
		c.i++
	}
done:
	lit := c.in[start:c.i]
	if len(lit) == 0 || (len(lit) == 1 && lit[0] == '-') {
		return c.errf("bad number")
	}
	canon := lit
	switch {
	case integer:
		if string(lit) == "-0" {
			canon = []byte("0")
		}
	default:
		f, err := strconv.ParseFloat(string(lit), 64)
		if err != nil {
			break // out of float64's range: keep the spelling
		}
		if f == math.Trunc(f) && math.Abs(f) <= 1<<53 {
			canon = strconv.AppendInt(nil, int64(f), 10) // 1.0, 1e2, -0.0
		} else {
			canon = strconv.AppendFloat(nil, f, 'g', -1, 64)
		}
	}
	c.out = append(c.out, tagNumber)
	c.out = binary.AppendUvarint(c.out, uint64(len(canon)))
	c.out = append(c.out, canon...)
	return nil
}
