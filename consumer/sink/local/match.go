package local

import (
	"database/sql/driver"
	"strconv"
	"strings"
	"sync"
	"unicode"

	"modernc.org/sqlite"
)

// matchFunc is the name of the SQL function that implements CLS's
// key:value on text fields: matchFunc(value, pattern) is 1 when the
// pattern's tokens occur in value's tokens, consecutively, case-insensitive.
const matchFunc = "auditpipe_match"

// registerFunctions registers matchFunc with the SQLite driver.
// modernc.org/sqlite only registers functions driver-wide (for every
// connection opened afterwards, process-wide), so this runs once per process;
// a package-level Once is the one piece of global state that the driver's own
// design forces on us. Open calls it before opening any connection.
var registerFunctions = sync.OnceValue(func() error {
	return sqlite.RegisterDeterministicScalarFunction(matchFunc, 2, sqlMatch)
})

func sqlMatch(_ *sqlite.FunctionContext, args []driver.Value) (driver.Value, error) {
	var value string
	switch v := args[0].(type) {
	case nil:
		return int64(0), nil
	case string:
		value = v
	case []byte:
		value = string(v)
	case int64:
		value = strconv.FormatInt(v, 10)
	case float64:
		value = strconv.FormatFloat(v, 'g', -1, 64)
	default:
		return int64(0), nil
	}
	pattern, _ := args[1].(string)
	if tokenMatch(value, pattern) {
		return int64(1), nil
	}
	return int64(0), nil
}

// Patterns are passed to matchFunc as one string in which '*' is a
// wildcard and '\' escapes a literal '*' or '\'.
func encodePattern(parts []string) string {
	var b strings.Builder
	for i, p := range parts {
		if i > 0 {
			b.WriteByte('*')
		}
		for j := 0; j < len(p); j++ {
			if p[j] == '*' || p[j] == '\\' {
				b.WriteByte('\\')
			}
			b.WriteByte(p[j])
		}
	}
	return b.String()
}

// isTokenRune is the token definition of FTS5's unicode61 tokenizer, which
// the full-text index uses: letters, numbers and private-use characters;
// everything else separates tokens. Using the same definition keeps the
// full-text prefilter a superset of what tokenMatch accepts.
func isTokenRune(r rune) bool {
	return unicode.IsLetter(r) || unicode.IsNumber(r) || unicode.Is(unicode.Co, r)
}

// patternTokens splits an encoded pattern into tokens, each a glob split at
// its wildcards ("ng*x" -> ["ng", "x"]), lower case. literal is the pattern
// without escapes, for patterns without any token (only punctuation).
func patternTokens(pattern string) (tokens [][]string, literal string) {
	var lit strings.Builder
	var cur []string
	var seg strings.Builder
	inTok := false
	flush := func() {
		if inTok {
			cur = append(cur, strings.ToLower(seg.String()))
			tokens = append(tokens, cur)
		}
		cur, inTok = nil, false
		seg.Reset()
	}
	escaped := false
	for _, r := range pattern {
		switch {
		case escaped:
			escaped = false
			lit.WriteRune(r)
			if isTokenRune(r) {
				seg.WriteRune(r)
				inTok = true
			} else {
				flush()
			}
		case r == '\\':
			escaped = true
		case r == '*':
			// A wildcard belongs to the token it touches.
			cur = append(cur, strings.ToLower(seg.String()))
			seg.Reset()
			inTok = true
		case isTokenRune(r):
			lit.WriteRune(r)
			seg.WriteRune(r)
			inTok = true
		default:
			lit.WriteRune(r)
			flush()
		}
	}
	flush()
	return tokens, lit.String()
}

// valueTokens splits s into lower-case tokens.
func valueTokens(s string) []string {
	return strings.FieldsFunc(strings.ToLower(s), func(r rune) bool { return !isTokenRune(r) })
}

// tokenMatch is CLS's phrase match on a tokenized field: the pattern's tokens
// occur consecutively among value's tokens, each token matched as a glob.
// A pattern without tokens ("-", "::") must equal the value.
func tokenMatch(value, pattern string) bool {
	ptoks, literal := patternTokens(pattern)
	if len(ptoks) == 0 {
		return strings.EqualFold(value, literal)
	}
	vtoks := valueTokens(value)
	for i := 0; i+len(ptoks) <= len(vtoks); i++ {
		ok := true
		for j, pt := range ptoks {
			if !globMatch(pt, vtoks[i+j]) {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// globMatch matches s against segs, the pieces of a glob between its '*'s.
func globMatch(segs []string, s string) bool {
	if len(segs) == 1 {
		return segs[0] == s
	}
	if !strings.HasPrefix(s, segs[0]) {
		return false
	}
	s = s[len(segs[0]):]
	last := segs[len(segs)-1]
	for _, mid := range segs[1 : len(segs)-1] {
		i := strings.Index(s, mid)
		if i < 0 {
			return false
		}
		s = s[i+len(mid):]
	}
	return len(s) >= len(last) && strings.HasSuffix(s, last)
}

// ftsQuery returns an FTS5 query that every event tokenMatch would accept
// matches (a prefilter), and whether it is exact (tokenMatch adds nothing).
// It returns "" when the pattern gives the index nothing to go on (a leading
// wildcard token, only punctuation).
func ftsQuery(parts []string) (query string, exact bool) {
	if len(parts) == 1 {
		// No wildcard: a phrase, which FTS5 tokenizes like the index.
		if len(valueTokens(parts[0])) == 0 {
			return "", false
		}
		return `"` + strings.ReplaceAll(parts[0], `"`, `""`) + `"`, true
	}
	tokens, _ := patternTokens(encodePattern(parts))
	var terms []string
	exact = len(tokens) == 1
	for _, t := range tokens {
		switch {
		case len(t) == 1:
			terms = append(terms, `"`+t[0]+`"`)
		case t[0] == "":
			exact = false
		default:
			terms = append(terms, `"`+t[0]+`"*`)
			if len(t) != 2 || t[1] != "" {
				exact = false
			}
		}
	}
	if len(terms) == 0 {
		return "", false
	}
	return strings.Join(terms, " AND "), exact
}
