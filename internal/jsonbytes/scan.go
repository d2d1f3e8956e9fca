package jsonbytes

import "bytes"

// The functions here find where things end in JSON already known to be
// valid (Valid, or Normalize's output): they check nothing, so they cost
// one pass with no copies. The fast decoders of the producer and the
// processor read events with them and fall back to encoding/json for
// any form they do not read exactly as it does.

// StringEnd is the offset after the closing quote of the valid string
// starting at v[i].
func StringEnd(v []byte, i int) int {
	// In a valid string, a quote ends it unless an odd number of
	// backslashes precede it.
	for j := i + 1; j < len(v); {
		k := bytes.IndexByte(v[j:], '"')
		if k < 0 {
			return len(v)
		}
		j += k
		n := 0
		for v[j-1-n] == '\\' {
			n++
		}
		if n%2 == 0 {
			return j + 1
		}
		j++
	}
	return len(v)
}

// SkipWS is the offset of the first non-whitespace byte at or after i.
func SkipWS(v []byte, i int) int { return skipWS(v, i) }

// SkipValue is the offset after the valid JSON value at v[i].
func SkipValue(v []byte, i int) int {
	switch v[i] {
	case '"':
		return StringEnd(v, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(v); j++ {
			switch v[j] {
			case '"':
				j = StringEnd(v, j) - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return len(v)
	default: // number, true, false, null
		j := i
		for j < len(v) {
			switch v[j] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return j
			}
			j++
		}
		return j
	}
}

// Fields calls fn with the key (without quotes, as written) and the value
// of every member of the valid JSON object v, in order. It returns false
// when v is not an object, a key holds an escape (the caller would have
// to unescape it) or fn returns false.
func Fields(v []byte, fn func(key, value []byte) bool) bool {
	i := skipWS(v, 0)
	if i >= len(v) || v[i] != '{' {
		return false
	}
	i = skipWS(v, i+1)
	if v[i] == '}' {
		return true
	}
	for {
		end := StringEnd(v, i)
		key := v[i+1 : end-1]
		if bytes.IndexByte(key, '\\') >= 0 {
			return false
		}
		i = skipWS(v, skipWS(v, end)+1) // past the colon
		vend := SkipValue(v, i)
		if !fn(key, v[i:vend]) {
			return false
		}
		i = skipWS(v, vend)
		if v[i] == '}' {
			return true
		}
		i = skipWS(v, i+1) // past the comma
	}
}
