package vlstore

import (
	"cmp"
	"math"
	"regexp"
	"slices"
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
//
//   - *, AND, OR, NOT;
//
//   - responseStatus.code's ranges and integer matches (codeFilter);
//
//   - key:value on the keys exactKey names (the column keys and the
//     JSON paths, annotations.authorization.k8s.io/decision), for
//     literal ASCII words: a word, word*, several words (any of them) or
//     a "phrase" (all in a row), as matchFilter says.
//
//   - full text (a Match term without a key) for the same words, on every
//     field ("*"). That is exact only where no event in range has the
//     words in a field that is not the event's value (auditpipe's own
//     fields and the storage's _msg, _time, _stream, _stream_id, which full
//     text must not see and no LogsQL field list can leave out): the
//     caller checks textGuard first.
//
// Not translated: other wildcards, key:* and key:""
// (VictoriaLogs drops empty values), ranges on other keys (CLS parses
// numbers from text its own way), the keys exactKey leaves out.
func exactLogsQL(e cql.Expr, lowered bool) (string, bool) {
	switch e := e.(type) {
	case nil:
		return "*", true
	case *cql.And:
		// The storage applies an AND's filters in their order, each to
		// the rows the previous ones left: the cheap ones first (see
		// filterCost), which AND leaves free to reorder.
		var parts []string
		for _, x := range conjuncts(e, nil) {
			f, ok := exactLogsQL(x, lowered)
			if !ok {
				return "", false
			}
			parts = append(parts, f)
		}
		slices.SortStableFunc(parts, func(a, b string) int { return cmp.Compare(filterCost(a), filterCost(b)) })
		return "(" + strings.Join(parts, " ") + ")", true
	case *cql.Or:
		l, ok1 := exactLogsQL(e.L, lowered)
		r, ok2 := exactLogsQL(e.R, lowered)
		return "(" + l + " OR " + r + ")", ok1 && ok2
	case *cql.Not:
		x, ok := exactLogsQL(e.X, lowered)
		return "(NOT " + x + ")", ok
	case *cql.Term:
		switch {
		case e.Kind == cql.All:
			return "*", true
		case e.Field == "" && e.Kind == cql.Match:
			return matchFilter(`"*"`, e, lowered)
		case e.Field == keyCode:
			return codeFilter(e)
		case e.Kind != cql.Match || !exactKey(e.Field):
			return "", false
		}
		return matchFilter(strconv.Quote(e.Field), e, false)
	}
	return "", false
}

// textGuard is, for the full-text terms of e, a LogsQL filter that selects
// the events in which exactLogsQL's translation of a term could match a
// field full text does not see: the term's filter on auditpipe's fields
// (auditpipe.*, and this store's auditpipe:rest and auditpipe:doc) and on
// the storage's own (every name starting with '_'; flatten makes none).
// "" when e has no full text. When no event in range passes it, "*" in
// the translation is exactly the event's values there. auditpipe:rest
// holds event values (that are no field), one per line: a phrase could
// span two of them, so a word there makes the fallback answer. Not
// auditpipe:lower: its words are the event's own, lower-cased, and
// lowerSeparator keeps a phrase from spanning two, so a match there is a
// match in the event.
func textGuard(e cql.Expr, lowered bool) string {
	var any []string
	var walk func(cql.Expr)
	walk = func(e cql.Expr) {
		switch e := e.(type) {
		case *cql.And:
			walk(e.L)
			walk(e.R)
		case *cql.Or:
			walk(e.L)
			walk(e.R)
		case *cql.Not:
			walk(e.X)
		case *cql.Term:
			if e.Field != "" || e.Kind != cql.Match {
				return
			}
			var own []string
			for _, field := range [...]string{`"auditpipe.*"`, `"auditpipe"`, strconv.Quote(fieldRest), strconv.Quote(fieldDoc), `"_*"`} {
				if f, ok := matchFilter(field, e, false); ok {
					own = append(own, f)
				}
			}
			if len(own) == 0 {
				return
			}
			g := "(" + strings.Join(own, " OR ") + ")"
			// Only events the term's every-field prefilter passes can match
			// it in those fields: with auditpipe:lower that prefilter is
			// bloom-filtered, and first (the storage applies an AND's
			// filters in order), the any-case filters above read only
			// the few events it leaves (a rare word: none). Not for a
			// prefix, which most blocks pass (kube*: 7 days at 1M events
			// took 651 ms with it, 403 without).
			pat := cql.CompilePattern(e.Pattern, e.Quoted)
			if lowered && !slices.ContainsFunc(pat.Words, func(g cql.Glob) bool { return g.Wild }) {
				if pf := (textQuery{patterns: []cql.Pattern{pat}}).prefilterOn(`"*"`, true); pf != "" {
					g = "(" + pf + " " + g + ")"
				}
			}
			any = append(any, g)
		}
	}
	walk(e)
	if len(any) == 0 {
		return ""
	}
	return "(" + strings.Join(any, " OR ") + ")"
}

// exactKey reports whether key:value on key is translated: the SQLite
// store's text column keys (exactFields) and every other key the storage
// holds as a field whose value is the text CLS matches, that is every
// flattened key (decode in write.go stores flatten's value text as it
// is) but those it does not keep as written: longer names than the
// storage takes, stageTimestamp (its zero time is not a field), and names
// starting with '_' (flatten never makes one; CLS's __SPECIAL__ keys and
// the storage's own _msg, _time, _stream are not event keys).
//
// A key other than exactFields is read by the SQLite store with
// flatten.Lookup, which takes the first of two values an event has under
// one key (duplicate JSON members, or two member names that SanitizeKey
// makes equal, as "a b" and "a_b" in one map); the storage keeps the last
// one. For such an event the two stores differ, natively as in the
// fallback (whose prefilter reads the same field): the processor's events
// have neither.
func exactKey(key string) bool {
	if exactFields[key] {
		return true
	}
	return key != "" && key[0] != '_' && len(key) <= maxFieldNameSize && key != keyStageTS && key != keyCode
}

// matchFilter translates key:value (a Match term on an exactKey): the
// value's CLS words (cql.CompilePattern), each a regexp that finds it
// between CLS delimiters (or the ends of the value), every letter a class
// of the runes whose strings.ToLower is that letter (what CLS's
// case-insensitivity is here), so nothing depends on VictoriaLogs' own
// words or case rules; any of the words, or for a "phrase" of several
// words all of them in a row, separated by delimiters only (the words of
// a value are what its delimiters separate). Only literal ASCII words,
// and word* for a plain word; else ok is false.
//
// Before each regexp, the word's any-case phrase filter (wordFilter),
// which every value the regexp matches passes (CLS delimiters are not
// VictoriaLogs token characters): the same events, but far fewer values
// for the regexp, which costs ~1 µs a value.
//
// field is the quoted LogsQL field name, or a wildcard: "*" for full text
// (with lowered, see wordFilter).
func matchFilter(field string, t *cql.Term, lowered bool) (string, bool) {
	pat := cql.CompilePattern(t.Pattern, t.Quoted)
	if len(pat.Words) == 0 {
		return "", false
	}
	if pat.Phrase && len(pat.Words) > 1 {
		words := make([]string, len(pat.Words))
		var pre []string
		for i, g := range pat.Words {
			if g.Wild {
				return "", false
			}
			words[i] = g.Text
			pre = append(pre, wordFilter(field, g, lowered))
		}
		re, ok := phraseRegexp(words)
		if !ok {
			return "", false
		}
		return "(" + strings.Join(pre, " ") + " " + field + ":~" + strconv.Quote(re) + ")", true
	}
	var any []string
	for _, g := range pat.Words {
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
		any = append(any, "("+wordFilter(field, g, lowered)+" "+field+":~"+strconv.Quote(re)+")")
	}
	if len(any) == 1 {
		return any[0], true
	}
	return "(" + strings.Join(any, " OR ") + ")", true
}

// conjuncts appends the operands of a chain of ANDs to dst.
func conjuncts(e cql.Expr, dst []cql.Expr) []cql.Expr {
	if a, ok := e.(*cql.And); ok {
		return conjuncts(a.R, conjuncts(a.L, dst))
	}
	return append(dst, e)
}

// filterCost ranks a translated filter by its cost per row: a number
// range (responseStatus.code) reads a number column; one word's regexp
// (matchFilter) lower-cases and matches strings; anything with OR or NOT
// may be several of those.
func filterCost(f string) int {
	switch {
	case strings.Contains(f, " OR ") || strings.Contains(f, "(NOT "):
		return 2
	case strings.Contains(f, ":~"):
		return 1
	}
	return 0
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
	w, ok := wordClasses(word)
	if !ok {
		return "", false
	}
	re := "(?:^|" + delimiterClass + ")" + w
	if !prefix {
		re += "(?:$|" + delimiterClass + ")"
	}
	return re, true
}

// phraseRegexp matches a value that has the CLS words consecutively: each
// separated from the next by delimiters only.
func phraseRegexp(words []string) (string, bool) {
	parts := make([]string, len(words))
	for i, w := range words {
		c, ok := wordClasses(w)
		if !ok {
			return "", false
		}
		parts[i] = c
	}
	return "(?:^|" + delimiterClass + ")" + strings.Join(parts, delimiterClass+"+") + "(?:$|" + delimiterClass + ")", true
}

// wordClasses is the regexp of one literal lowercase ASCII word without
// delimiters, its letters as lowerPreimage classes.
func wordClasses(word string) (string, bool) {
	if word == "" {
		return "", false
	}
	var b strings.Builder
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
