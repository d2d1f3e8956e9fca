package vlstore

import (
	"errors"
	"strconv"
	"strings"

	"github.com/auditpipe/auditpipe/consumer/internal/flatten"
	"github.com/auditpipe/auditpipe/consumer/search/cql"
	"github.com/auditpipe/auditpipe/schemas"
)

// textQuery is Query.Text compiled: every pattern must match a value of
// the event (CLS's words, cql.Pattern), as the SQLite store's full text
// does (decision 0006). VictoriaLogs' words differ from CLS's (they split
// at every non-alphanumeric character, and its phrase filters are
// case-sensitive unless wrapped in i()), so the storage only narrows
// (prefilter) and match decides.
type textQuery struct {
	patterns []cql.Pattern
	// none: the text has no word at all (only delimiters): it matches
	// nothing, as in the SQLite store.
	none bool
}

// compileText splits text as the SQLite store's Query does (ftsMatch):
// "quoted phrases" (every word literal, consecutive) and words separated
// by white space (a trailing * a prefix); an unbalanced quote makes the
// rest one phrase.
func compileText(text string) textQuery {
	var tq textQuery
	add := func(term string, phrase bool) {
		pat := cql.CompilePattern(term, phrase)
		if len(pat.Words) == 0 {
			return
		}
		if phrase {
			for i := range pat.Words {
				pat.Words[i].Wild = false
			}
		}
		tq.patterns = append(tq.patterns, pat)
	}
	for rest := strings.TrimSpace(text); rest != ""; rest = strings.TrimSpace(rest) {
		if rest[0] == '"' {
			end := strings.IndexByte(rest[1:], '"')
			if end < 0 {
				add(rest[1:], true)
				break
			}
			add(rest[1:1+end], true)
			rest = rest[end+2:]
			continue
		}
		word, after, _ := strings.Cut(rest, " ")
		if i := strings.IndexAny(word, "\t\r\n"); i >= 0 {
			word, after = rest[:i], rest[i+1:]
		}
		rest = after
		add(word, false)
	}
	tq.none = len(tq.patterns) == 0 && strings.TrimSpace(text) != ""
	return tq
}

// prefilter is a LogsQL filter that every event match accepts matches (a
// superset), "" when there is nothing to narrow by. Per pattern: a word
// that CLS finds in a value is bounded by CLS delimiters, which are all
// outside VictoriaLogs' token characters, so the case-insensitive phrase
// i("word") on some field finds it too; a wildcard word narrows by its
// literal prefix, i("prefix"*). A phrase needs all its words, a plain
// pattern any of them (cql.Pattern.Match).
func (tq textQuery) prefilter(lowered bool) string { return tq.prefilterOn(`"*"`, lowered) }

// prefilterOn is prefilter on one field (quoted LogsQL field name; "*" is
// every field). lowered: the store holds auditpipe:lower (wordFilter).
func (tq textQuery) prefilterOn(field string, lowered bool) string {
	var and []string
	for _, p := range tq.patterns {
		var words []string
		complete := true
		for _, g := range p.Words {
			if f := wordFilter(field, g, lowered); f != "" {
				words = append(words, f)
			} else {
				complete = false
			}
		}
		switch {
		case len(words) == 0:
		case p.Phrase && len(p.Words) > 1:
			and = append(and, words...)
		case complete:
			and = append(and, "("+strings.Join(words, " OR ")+")")
		}
	}
	return strings.Join(and, " ")
}

// wordFilter is the any-case LogsQL filter on field that a CLS word (or
// glob) implies; "" when it implies none (a glob starting with a
// wildcard).
//
// On every field ("*") of a store whose events all have auditpipe:lower
// (lowered), it is the lower-case word's case-sensitive phrase (or
// prefix): a value that has the word in any case has it as written, or
// the word there has upper case or non-ASCII text, and so its lower-case
// copy is in auditpipe:lower. The storage's bloom filters (tokens as written) then
// skip the blocks without it, where i() reads every value.
func wordFilter(field string, g cql.Glob, lowered bool) string {
	if lowered && field == `"*"` && !lowerFree(g) {
		if !g.Wild {
			return field + ":" + strconv.Quote(g.Text)
		}
		if p := g.Prefix(); p != "" {
			return field + ":" + strconv.Quote(p) + "*"
		}
		return ""
	}
	// The case-free token first: it is the cheaper one per value, and
	// the storage applies an AND's filters in order.
	if !g.Wild {
		return caseFreeFilter(field, g.Text, false) + field + `:i(` + strconv.Quote(g.Text) + `)`
	}
	if p := g.Prefix(); p != "" {
		return caseFreeFilter(field, p, true) + field + `:i(` + strconv.Quote(p) + `*)`
	}
	return ""
}

// lowerFree reports whether a word that matches g may be missing from
// auditpipe:lower: a word with t or z as its only letters may be a
// timestamp's, which appendLower leaves out (timeShaped).
func lowerFree(g cql.Glob) bool {
	text := g.Text
	if g.Wild {
		text = g.Prefix()
	}
	return timeShaped(text) && strings.ContainsAny(text, "tz")
}

// caseFreeFilter adds to a word's filter a case-sensitive phrase filter
// on the longest of its VictoriaLogs tokens that case cannot change
// (digits and '_'), "" when it has none: the same events, but the
// storage's bloom filters (which hold tokens as written) skip the blocks
// without it, where i() reads every value. A word found between CLS
// delimiters has its tokens whole in the value (the delimiters are not
// token characters), except, for a prefix, the last one.
func caseFreeFilter(field, word string, prefix bool) string {
	best := ""
	start := -1
	for i := 0; i <= len(word); i++ {
		if i < len(word) && isTokenByte(word[i]) {
			if start < 0 {
				start = i
			}
			continue
		}
		if start >= 0 {
			tok := word[start:i]
			whole := !(prefix && i == len(word))
			if whole && len(tok) > len(best) && strings.Trim(tok, "0123456789_") == "" {
				best = tok
			}
			start = -1
		}
	}
	if best == "" {
		return ""
	}
	return field + ":" + strconv.Quote(best) + " "
}

// isTokenByte: VictoriaLogs' token characters are ASCII letters, digits,
// '_' and non-ASCII letters and digits; a byte >= 0x80 counts as one (a
// run containing one is never case-free, so its exact extent does not
// matter).
func isTokenByte(c byte) bool {
	return c >= 0x80 || c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// match reports whether every pattern matches a value of the event (not
// auditpipe's own fields), the SQLite store's auditpipe_text per pattern.
func (tq textQuery) match(event string) bool {
	if tq.none {
		return false
	}
	if len(tq.patterns) == 0 {
		return true
	}
	found := make([]bool, len(tq.patterns))
	left := len(found)
	var words []string
	errDone := errors.New("done")
	_ = flatten.WalkCompactString(event, func(key, v string, _ flatten.Kind) error {
		if ownField(key) {
			return nil
		}
		words = cql.AppendWords(words[:0], v)
		for i, p := range tq.patterns {
			if !found[i] && p.Match(words) {
				found[i] = true
				left--
			}
		}
		if left == 0 {
			return errDone
		}
		return nil
	})
	return left == 0
}

// ownField reports whether key is one of the fields auditpipe adds: full
// text sees the event as the apiserver sent it (as in the SQLite store).
func ownField(key string) bool {
	return key == schemas.PipelineKey || strings.HasPrefix(key, schemas.PipelineKey+".")
}
