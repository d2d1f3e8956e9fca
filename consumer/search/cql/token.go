package cql

import (
	"strings"
	"unicode/utf8"
)

// Delimiters are the characters that split a value into words in CLS's
// default index ("Segment and Index"): everything else, '-', '.' and '_'
// included, belongs to a word, so nginx-deployment and kube-system are one
// word each. The default index is case-insensitive: words are compared in
// lower case.
const Delimiters = "@&()='\",;:<>[]{}/ \n\t\r"

// IsDelimiter reports whether r splits words.
func IsDelimiter(r rune) bool {
	return r < utf8.RuneSelf && strings.IndexByte(Delimiters, byte(r)) >= 0
}

// Words splits s into its lower-case words, as CLS indexes it.
func Words(s string) []string {
	return strings.FieldsFunc(strings.ToLower(s), IsDelimiter)
}

// AppendWords appends the lower-case words of s to dst.
func AppendWords(dst []string, s string) []string {
	start := -1
	for i, r := range s {
		if IsDelimiter(r) {
			if start >= 0 {
				dst = append(dst, strings.ToLower(s[start:i]))
				start = -1
			}
		} else if start < 0 {
			start = i
		}
	}
	if start >= 0 {
		dst = append(dst, strings.ToLower(s[start:]))
	}
	return dst
}

// Glob is one word of a pattern: lower-case text in which '*' stands for
// any run of characters and '?' for exactly one, unless escaped. Wild is
// false when it has no wildcard (then Text is the literal word).
type Glob struct {
	// Text is the word; when Wild, wildcards are '*' and '?' and '\'
	// escapes a literal '*', '?' or '\'.
	Text string
	Wild bool
}

// Prefix is the literal text before the first wildcard (all of it when the
// word has none), unescaped.
func (g Glob) Prefix() string {
	if !g.Wild {
		return g.Text
	}
	var b strings.Builder
	for i := 0; i < len(g.Text); i++ {
		switch c := g.Text[i]; c {
		case '*', '?':
			return b.String()
		case '\\':
			i++
			if i < len(g.Text) {
				b.WriteByte(g.Text[i])
			}
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// PrefixOnly reports whether the glob's only wildcard is one trailing '*'
// (kube*): a prefix search, which an index answers exactly.
func (g Glob) PrefixOnly() bool {
	if !g.Wild {
		return false
	}
	p := g.Prefix()
	return len(p) > 0 && escapedLen(p) == len(g.Text)-1 && g.Text[len(g.Text)-1] == '*'
}

// escapedLen is the length of s once its '*', '?' and '\' are escaped.
func escapedLen(s string) int {
	n := len(s)
	for i := 0; i < len(s); i++ {
		if s[i] == '*' || s[i] == '?' || s[i] == '\\' {
			n++
		}
	}
	return n
}

// Match reports whether the lower-case word w matches the glob.
func (g Glob) Match(w string) bool {
	if !g.Wild {
		return g.Text == w
	}
	return globMatch(g.Text, w)
}

// globMatch is iterative wildcard matching with backtracking to the last
// '*', rune by rune, linear in practice.
func globMatch(p, s string) bool {
	pi, si := 0, 0
	starP, starS := -1, 0
	for si < len(s) {
		if pi < len(p) {
			switch c := p[pi]; c {
			case '*':
				starP, starS = pi, si
				pi++
				continue
			case '?':
				_, n := utf8.DecodeRuneInString(s[si:])
				pi++
				si += n
				continue
			case '\\':
				if pi+1 < len(p) && p[pi+1] == s[si] {
					pi += 2
					si++
					continue
				}
			default:
				if c == s[si] {
					pi++
					si++
					continue
				}
			}
		}
		if starP < 0 {
			return false
		}
		// Let the last '*' take one more rune and retry.
		_, n := utf8.DecodeRuneInString(s[starS:])
		starS += n
		pi, si = starP+1, starS
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}

// Pattern is a compiled search value: its words, and whether they form a
// phrase (a quoted value: the words adjacent and in order) or alternatives
// (an unquoted value split by escaped delimiters: any one word, CLS's OR).
type Pattern struct {
	Words  []Glob
	Phrase bool
}

// CompilePattern splits a term's value (Term.Pattern) into words at the
// delimiters, in lower case.
func CompilePattern(pattern string, phrase bool) Pattern {
	out := Pattern{Phrase: phrase}
	var b strings.Builder
	wild := false
	flush := func() {
		if b.Len() > 0 {
			out.Words = append(out.Words, Glob{Text: b.String(), Wild: wild})
		}
		b.Reset()
		wild = false
	}
	// Escapes are kept only where they protect a wildcard character;
	// words without wildcards are unescaped below.
	for i := 0; i < len(pattern); {
		r, n := utf8.DecodeRuneInString(pattern[i:])
		switch {
		case r == '\\' && i+1 < len(pattern):
			e, m := utf8.DecodeRuneInString(pattern[i+1:])
			i += 1 + m
			switch {
			case IsDelimiter(e):
				flush()
			case e == '*' || e == '?' || e == '\\':
				b.WriteString(`\` + string(e))
			default:
				b.WriteString(strings.ToLower(string(e)))
			}
			continue
		case r == '*' || r == '?':
			wild = true
			b.WriteRune(r)
		case IsDelimiter(r):
			flush()
		default:
			b.WriteString(strings.ToLower(string(r)))
		}
		i += n
	}
	flush()
	// A word without wildcards carries no escapes.
	for i, g := range out.Words {
		if !g.Wild && strings.Contains(g.Text, `\`) {
			out.Words[i].Text = unescape(g.Text)
		}
	}
	return out
}

func unescape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// Match reports whether a value whose words are vw matches: a phrase when
// its words occur consecutively, otherwise when any of its words occurs.
// A pattern without words (only delimiters) matches nothing.
func (p Pattern) Match(vw []string) bool {
	if len(p.Words) == 0 {
		return false
	}
	if !p.Phrase || len(p.Words) == 1 {
		for _, w := range vw {
			for _, g := range p.Words {
				if g.Match(w) {
					return true
				}
			}
		}
		return false
	}
	for i := 0; i+len(p.Words) <= len(vw); i++ {
		ok := true
		for j, g := range p.Words {
			if !g.Match(vw[i+j]) {
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
