package vlstore

import (
	"math"
	"regexp"
	"strconv"
	"strings"

	"github.com/auditpipe/auditpipe/consumer/search/cql"
)

// exactFields are the keys whose CLS matches exactLogsQL translates: the
// SQLite store's text column fields, which every event has at most once
// as a plain string (so the storage's field holds exactly what CLS
// matches). Not responseStatus.code: SQLite matches it as a number.
var exactFields = map[string]bool{
	"auditID": true, "stage": true, "level": true, "verb": true, "user.username": true,
	"objectRef.resource": true, "objectRef.subresource": true, "objectRef.namespace": true,
	"objectRef.name": true, "objectRef.apiGroup": true, "userAgent": true, keyCluster: true,
}

// exactLogsQL translates a CLS filter to a LogsQL filter that selects
// exactly the events the SQLite store's compiler matches, or reports that
// it cannot (ok false): then Search takes the fallback. Translated:
//   - *, AND, OR, NOT;
//   - responseStatus.code's ranges and integer matches (codeFilter);
//   - key:word and key:prefix* on exactFields, the word literal and of
//     ASCII characters: a regexp that finds the word between CLS
//     delimiters (or the ends of the value), each letter a class of the
//     runes whose strings.ToLower is that letter (what CLS's
//     case-insensitivity is here), so nothing depends on VictoriaLogs'
//     own words or case rules.
//
// Not translated: full text (it excludes auditpipe's fields, which no
// LogsQL field list can say), phrases and other wildcards, key:* and
// key:"" (VictoriaLogs drops empty values), ranges on other keys (CLS
// parses numbers from text its own way), other keys.
func exactLogsQL(e cql.Expr) (string, bool) {
	switch e := e.(type) {
	case nil:
		return "*", true
	case *cql.And:
		l, ok1 := exactLogsQL(e.L)
		r, ok2 := exactLogsQL(e.R)
		return "(" + l + " " + r + ")", ok1 && ok2
	case *cql.Or:
		l, ok1 := exactLogsQL(e.L)
		r, ok2 := exactLogsQL(e.R)
		return "(" + l + " OR " + r + ")", ok1 && ok2
	case *cql.Not:
		x, ok := exactLogsQL(e.X)
		return "(NOT " + x + ")", ok
	case *cql.Term:
		switch {
		case e.Kind == cql.All:
			return "*", true
		case e.Field == keyCode:
			return codeFilter(e)
		case e.Kind != cql.Match || !exactFields[e.Field] || e.Quoted:
			return "", false
		}
		pat := cql.CompilePattern(e.Pattern, false)
		if len(pat.Words) != 1 {
			return "", false
		}
		g := pat.Words[0]
		word, prefix := g.Text, false
		if g.Wild {
			if !g.PrefixOnly() {
				return "", false
			}
			word, prefix = g.Prefix(), true
		}
		re, ok := wordRegexp(word, prefix)
		if !ok {
			return "", false
		}
		// The case-free token (if any) adds nothing but speed: the
		// bloom filters skip the blocks without it.
		return "(" + strconv.Quote(e.Field) + ":~" + strconv.Quote(re) + caseFreeFilter(strconv.Quote(e.Field), word, prefix) + ")", true
	}
	return "", false
}

// keyCode is the one number column of the SQLite store: matched as a
// number there, not by words.
const keyCode = "responseStatus.code"

// codeFilter translates what the SQLite store compares numerically on
// responseStatus.code (an integer in every event: schemas.Status): a range
// (code >= n) and a match on an integer (code = n), as VictoriaLogs'
// numeric range filters. A missing code matches neither, in both.
func codeFilter(t *cql.Term) (string, bool) {
	field := strconv.Quote(keyCode)
	num := func(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }
	switch t.Kind {
	case cql.Range:
		if math.IsInf(t.Number, 0) || math.IsNaN(t.Number) {
			return "", false
		}
		switch t.Op {
		case ">", ">=", "<", "<=":
			return field + ":" + t.Op + num(t.Number), true
		case "=":
			return "(" + field + ":>=" + num(t.Number) + " " + field + ":<=" + num(t.Number) + ")", true
		}
	case cql.Match:
		pat := cql.CompilePattern(t.Pattern, t.Quoted)
		if len(pat.Words) != 1 || pat.Words[0].Wild {
			return "", false
		}
		n, err := strconv.ParseInt(pat.Words[0].Text, 10, 64)
		if err != nil {
			return "", false
		}
		v := strconv.FormatInt(n, 10)
		return "(" + field + ":>=" + v + " " + field + ":<=" + v + ")", true
	}
	return "", false
}

// delimiterClass is CLS's delimiters as a regexp class.
var delimiterClass = "[" + regexp.QuoteMeta(cql.Delimiters) + "]"

// wordRegexp matches a value that has the CLS word (lowercase, as
// cql.CompilePattern makes it), or with prefix a word starting with it.
// Only ASCII words: ok is false otherwise.
func wordRegexp(word string, prefix bool) (string, bool) {
	if word == "" {
		return "", false
	}
	var b strings.Builder
	b.WriteString("(?:^|" + delimiterClass + ")")
	for i := 0; i < len(word); i++ {
		c := word[i]
		switch {
		case c >= 0x80 || cql.IsDelimiter(rune(c)):
			return "", false
		case c >= 'a' && c <= 'z':
			b.WriteString(lowerPreimage(c))
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	if !prefix {
		b.WriteString("(?:$|" + delimiterClass + ")")
	}
	return b.String(), true
}

// lowerPreimage is a regexp class of the runes whose unicode.ToLower is
// the ASCII letter c: the letter, its upper case, and two non-ASCII
// runes (TestLowerPreimage checks the table against every rune).
func lowerPreimage(c byte) string {
	switch c {
	case 'i':
		return "[iI\u0130]" // İ, LATIN CAPITAL LETTER I WITH DOT ABOVE
	case 'k':
		return "[kK\u212A]" // K, KELVIN SIGN
	}
	return "[" + string(c) + string(c-'a'+'A') + "]"
}
