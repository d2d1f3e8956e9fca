package local

import (
	"encoding/json"
	"strings"
)

// appendText appends the full-text rendition of the valid JSON document js to
// dst: every string and number value, one per line, without object keys.
// Keys are left out because every event has the same ones: indexing them
// would make a search for "user" or "name" match everything. Field-scoped
// search (objectRef.name:nginx) is the job of the columns and json_extract,
// not of the full-text index.
//
// It is a byte scanner rather than a json.Decoder walk because it runs for
// every stored event and the document was already validated by Write.
func appendText(dst, js []byte) []byte {
	for i := 0; i < len(js); {
		c := js[i]
		switch {
		case c == '"':
			end, escaped := scanString(js, i)
			// A string followed by ':' is an object key.
			k := end
			for k < len(js) && isSpace(js[k]) {
				k++
			}
			if k < len(js) && js[k] == ':' {
				i = k + 1
				continue
			}
			if escaped {
				var s string
				if err := json.Unmarshal(js[i:end], &s); err == nil {
					dst = append(dst, s...)
				}
			} else {
				dst = append(dst, js[i+1:end-1]...)
			}
			dst = append(dst, '\n')
			i = end
		case c == '-' || (c >= '0' && c <= '9'):
			j := i + 1
			for j < len(js) && strings.IndexByte("0123456789.eE+-", js[j]) >= 0 {
				j++
			}
			dst = append(dst, js[i:j]...)
			dst = append(dst, '\n')
			i = j
		default:
			// Structure, whitespace and the letters of true/false/null.
			i++
		}
	}
	return dst
}

// scanString returns the index just past the closing quote of the string
// starting at js[start] and whether it contains escapes.
func scanString(js []byte, start int) (end int, escaped bool) {
	for j := start + 1; j < len(js); j++ {
		switch js[j] {
		case '\\':
			escaped = true
			j++
		case '"':
			return j + 1, escaped
		}
	}
	return len(js), escaped
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }
