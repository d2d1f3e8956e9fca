package cql

import (
	"maps"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// functions lists the SQL functions the analysis part accepts, with their
// argument counts (min, max; max -1 = any). Anything else is rejected at its
// position: the whitelist is what keeps the analysis part a query language
// rather than a way into SQLite.
var functions = map[string][2]int{
	"count":           {0, 1},
	"sum":             {1, 1},
	"avg":             {1, 1},
	"min":             {1, 1},
	"max":             {1, 1},
	"approx_distinct": {1, 1},
	"histogram":       {2, 2},
	"date_trunc":      {2, 2},
	"lower":           {1, 1},
	"upper":           {1, 1},
	"length":          {1, 1},
	"abs":             {1, 1},
	"round":           {1, 2},
	"coalesce":        {1, -1},
	// CLS's dashboard functions (ADR 0006 says how each maps).
	"count_if":          {1, 1},
	"approx_percentile": {2, 2},
	"time_series":       {2, 4},
	"date_format":       {2, 2},
	"from_unixtime":     {1, 1},
	"split_part":        {3, 3},
	"strpos":            {2, 2},
}

// Functions returns the names of the supported SQL functions, for help
// texts.
func Functions() []string { return sortedFunctions() }

var castTypes = map[string]bool{
	"timestamp": true, "varchar": true, "bigint": true, "double": true,
	"integer": true, "real": true, "text": true, "boolean": true,
}

var intervalUnits = map[string]string{
	"second": "second", "seconds": "second",
	"minute": "minute", "minutes": "minute",
	"hour": "hour", "hours": "hour",
	"day": "day", "days": "day",
}

// reserved words cannot be bare identifiers.
var reserved = map[string]bool{
	"select": true, "from": true, "where": true, "group": true, "by": true,
	"having": true, "order": true, "limit": true, "as": true, "and": true,
	"or": true, "not": true, "asc": true, "desc": true, "in": true,
	"is": true, "null": true, "like": true, "cast": true, "interval": true,
	"distinct": true, "true": true, "false": true, "offset": true,
	"join": true, "union": true, "case": true, "when": true, "then": true,
	"else": true, "end": true,
}

type tokKind int

const (
	tEOF tokKind = iota
	tIdent
	tQIdent // "quoted"
	tString // 'string'
	tNumber
	tOp // punctuation and operators
)

type token struct {
	kind tokKind
	text string // unescaped for strings and quoted identifiers
	pos  int
	end  int
}

type sqlParser struct {
	src  string
	toks []token
	i    int
}

func lexSQL(src string, start int) ([]token, error) {
	var toks []token
	i := start
	for {
		for i < len(src) && isSpace(src[i]) {
			i++
		}
		if i >= len(src) {
			toks = append(toks, token{kind: tEOF, pos: i, end: i})
			return toks, nil
		}
		c := src[i]
		switch {
		case c == '\'' || c == '"':
			var b strings.Builder
			j := i + 1
			closed := false
			for j < len(src) {
				if src[j] == c {
					if j+1 < len(src) && src[j+1] == c { // '' or "" escapes the quote
						b.WriteByte(c)
						j += 2
						continue
					}
					closed = true
					j++
					break
				}
				b.WriteByte(src[j])
				j++
			}
			if !closed {
				what := "string"
				if c == '"' {
					what = "quoted field name"
				}
				return nil, Errorf(src, i, "unterminated %s: no closing %q", what, string(c))
			}
			kind := tString
			if c == '"' {
				kind = tQIdent
				if b.Len() == 0 {
					return nil, Errorf(src, i, "empty quoted field name")
				}
			}
			toks = append(toks, token{kind: kind, text: b.String(), pos: i, end: j})
			i = j
		case c >= '0' && c <= '9' || c == '.' && i+1 < len(src) && src[i+1] >= '0' && src[i+1] <= '9':
			j := i
			for j < len(src) && (src[j] >= '0' && src[j] <= '9' || src[j] == '.') {
				j++
			}
			if j < len(src) && (src[j] == 'e' || src[j] == 'E') {
				k := j + 1
				if k < len(src) && (src[k] == '+' || src[k] == '-') {
					k++
				}
				if k < len(src) && src[k] >= '0' && src[k] <= '9' {
					j = k
					for j < len(src) && src[j] >= '0' && src[j] <= '9' {
						j++
					}
				}
			}
			toks = append(toks, token{kind: tNumber, text: src[i:j], pos: i, end: j})
			i = j
		case c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
			j := i
			for j < len(src) && (src[j] == '_' || src[j] == '.' || src[j] >= 'a' && src[j] <= 'z' || src[j] >= 'A' && src[j] <= 'Z' || src[j] >= '0' && src[j] <= '9') {
				j++
			}
			toks = append(toks, token{kind: tIdent, text: src[i:j], pos: i, end: j})
			i = j
		default:
			two := ""
			if i+1 < len(src) {
				two = src[i : i+2]
			}
			switch two {
			case "<=", ">=", "!=", "<>":
				toks = append(toks, token{kind: tOp, text: two, pos: i, end: i + 2})
				i += 2
				continue
			}
			if strings.IndexByte("(),*+-/%=<>", c) >= 0 {
				toks = append(toks, token{kind: tOp, text: string(c), pos: i, end: i + 1})
				i++
				continue
			}
			r, _ := utf8.DecodeRuneInString(src[i:])
			if c == ';' {
				return nil, Errorf(src, i, "';' is not allowed: the analysis part is one SELECT")
			}
			return nil, Errorf(src, i, "unexpected character %s in the SQL part", strconv.QuoteRune(r))
		}
	}
}

// parseSQL parses the analysis part, which starts at offset start of src.
func parseSQL(src string, start int) (*Select, error) {
	toks, err := lexSQL(src, start)
	if err != nil {
		return nil, err
	}
	p := &sqlParser{src: src, toks: toks}
	return p.parseSelect()
}

func (p *sqlParser) peek() token { return p.toks[p.i] }
func (p *sqlParser) next() token {
	t := p.toks[p.i]
	if t.kind != tEOF {
		p.i++
	}
	return t
}

func (p *sqlParser) errf(pos int, format string, args ...any) error {
	return Errorf(p.src, pos, format, args...)
}

// isKw reports whether t is the bare keyword kw (lower case).
func isKw(t token, kw string) bool { return t.kind == tIdent && strings.EqualFold(t.text, kw) }

func (p *sqlParser) acceptKw(kw string) bool {
	if isKw(p.peek(), kw) {
		p.i++
		return true
	}
	return false
}

func (p *sqlParser) acceptOp(op string) bool {
	if t := p.peek(); t.kind == tOp && t.text == op {
		p.i++
		return true
	}
	return false
}

func (p *sqlParser) expectOp(op string) error {
	if !p.acceptOp(op) {
		return p.errf(p.peek().pos, "expected %q, found %s", op, p.describe(p.peek()))
	}
	return nil
}

func (p *sqlParser) describe(t token) string {
	switch t.kind {
	case tEOF:
		return "end of query"
	case tString:
		return "string " + strconv.Quote(t.text)
	default:
		return strconv.Quote(p.src[t.pos:t.end])
	}
}

func (p *sqlParser) parseSelect() (*Select, error) {
	t := p.peek()
	if !isKw(t, "select") {
		return nil, p.errf(t.pos, "expected SELECT after '|', found %s", p.describe(t))
	}
	p.i++
	sel := &Select{Limit: -1, P: t.pos}
	sel.Distinct = p.acceptKw("distinct")
	for {
		start := p.peek().pos
		if p.peek().kind == tOp && p.peek().text == "*" {
			return nil, p.errf(start, "SELECT * is not supported: name the fields, or search without '|' to get whole events")
		}
		e, err := p.parseExpr(0)
		if err != nil {
			return nil, err
		}
		end := p.toks[p.i-1].end
		item := SelectItem{Expr: e, Text: strings.TrimSpace(p.src[start:end])}
		if p.acceptKw("as") {
			a := p.next()
			if a.kind != tIdent && a.kind != tQIdent || a.kind == tIdent && reserved[strings.ToLower(a.text)] {
				return nil, p.errf(a.pos, "expected a column alias after AS, found %s", p.describe(a))
			}
			item.Alias = a.text
		} else if a := p.peek(); a.kind == tQIdent || a.kind == tIdent && !reserved[strings.ToLower(a.text)] {
			p.i++
			item.Alias = a.text
		}
		sel.Items = append(sel.Items, item)
		if !p.acceptOp(",") {
			break
		}
	}
	if t := p.peek(); isKw(t, "from") {
		return nil, p.errf(t.pos, "FROM is not needed: the analysis part reads the events the search selected")
	}
	if p.acceptKw("where") {
		w, err := p.parseExpr(0)
		if err != nil {
			return nil, err
		}
		sel.Where = w
	}
	if t := p.peek(); isKw(t, "group") {
		p.i++
		if !p.acceptKw("by") {
			return nil, p.errf(p.peek().pos, "expected BY after GROUP")
		}
		list, err := p.parseList()
		if err != nil {
			return nil, err
		}
		sel.GroupBy = list
	}
	if p.acceptKw("having") {
		h, err := p.parseExpr(0)
		if err != nil {
			return nil, err
		}
		sel.Having = h
	}
	if t := p.peek(); isKw(t, "order") {
		p.i++
		if !p.acceptKw("by") {
			return nil, p.errf(p.peek().pos, "expected BY after ORDER")
		}
		for {
			e, err := p.parseExpr(0)
			if err != nil {
				return nil, err
			}
			item := OrderItem{Expr: e}
			if p.acceptKw("desc") {
				item.Desc = true
			} else {
				p.acceptKw("asc")
			}
			sel.OrderBy = append(sel.OrderBy, item)
			if !p.acceptOp(",") {
				break
			}
		}
	}
	if t := p.peek(); isKw(t, "limit") {
		p.i++
		n := p.next()
		v, err := strconv.Atoi(n.text)
		if n.kind != tNumber || err != nil || v < 0 {
			return nil, p.errf(n.pos, "LIMIT needs a non-negative integer, found %s", p.describe(n))
		}
		sel.Limit, sel.LimitPos = v, n.pos
	}
	if t := p.peek(); t.kind != tEOF {
		return nil, p.errf(t.pos, "unexpected %s (clauses go SELECT, WHERE, GROUP BY, HAVING, ORDER BY, LIMIT)", p.describe(t))
	}
	return sel, nil
}

func (p *sqlParser) parseList() ([]SQLExpr, error) {
	var out []SQLExpr
	for {
		e, err := p.parseExpr(0)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
		if !p.acceptOp(",") {
			return out, nil
		}
	}
}

func (p *sqlParser) parseExpr(depth int) (SQLExpr, error) {
	if depth > maxDepth {
		return nil, p.errf(p.peek().pos, "expression nests deeper than %d levels", maxDepth)
	}
	return p.parseOr(depth)
}

func (p *sqlParser) parseOr(depth int) (SQLExpr, error) {
	l, err := p.parseAnd(depth)
	if err != nil {
		return nil, err
	}
	for isKw(p.peek(), "or") {
		at := p.next().pos
		r, err := p.parseAnd(depth)
		if err != nil {
			return nil, err
		}
		l = &Binary{Op: "OR", L: l, R: r, P: at}
	}
	return l, nil
}

func (p *sqlParser) parseAnd(depth int) (SQLExpr, error) {
	l, err := p.parseNot(depth)
	if err != nil {
		return nil, err
	}
	for isKw(p.peek(), "and") {
		at := p.next().pos
		r, err := p.parseNot(depth)
		if err != nil {
			return nil, err
		}
		l = &Binary{Op: "AND", L: l, R: r, P: at}
	}
	return l, nil
}

func (p *sqlParser) parseNot(depth int) (SQLExpr, error) {
	if isKw(p.peek(), "not") {
		if depth > maxDepth {
			return nil, p.errf(p.peek().pos, "expression nests deeper than %d levels", maxDepth)
		}
		at := p.next().pos
		x, err := p.parseNot(depth + 1)
		if err != nil {
			return nil, err
		}
		return &Unary{Op: "NOT", X: x, P: at}, nil
	}
	return p.parseCmp(depth)
}

func (p *sqlParser) parseCmp(depth int) (SQLExpr, error) {
	l, err := p.parseAdd(depth)
	if err != nil {
		return nil, err
	}
	t := p.peek()
	switch {
	case t.kind == tOp && (t.text == "=" || t.text == "!=" || t.text == "<>" || t.text == "<" || t.text == "<=" || t.text == ">" || t.text == ">="):
		p.i++
		r, err := p.parseAdd(depth)
		if err != nil {
			return nil, err
		}
		op := t.text
		if op == "<>" {
			op = "!="
		}
		return &Binary{Op: op, L: l, R: r, P: t.pos}, nil
	case isKw(t, "is"):
		p.i++
		not := p.acceptKw("not")
		if !p.acceptKw("null") {
			return nil, p.errf(p.peek().pos, "expected NULL after IS")
		}
		return &IsNull{X: l, Not: not, P: t.pos}, nil
	case isKw(t, "not") || isKw(t, "like") || isKw(t, "in"):
		not := false
		if isKw(t, "not") {
			nt := p.toks[p.i+1]
			if !isKw(nt, "like") && !isKw(nt, "in") {
				return l, nil
			}
			p.i++
			not = true
		}
		kw := p.next()
		if isKw(kw, "like") {
			r, err := p.parseAdd(depth)
			if err != nil {
				return nil, err
			}
			op := "LIKE"
			if not {
				op = "NOT LIKE"
			}
			return &Binary{Op: op, L: l, R: r, P: t.pos}, nil
		}
		if err := p.expectOp("("); err != nil {
			return nil, err
		}
		list, err := p.parseList()
		if err != nil {
			return nil, err
		}
		if err := p.expectOp(")"); err != nil {
			return nil, err
		}
		return &In{X: l, List: list, Not: not, P: t.pos}, nil
	}
	return l, nil
}

func (p *sqlParser) parseAdd(depth int) (SQLExpr, error) {
	l, err := p.parseMul(depth)
	if err != nil {
		return nil, err
	}
	for {
		t := p.peek()
		if t.kind != tOp || t.text != "+" && t.text != "-" {
			return l, nil
		}
		p.i++
		r, err := p.parseMul(depth)
		if err != nil {
			return nil, err
		}
		l = &Binary{Op: t.text, L: l, R: r, P: t.pos}
	}
}

func (p *sqlParser) parseMul(depth int) (SQLExpr, error) {
	l, err := p.parseUnary(depth)
	if err != nil {
		return nil, err
	}
	for {
		t := p.peek()
		if t.kind != tOp || t.text != "*" && t.text != "/" && t.text != "%" {
			return l, nil
		}
		p.i++
		r, err := p.parseUnary(depth)
		if err != nil {
			return nil, err
		}
		l = &Binary{Op: t.text, L: l, R: r, P: t.pos}
	}
}

func (p *sqlParser) parseUnary(depth int) (SQLExpr, error) {
	if t := p.peek(); t.kind == tOp && t.text == "-" {
		if depth > maxDepth {
			return nil, p.errf(t.pos, "expression nests deeper than %d levels", maxDepth)
		}
		p.i++
		x, err := p.parseUnary(depth + 1)
		if err != nil {
			return nil, err
		}
		return &Unary{Op: "-", X: x, P: t.pos}, nil
	}
	return p.parsePrimary(depth)
}

func (p *sqlParser) parsePrimary(depth int) (SQLExpr, error) {
	t := p.next()
	switch t.kind {
	case tEOF:
		return nil, p.errf(t.pos, "expected an expression, found end of query")
	case tString:
		return &StringLit{Value: t.text, P: t.pos}, nil
	case tNumber:
		if v, err := strconv.ParseInt(t.text, 10, 64); err == nil {
			return &NumberLit{Text: t.text, Int: true, Value: float64(v), P: t.pos}, nil
		}
		v, err := strconv.ParseFloat(t.text, 64)
		if err != nil {
			return nil, p.errf(t.pos, "bad number %q", t.text)
		}
		return &NumberLit{Text: t.text, Value: v, P: t.pos}, nil
	case tQIdent:
		if err := checkField(p.src, t.pos, t.text); err != nil {
			return nil, err
		}
		return &Ident{Name: t.text, Quoted: true, P: t.pos}, nil
	case tOp:
		if t.text == "(" {
			if isKw(p.peek(), "select") {
				return nil, p.errf(p.peek().pos, "subqueries are not supported")
			}
			x, err := p.parseExpr(depth + 1)
			if err != nil {
				return nil, err
			}
			if err := p.expectOp(")"); err != nil {
				return nil, err
			}
			return x, nil
		}
		return nil, p.errf(t.pos, "expected an expression, found %s", p.describe(t))
	}
	// A bare word: keyword literal, CAST, INTERVAL, a call or a field.
	lower := strings.ToLower(t.text)
	switch lower {
	case "null":
		return &NullLit{P: t.pos}, nil
	case "true", "false":
		return &BoolLit{Value: lower == "true", P: t.pos}, nil
	case "cast":
		return p.parseCast(t, depth)
	case "case":
		return p.parseCase(t, depth)
	case "interval":
		return p.parseInterval(t)
	}
	if nt := p.peek(); nt.kind == tOp && nt.text == "(" {
		return p.parseCall(t, lower, depth)
	}
	if reserved[lower] {
		return nil, p.errf(t.pos, "expected an expression, found keyword %s", strings.ToUpper(t.text))
	}
	if err := checkField(p.src, t.pos, t.text); err != nil {
		return nil, err
	}
	return &Ident{Name: t.text, P: t.pos}, nil
}

func (p *sqlParser) parseCast(t token, depth int) (SQLExpr, error) {
	if err := p.expectOp("("); err != nil {
		return nil, err
	}
	x, err := p.parseExpr(depth + 1)
	if err != nil {
		return nil, err
	}
	if !p.acceptKw("as") {
		return nil, p.errf(p.peek().pos, "expected AS in CAST(x AS type)")
	}
	ty := p.next()
	if ty.kind != tIdent || !castTypes[strings.ToLower(ty.text)] {
		return nil, p.errf(ty.pos, "unsupported CAST type %s (supported: timestamp, varchar, bigint, double)", p.describe(ty))
	}
	if err := p.expectOp(")"); err != nil {
		return nil, err
	}
	return &Cast{X: x, Type: strings.ToLower(ty.text), P: t.pos}, nil
}

// parseCase parses CASE [x] WHEN a THEN b ... [ELSE c] END.
func (p *sqlParser) parseCase(t token, depth int) (SQLExpr, error) {
	c := &Case{P: t.pos}
	if !isKw(p.peek(), "when") {
		x, err := p.parseExpr(depth + 1)
		if err != nil {
			return nil, err
		}
		c.Operand = x
	}
	for p.acceptKw("when") {
		cond, err := p.parseExpr(depth + 1)
		if err != nil {
			return nil, err
		}
		if !p.acceptKw("then") {
			return nil, p.errf(p.peek().pos, "expected THEN in CASE, found %s", p.describe(p.peek()))
		}
		res, err := p.parseExpr(depth + 1)
		if err != nil {
			return nil, err
		}
		c.Whens = append(c.Whens, When{Cond: cond, Result: res})
	}
	if len(c.Whens) == 0 {
		return nil, p.errf(p.peek().pos, "expected WHEN in CASE, found %s", p.describe(p.peek()))
	}
	if p.acceptKw("else") {
		e, err := p.parseExpr(depth + 1)
		if err != nil {
			return nil, err
		}
		c.Else = e
	}
	if !p.acceptKw("end") {
		return nil, p.errf(p.peek().pos, "expected END to close CASE, found %s", p.describe(p.peek()))
	}
	return c, nil
}

func (p *sqlParser) parseInterval(t token) (SQLExpr, error) {
	n := p.next()
	text := n.text
	if n.kind == tString { // INTERVAL '5' MINUTE
		text = strings.TrimSpace(n.text)
	} else if n.kind != tNumber {
		return nil, p.errf(n.pos, "expected a number after INTERVAL, found %s", p.describe(n))
	}
	v, err := strconv.ParseInt(text, 10, 64)
	if err != nil || v <= 0 || v > 1e9 {
		return nil, p.errf(n.pos, "INTERVAL needs a positive integer, found %s", p.describe(n))
	}
	u := p.next()
	unit, ok := intervalUnits[strings.ToLower(u.text)]
	if u.kind != tIdent || !ok {
		return nil, p.errf(u.pos, "expected an interval unit (second, minute, hour, day), found %s", p.describe(u))
	}
	return &Interval{N: v, Unit: unit, P: t.pos}, nil
}

func (p *sqlParser) parseCall(t token, name string, depth int) (SQLExpr, error) {
	arity, ok := functions[name]
	if !ok {
		return nil, p.errf(t.pos, "unsupported function %s (supported: %s)", t.text, strings.Join(sortedFunctions(), ", "))
	}
	p.i++ // (
	c := &Call{Name: name, P: t.pos}
	if name == "count" && p.acceptOp("*") {
		c.Star = true
	} else if !(p.peek().kind == tOp && p.peek().text == ")") {
		if p.acceptKw("distinct") {
			if name != "count" {
				return nil, p.errf(p.toks[p.i-1].pos, "DISTINCT is supported in count(DISTINCT x) only")
			}
			c.Distinct = true
		}
		for {
			a, err := p.parseExpr(depth + 1)
			if err != nil {
				return nil, err
			}
			c.Args = append(c.Args, a)
			if !p.acceptOp(",") {
				break
			}
		}
	}
	if err := p.expectOp(")"); err != nil {
		return nil, err
	}
	n := len(c.Args)
	if c.Star {
		n = 1
	}
	if name == "count" && n == 0 {
		return nil, p.errf(t.pos, "count needs an argument: count(*), count(1) or count(field)")
	}
	if n < arity[0] || arity[1] >= 0 && n > arity[1] {
		return nil, p.errf(t.pos, "%s takes %s, got %d", name, arityText(arity), n)
	}
	return c, nil
}

func arityText(a [2]int) string {
	switch {
	case a[0] == a[1]:
		if a[0] == 1 {
			return "1 argument"
		}
		return strconv.Itoa(a[0]) + " arguments"
	case a[1] < 0:
		return "at least " + strconv.Itoa(a[0]) + " arguments"
	default:
		return strconv.Itoa(a[0]) + " to " + strconv.Itoa(a[1]) + " arguments"
	}
}

func sortedFunctions() []string { return slices.Sorted(maps.Keys(functions)) }
