package cql

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// MaxQueryLen bounds a query, so that a pasted log file is an error rather
// than a parser workout.
const MaxQueryLen = 16 << 10

// maxDepth bounds nesting (parentheses, NOT chains), so that a hostile query
// cannot exhaust the stack of the recursive-descent parser.
const maxDepth = 100

// Parse parses a CLS CQL query with an optional "| SQL" analysis part.
//
// Search part:
//
//	verb:delete AND objectRef.resource:secrets     field match
//	objectRef.name:"nginx"  objectRef.name:ngi*x   phrase, suffix/infix *
//	responseStatus.code>=400                       range (no colon)
//	responseStatus.code:*  objectRef.name:""       exists, empty
//	forbidden  "cannot list"  kube*                full text
//	a OR b, NOT a, a AND (b or c), a b             a b is a AND b
//
// AND, OR and NOT are operators in any case; NOT binds tightest, then AND,
// then OR. \ escapes the next character (user.username:system\:admin). A
// value may contain ':' unescaped (user.username:system:admin).
func Parse(query string) (*Query, error) {
	if len(query) > MaxQueryLen {
		return nil, Errorf(query, MaxQueryLen, "query is longer than %d bytes", MaxQueryLen)
	}
	if !utf8.ValidString(query) {
		i := 0
		for i < len(query) {
			r, n := utf8.DecodeRuneInString(query[i:])
			if r == utf8.RuneError && n <= 1 {
				break
			}
			i += n
		}
		return nil, Errorf(query, i, "query is not valid UTF-8")
	}
	if i := strings.IndexByte(query, 0); i >= 0 {
		// SQLite's full-text query parser reads C strings: a NUL would
		// cut a phrase short.
		return nil, Errorf(query, i, "query contains a NUL character")
	}
	q := &Query{Text: query}
	p := &parser{src: query}
	pipe := p.findPipe()
	p.end = pipe
	p.skipSpace()
	if p.pos < p.end {
		f, err := p.parseOr(0)
		if err != nil {
			return nil, err
		}
		p.skipSpace()
		if p.pos < p.end {
			if p.src[p.pos] == ')' {
				return nil, p.errf(p.pos, "unbalanced ')'")
			}
			return nil, p.errf(p.pos, "unexpected %s", p.describe(p.pos))
		}
		if t, ok := f.(*Term); !ok || t.Kind != All {
			q.Filter = f
		}
	}
	if pipe < len(query) {
		sel, err := parseSQL(query, pipe+1)
		if err != nil {
			return nil, err
		}
		q.SQL = sel
	}
	return q, nil
}

type parser struct {
	src string
	pos int
	end int // the search part ends here (at '|' or the end)
	// field is set inside a grouped value, field:(a OR b): its primaries
	// are values of that field.
	field string
}

func (p *parser) errf(pos int, format string, args ...any) error {
	return Errorf(p.src, pos, format, args...)
}

// findPipe returns the offset of the '|' that starts the SQL part (the first
// one outside quotes and not escaped), or len(src).
func (p *parser) findPipe() int {
	inQuote := false
	for i := 0; i < len(p.src); i++ {
		switch c := p.src[i]; {
		case c == '\\':
			i++
		case c == '"':
			inQuote = !inQuote
		case c == '|' && !inQuote:
			return i
		}
	}
	return len(p.src)
}

func (p *parser) skipSpace() {
	for p.pos < p.end && isSpace(p.src[p.pos]) {
		p.pos++
	}
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}

// special characters end an unquoted word.
func isSpecial(c byte) bool {
	return isSpace(c) || c == '(' || c == ')' || c == '"' || c == ':' || c == '<' || c == '>' || c == '=' || c == '|'
}

func (p *parser) describe(pos int) string {
	if pos >= p.end {
		return "end of search"
	}
	r, _ := utf8.DecodeRuneInString(p.src[pos:])
	return strconv.QuoteRune(r)
}

// keywordAt reports whether an operator word (AND, OR, NOT in any case)
// stands at p.pos, followed by a word boundary.
func (p *parser) keywordAt(kw string) bool {
	n := len(kw)
	if p.pos+n > p.end || !strings.EqualFold(p.src[p.pos:p.pos+n], kw) {
		return false
	}
	return p.pos+n == p.end || isSpace(p.src[p.pos+n]) || p.src[p.pos+n] == '(' || p.src[p.pos+n] == ')' || p.src[p.pos+n] == '"'
}

func (p *parser) parseOr(depth int) (Expr, error) {
	if depth > maxDepth {
		return nil, p.errf(p.pos, "query nests deeper than %d levels", maxDepth)
	}
	l, err := p.parseAnd(depth)
	if err != nil {
		return nil, err
	}
	for {
		p.skipSpace()
		if !p.keywordAt("OR") {
			return l, nil
		}
		at := p.pos
		p.pos += 2
		r, err := p.parseAnd(depth)
		if err != nil {
			return nil, err
		}
		l = &Or{L: l, R: r, P: at}
	}
}

func (p *parser) parseAnd(depth int) (Expr, error) {
	l, err := p.parseUnary(depth)
	if err != nil {
		return nil, err
	}
	for {
		p.skipSpace()
		at := p.pos
		switch {
		case p.pos >= p.end || p.src[p.pos] == ')' || p.keywordAt("OR"):
			return l, nil
		case p.keywordAt("AND"):
			p.pos += 3
		}
		// "a b" and "a NOT b" are conjunctions too.
		r, err := p.parseUnary(depth)
		if err != nil {
			return nil, err
		}
		l = &And{L: l, R: r, P: at}
	}
}

func (p *parser) parseUnary(depth int) (Expr, error) {
	if depth > maxDepth {
		return nil, p.errf(p.pos, "query nests deeper than %d levels", maxDepth)
	}
	p.skipSpace()
	if p.keywordAt("NOT") {
		at := p.pos
		p.pos += 3
		x, err := p.parseUnary(depth + 1)
		if err != nil {
			return nil, err
		}
		return &Not{X: x, P: at}, nil
	}
	return p.parsePrimary(depth)
}

func (p *parser) parsePrimary(depth int) (Expr, error) {
	p.skipSpace()
	if p.pos >= p.end {
		if p.end < len(p.src) {
			return nil, p.errf(p.pos, "expected a search term before '|' (use * to match every event)")
		}
		return nil, p.errf(p.pos, "expected a search term")
	}
	at := p.pos
	switch c := p.src[p.pos]; c {
	case '(':
		p.pos++
		x, err := p.parseOr(depth + 1)
		if err != nil {
			return nil, err
		}
		p.skipSpace()
		if p.pos >= p.end || p.src[p.pos] != ')' {
			return nil, p.errf(at, "unbalanced '(': no matching ')'")
		}
		p.pos++
		return x, nil
	case ')':
		return nil, p.errf(at, "unexpected ')'")
	case '"':
		if p.field != "" {
			return p.value(p.field, at)
		}
		s, err := p.quoted()
		if err != nil {
			return nil, err
		}
		return &Term{Kind: Match, Parts: []string{s}, Pattern: escapePattern(s), Quoted: true, P: at}, nil
	case ':', '<', '>', '=':
		if p.field != "" {
			return nil, p.errf(at, "expected a value of %s, found %q", p.field, string(c))
		}
		return nil, p.errf(at, "expected a field name before %q", string(c))
	}
	if p.keywordAt("AND") || p.keywordAt("OR") {
		kw := "AND"
		if p.keywordAt("OR") {
			kw = "OR"
		}
		return nil, p.errf(at, "expected a search term, found operator %s", kw)
	}
	if p.field != "" {
		return p.value(p.field, at)
	}
	parts, pattern, wild, err := p.word(false)
	if err != nil {
		return nil, err
	}
	if p.pos < p.end {
		switch c := p.src[p.pos]; c {
		case ':':
			if wild {
				return nil, p.errf(at, "a field name cannot contain * or ?")
			}
			field := strings.Join(parts, "")
			if err := checkField(p.src, at, field); err != nil {
				return nil, err
			}
			p.pos++
			return p.value(field, at)
		case '<', '>', '=':
			if wild {
				return nil, p.errf(at, "a field name cannot contain * or ?")
			}
			field := strings.Join(parts, "")
			if err := checkField(p.src, at, field); err != nil {
				return nil, err
			}
			return p.rangeTerm(field, at)
		}
	}
	if len(parts) == 1 && parts[0] == "" {
		// A lone "*" (wild, one empty part cannot come from anything else).
		return &Term{Kind: All, P: at}, nil
	}
	if parts[0] == "" || leadingWildcard(pattern) {
		return nil, p.errf(at, "a word cannot start with * or ? (CLS has no prefix wildcards)")
	}
	return &Term{Kind: Match, Parts: parts, Pattern: pattern, P: at}, nil
}

// word reads an unquoted word at p.pos, unescaping \x and splitting at
// unescaped '*'. With allowColon, ':' does not end it (values such as
// system:serviceaccount:ns:name). A lone "*" returns [""] and wild.
func (p *parser) word(allowColon bool) (parts []string, pattern string, wild bool, err error) {
	start := p.pos
	var b, pat strings.Builder
	lastStar := false
	for p.pos < p.end {
		c := p.src[p.pos]
		lastStar = lastStar && c == '*'
		if c == ':' && allowColon {
			b.WriteByte(c)
			pat.WriteByte(c)
			p.pos++
			continue
		}
		if isSpecial(c) {
			break
		}
		switch c {
		case '\\':
			if p.pos+1 >= len(p.src) {
				return nil, "", false, p.errf(p.pos, "'\\' at the end of the query escapes nothing")
			}
			_, n := utf8.DecodeRuneInString(p.src[p.pos+1:])
			lit := p.src[p.pos+1 : p.pos+1+n]
			b.WriteString(lit)
			pat.WriteString(escapePattern(lit))
			p.pos += 1 + n
		case '*':
			parts = append(parts, b.String())
			b.Reset()
			if !lastStar {
				pat.WriteByte('*') // "**" is one wildcard
			}
			wild = true
			p.pos++
			lastStar = true
			continue
		case '?':
			b.WriteByte(c)
			pat.WriteByte(c)
			wild = true
			p.pos++
		default:
			b.WriteByte(c)
			pat.WriteByte(c)
			p.pos++
		}
	}
	if p.pos == start {
		return nil, "", false, p.errf(start, "expected a word, found %s", p.describe(start))
	}
	pattern = pat.String()
	parts = append(parts, b.String())
	// Collapse "**" into one wildcard: an empty part other than the first
	// or the last stands between two stars.
	out := parts[:1]
	for i := 1; i < len(parts); i++ {
		if parts[i] == "" && i < len(parts)-1 {
			continue
		}
		out = append(out, parts[i])
	}
	if len(out) == 2 && out[0] == "" && out[1] == "" && strings.Trim(pattern, "*") == "" {
		return []string{""}, "*", true, nil
	}
	return out, pattern, wild, nil
}

// escapePattern escapes the wildcard characters of literal text for
// Term.Pattern.
func escapePattern(s string) string {
	if !strings.ContainsAny(s, `*?\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '*' || s[i] == '?' || s[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// leadingWildcard reports whether a pattern starts a word with a wildcard,
// which CLS does not support (no prefix fuzzy search).
func leadingWildcard(pattern string) bool {
	atStart := true
	for i := 0; i < len(pattern); i++ {
		c := pattern[i]
		switch {
		case c == '\\':
			i++
			if i < len(pattern) && c < utf8.RuneSelf && IsDelimiter(rune(pattern[i])) {
				atStart = true
			} else {
				atStart = false
			}
			continue
		case (c == '*' || c == '?') && atStart:
			return true
		case c < utf8.RuneSelf && IsDelimiter(rune(c)):
			atStart = true
		default:
			atStart = false
		}
	}
	return false
}

// quoted reads a "double quoted" phrase at p.pos; \ escapes inside it.
func (p *parser) quoted() (string, error) {
	start := p.pos
	p.pos++ // opening quote
	var b strings.Builder
	for p.pos < p.end {
		c := p.src[p.pos]
		switch c {
		case '"':
			p.pos++
			return b.String(), nil
		case '\\':
			if p.pos+1 >= p.end {
				return "", p.errf(p.pos, "'\\' at the end of the query escapes nothing")
			}
			_, n := utf8.DecodeRuneInString(p.src[p.pos+1:])
			b.WriteString(p.src[p.pos+1 : p.pos+1+n])
			p.pos += 1 + n
		default:
			b.WriteByte(c)
			p.pos++
		}
	}
	return "", p.errf(start, "unterminated quoted phrase: no closing '\"'")
}

// value parses what follows "field:".
func (p *parser) value(field string, at int) (Expr, error) {
	if p.pos >= p.end || isSpace(p.src[p.pos]) || p.src[p.pos] == ')' {
		return nil, p.errf(p.pos, "expected a value after %q (use %s:* for \"field exists\")", field+":", field)
	}
	switch p.src[p.pos] {
	case '"':
		s, err := p.quoted()
		if err != nil {
			return nil, err
		}
		if s == "" {
			return &Term{Kind: Empty, Field: field, P: at}, nil
		}
		return &Term{Kind: Match, Field: field, Parts: []string{s}, Pattern: escapePattern(s), Quoted: true, P: at}, nil
	case '(':
		if p.field != "" {
			return nil, p.errf(p.pos, "grouped values do not nest inside %s:(...)", p.field)
		}
		return p.group(field)
	case '<', '>', '=':
		if p.field != "" {
			return nil, p.errf(p.pos, "expected a value of %s, found %q", p.field, string(p.src[p.pos]))
		}
		// CLS pages write both status>400 and status:>400.
		return p.rangeTerm(field, at)
	}
	vstart := p.pos
	parts, pattern, wild, err := p.word(true)
	if err != nil {
		return nil, err
	}
	if wild && len(parts) == 1 && parts[0] == "" {
		return &Term{Kind: Exists, Field: field, P: at}, nil
	}
	if parts[0] == "" || leadingWildcard(pattern) {
		return nil, p.errf(vstart, "a word cannot start with * or ? (CLS has no prefix wildcards)")
	}
	return &Term{Kind: Match, Field: field, Parts: parts, Pattern: pattern, P: at}, nil
}

// group parses field:(a OR b c): a search whose terms are all values of
// field, as CLS users write level:(ERROR OR WARNING).
func (p *parser) group(field string) (Expr, error) {
	open := p.pos
	p.pos++ // '('
	p.field = field
	defer func() { p.field = "" }()
	p.skipSpace()
	if p.pos < p.end && p.src[p.pos] == ')' {
		return nil, p.errf(open, "empty group: expected values inside %s:(...)", field)
	}
	x, err := p.parseOr(1)
	if err != nil {
		return nil, err
	}
	p.skipSpace()
	if p.pos >= p.end || p.src[p.pos] != ')' {
		return nil, p.errf(open, "unbalanced '(': no matching ')'")
	}
	p.pos++
	return x, nil
}

// rangeTerm parses the operator and number of field>n.
func (p *parser) rangeTerm(field string, at int) (Expr, error) {
	op := string(p.src[p.pos])
	p.pos++
	if p.pos < p.end && p.src[p.pos] == '=' && op != "=" {
		op += "="
		p.pos++
	}
	numAt := p.pos
	for p.pos < p.end && !isSpecial(p.src[p.pos]) {
		p.pos++
	}
	text := p.src[numAt:p.pos]
	if text == "" {
		return nil, p.errf(numAt, "expected a number after %s%s", field, op)
	}
	n, err := strconv.ParseFloat(text, 64)
	if err != nil || n != n || n > 1e300 || n < -1e300 {
		return nil, p.errf(numAt, "range %s%s needs a number, got %q", field, op, text)
	}
	return &Term{Kind: Range, Field: field, Op: op, Number: n, P: at}, nil
}

// checkField validates a dotted field name: CLS key characters (letters,
// digits, _ - . / @) in non-empty segments.
func checkField(src string, at int, field string) error {
	if field == "" {
		return Errorf(src, at, "empty field name")
	}
	for i := 0; i < len(field); i++ {
		c := field[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("_-./@", c) >= 0
		if !ok {
			return Errorf(src, at, "field name %q: character %q is not allowed (letters, digits, _ - . / @)", field, string(c))
		}
	}
	if strings.HasPrefix(field, ".") || strings.HasSuffix(field, ".") || strings.Contains(field, "..") {
		return Errorf(src, at, "field name %q has an empty path segment", field)
	}
	return nil
}
