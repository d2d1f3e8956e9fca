package local

import (
	"strconv"
	"strings"

	"github.com/auditpipe/auditpipe/consumer/search/cql"
)

// field is how a CLS key name maps onto the store. Every key the CLS sink
// sends (consumer/internal/flatten) is a field; a few have a column.
type field struct {
	key string // the CLS key name
	// col is the column holding the field, "" when there is none.
	col string
	// walk: key:value on this column walks the column's distinct values
	// through its index and matches them (distinctMatch). Such keys are
	// left out of the kv column of the full-text index.
	walk bool
	// number: an INTEGER column, NULL when the field was not sent.
	number bool
	// sqlCol: the column holds the value CLS receives, so the SQL part
	// reads it ('' = not sent, read as NULL). user_groups joins the
	// groups with newlines where CLS has a JSON array: SQL reads the event.
	sqlCol bool
	// noKV: the key's words are not in the kv column (timestamps: every
	// value is different and nobody searches them by word; bodies: too
	// many words); matches on it prefilter with the full text.
	noKV bool
}

// timestampField is CLS's name for the log time: stageTimestamp in unix ms.
const timestampField = "__TIMESTAMP__"

// columnFields are the keys with a column.
var columnFields = map[string]field{
	"auditID":               {col: "audit_id", sqlCol: true},
	"stage":                 {col: "stage", sqlCol: true},
	"level":                 {col: "level", sqlCol: true},
	"verb":                  {col: "verb", sqlCol: true, walk: true},
	"user.username":         {col: "username", sqlCol: true, walk: true},
	"user.groups":           {col: "user_groups"},
	"objectRef.resource":    {col: "resource", sqlCol: true, walk: true},
	"objectRef.subresource": {col: "subresource", sqlCol: true},
	"objectRef.namespace":   {col: "namespace", sqlCol: true, walk: true},
	"objectRef.name":        {col: "name", sqlCol: true, walk: true},
	"objectRef.apiGroup":    {col: "api_group", sqlCol: true},
	"responseStatus.code":   {col: "code", number: true, sqlCol: true},
	"userAgent":             {col: "user_agent", sqlCol: true, walk: true},
	"auditpipe.cluster":     {col: "cluster", sqlCol: true, walk: true},
	// Bodies: most of a large event's words. Their matches prefilter
	// with the full text instead (see match), which keeps writes cheaper.
	"requestObject":            {noKV: true},
	"responseObject":           {noKV: true},
	"stageTimestamp":           {noKV: true},
	"requestReceivedTimestamp": {noKV: true},
	"auditpipe.receivedAt":     {noKV: true},
	"auditpipe.processedAt":    {noKV: true},
	timestampField:             {col: "stage_ts", number: true, sqlCol: true, noKV: true},
}

// lookupField resolves a key name. Names are case-sensitive, like CLS's
// keys, except __TIMESTAMP__.
func lookupField(name string) field {
	if strings.EqualFold(name, timestampField) {
		name = timestampField
	}
	f := columnFields[name]
	f.key = name
	return f
}

// inKV reports whether the key's words are in the kv column.
func (f field) inKV() bool { return !f.walk && !f.noKV }

// compiler renders a parsed query as SQLite. All user values become bound
// parameters (args, in order); the SQL text holds only column names,
// operators and the compiler's own constants.
type compiler struct {
	q    *cql.Query
	args []any
	// timeRange: the search has a time range, which the events_time index
	// serves; full-text conditions then filter that range instead of
	// driving the query (see ftsCond).
	timeRange bool
}

func (c *compiler) errf(pos int, format string, a ...any) error {
	return cql.Errorf(c.q.Text, pos, format, a...)
}

func (c *compiler) arg(v any) string {
	c.args = append(c.args, v)
	return "?"
}

// filter renders the search part as a boolean SQL expression.
func (c *compiler) filter(e cql.Expr) (string, error) {
	switch e := e.(type) {
	case nil:
		return "1", nil
	case *cql.And:
		l, err := c.filter(e.L)
		if err != nil {
			return "", err
		}
		r, err := c.filter(e.R)
		if err != nil {
			return "", err
		}
		return "(" + l + " AND " + r + ")", nil
	case *cql.Or:
		l, err := c.filter(e.L)
		if err != nil {
			return "", err
		}
		r, err := c.filter(e.R)
		if err != nil {
			return "", err
		}
		return "(" + l + " OR " + r + ")", nil
	case *cql.Not:
		x, err := c.filter(e.X)
		if err != nil {
			return "", err
		}
		// A missing field makes a comparison NULL; NOT must then be true
		// (NOT responseStatus.code>=400 includes events without a code).
		return "(NOT IFNULL(" + x + ", 0))", nil
	case *cql.Term:
		return c.term(e)
	}
	return "", c.errf(e.Pos(), "unsupported search node %T", e)
}

// ftsCond renders "the event's words match q" (an FTS5 query on
// events_words). How SQLite uses it matters more than anything else for
// speed on a large store:
//
//   - "id IN (SELECT rowid ... MATCH ?)" lets the planner drive the query
//     from the full-text hits, one table lookup per hit: instant for a rare
//     word, seconds for a word in 20% of a million events.
//   - "+id IN (...)" (the unary + hides the rowid from the planner) turns it
//     into a filter, checked through a Bloom filter while another index
//     (the time range, verb, ...) drives: cost bounded by that range.
//
// With a time range (the console always has one) the range drives; without
// one, the full-text hits do.
//
// With a time range, the word index is also asked only for the rowids of
// the events in that range (idBounds): events are stored roughly in time
// order, so a common word yields its hits of the day instead of the week's.
// The bounds are exact (the range's smallest and largest id), so nothing in
// range is lost whatever the order.
func (c *compiler) ftsCond(q string) string {
	c.args = append(c.args, q)
	if !c.timeRange {
		return "id IN (SELECT rowid FROM events_words WHERE events_words MATCH ?)"
	}
	c.args = append(c.args, idBound{max: false}, idBound{max: true})
	return "+id IN (SELECT rowid FROM events_words WHERE events_words MATCH ? AND rowid BETWEEN ? AND ?)"
}

// idBound is a placeholder for the smallest (or largest) id of the events
// in the search's time range, resolved once per search (resolveLookups).
type idBound struct{ max bool }

// ftsQuery renders a pattern as an FTS5 query on column (text, or kv with
// the key's tag before every word), and whether the index answers it
// exactly; when not, the caller checks the candidates with a function. ""
// means the index cannot help (a word that starts with a wildcard).
func ftsQuery(column, tag string, p cql.Pattern) (q string, exact bool) {
	if len(p.Words) == 0 {
		return "", false
	}
	if p.Phrase && len(p.Words) > 1 {
		var b []byte
		b = append(b, column+` : "`...)
		exact = true
		for i, g := range p.Words {
			if i > 0 {
				b = append(b, ' ')
			}
			b = append(b, tag...)
			b = appendFTSWord(b, g.Prefix())
			if g.Wild {
				// A wildcard inside a phrase: the literal prefixes
				// narrow, the function decides.
				exact = false
			}
		}
		return string(append(b, '"')), exact
	}
	exact = true
	var terms []string
	for _, g := range p.Words {
		prefix := g.Prefix()
		switch {
		case !g.Wild:
			terms = append(terms, `"`+tag+ftsWord(prefix)+`"`)
		case prefix == "" && tag == "":
			return "", false
		case prefix == "":
			terms = append(terms, `"`+tag+`"`) // the key is present
			exact = false
		default:
			terms = append(terms, `"`+tag+ftsWord(prefix)+`"*`)
			exact = exact && g.PrefixOnly()
		}
	}
	return column + " : (" + strings.Join(terms, " OR ") + ")", exact
}

func phraseArg(p bool) int64 {
	if p {
		return 1
	}
	return 0
}

func (c *compiler) term(t *cql.Term) (string, error) {
	if t.Kind == cql.All {
		return "1", nil
	}
	if t.Field == "" {
		return c.fullText(t)
	}
	f := lookupField(t.Field)
	switch t.Kind {
	case cql.Exists:
		switch {
		case f.number:
			return "(" + f.col + " IS NOT NULL)", nil
		case f.col != "":
			// Empty columns hold fields that were not sent (the
			// apiserver omits empty values).
			return "(" + f.col + " <> '')", nil
		case f.inKV():
			return "(" + c.ftsCond(`kv : "`+keyTag(f.key)+`"`) + ")", nil
		}
		return "(" + fieldFunc + "(event, " + c.arg(f.key) + ") IS NOT NULL)", nil
	case cql.Empty:
		// Present and empty; the prefilter first (arguments follow the
		// text order).
		pre := ""
		switch {
		case f.number:
			return "0", nil
		case f.col != "":
			pre = f.col + " = '' AND "
		case f.inKV():
			pre = c.ftsCond(`kv : "`+keyTag(f.key)+`"`) + " AND "
		}
		return "(" + pre + fieldFunc + "(event, " + c.arg(f.key) + ") = '')", nil
	case cql.Range:
		op := t.Op
		if f.number {
			return "(" + f.col + " " + op + " " + c.arg(t.Number) + ")", nil
		}
		pre := ""
		if f.inKV() {
			pre = c.ftsCond(`kv : "`+keyTag(f.key)+`"`) + " AND "
		}
		return "(" + pre + numberFunc + "(event, " + c.arg(f.key) + ") " + op + " " + c.arg(t.Number) + ")", nil
	case cql.Match:
		return c.match(t, f)
	}
	return "", c.errf(t.P, "unsupported term")
}

func (c *compiler) match(t *cql.Term, f field) (string, error) {
	pat := cql.CompilePattern(t.Pattern, t.Quoted)
	if len(pat.Words) == 0 {
		// Only delimiters: no word to find, as in CLS.
		return "0", nil
	}
	if f.number && len(pat.Words) == 1 && !pat.Words[0].Wild {
		if n, err := strconv.ParseInt(pat.Words[0].Text, 10, 64); err == nil {
			return "(" + f.col + " = " + c.arg(n) + ")", nil
		}
	}
	if f.walk {
		return c.distinctMatch(f.col, t.Pattern, t.Quoted), nil
	}
	check := func() string {
		return kvFunc + "(event, " + c.arg(f.key) + ", " + c.arg(t.Pattern) + ", " + c.arg(phraseArg(t.Quoted)) + ") = 1"
	}
	if !f.inKV() {
		// The full text holds the words of every value the apiserver
		// sent: a superset, then the check.
		if q, _ := ftsQuery("text", "", pat); q != "" && !ownField(f.key) {
			return "(" + c.ftsCond(q) + " AND " + check() + ")", nil
		}
		return "(" + check() + ")", nil
	}
	q, exact := ftsQuery("kv", keyTag(f.key), pat)
	cond := c.ftsCond(q)
	if !exact {
		cond += " AND " + check()
	}
	return "(" + cond + ")", nil
}

// distinctMatch renders a word match on an indexed column: walk the
// column's distinct values through its index (a recursive loose index scan,
// one seek per distinct value: user names and object names number in the
// thousands where events number in the millions), keep those the pattern
// matches, and select the events by value, which the (col, stage_ts) index
// serves together with the time range. Matching distinct values in Go is
// what makes these columns case-insensitive and word-based like CLS.
//
// The walk runs once per search, before the statements (resolveLookups):
// the count and the page would otherwise each repeat it. Until then the
// argument is a *distinctLookup placeholder.
func (c *compiler) distinctMatch(col, pattern string, phrase bool) string {
	c.args = append(c.args, &distinctLookup{col: col, pattern: pattern, phrase: phrase})
	return "(" + col + " IN (SELECT value FROM json_each(?)))"
}

// distinctLookup is a pending distinct-value walk; col is one of our column
// names, never user input.
type distinctLookup struct {
	col, pattern string
	phrase       bool
}

func (l *distinctLookup) sql() string {
	return "WITH RECURSIVE d(v) AS (SELECT min(" + l.col + ") FROM events" +
		" UNION ALL SELECT (SELECT min(" + l.col + ") FROM events WHERE " + l.col + " > d.v) FROM d WHERE d.v IS NOT NULL)" +
		" SELECT json_group_array(v) FROM d WHERE " + matchFunc + "(v, ?, ?) = 1"
}

// fullText renders a bare term: CLS's full-text search, over every value
// the apiserver sent (not auditpipe's own fields).
func (c *compiler) fullText(t *cql.Term) (string, error) {
	pat := cql.CompilePattern(t.Pattern, t.Quoted)
	if len(pat.Words) == 0 {
		return "", c.errf(t.P, "%q has no words to search for (only delimiters)", t.Value())
	}
	q, exact := ftsQuery("text", "", pat)
	if q == "" {
		return "", c.errf(t.P, "the pattern %q gives the index no word to search for", t.Pattern)
	}
	cond := "(" + c.ftsCond(q)
	if !exact {
		// Wildcards inside words: the index narrows by the literal
		// prefixes, the function checks the whole pattern on the event.
		cond += " AND " + textFunc + "(event, " + c.arg(t.Pattern) + ", " + c.arg(phraseArg(t.Quoted)) + ") = 1"
	}
	return cond + ")", nil
}

// selectSQL holds the pieces of a compiled analysis part.
type selectSQL struct {
	distinct bool
	columns  []string
	list     string // the SELECT list
	// nListArgs is how many of the arguments belong to the list; the
	// rest belong to the clauses after the filter.
	nListArgs int
	where     string // "" or a boolean expression
	groupBy   string
	having    string
	orderBy   string
	limit     int
}

// sqlCtx says where in the statement an expression is.
type sqlCtx struct {
	aliases   bool // GROUP BY, HAVING, ORDER BY: names may be select aliases
	positions bool // GROUP BY, ORDER BY: an integer is a column position
}

// analysis compiles the analysis part; c.args must be empty on entry.
func (c *compiler) analysis(sel *cql.Select) (*selectSQL, error) {
	out := &selectSQL{limit: DefaultLimit, distinct: sel.Distinct}
	var list []string
	aliases := map[string]int{}
	for i, it := range sel.Items {
		s, err := c.sqlExpr(it.Expr, sqlCtx{}, nil)
		if err != nil {
			return nil, err
		}
		list = append(list, s+" AS c"+strconv.Itoa(i))
		out.columns = append(out.columns, it.Name())
		if it.Alias != "" {
			if _, dup := aliases[it.Alias]; !dup {
				aliases[it.Alias] = i
			}
		}
	}
	out.list = strings.Join(list, ", ")
	out.nListArgs = len(c.args)
	if sel.Where != nil {
		s, err := c.sqlExpr(sel.Where, sqlCtx{}, nil)
		if err != nil {
			return nil, err
		}
		out.where = s
	}
	render := func(es []cql.SQLExpr) (string, error) {
		var parts []string
		for _, e := range es {
			s, err := c.sqlExpr(e, sqlCtx{aliases: true, positions: true}, aliases)
			if err != nil {
				return "", err
			}
			if len(sel.Items) > 0 {
				if n, ok := e.(*cql.NumberLit); ok && n.Int && (n.Value < 1 || int(n.Value) > len(sel.Items)) {
					return "", c.errf(n.P, "column position %s is out of range 1..%d", n.Text, len(sel.Items))
				}
			}
			parts = append(parts, s)
		}
		return strings.Join(parts, ", "), nil
	}
	var err error
	if out.groupBy, err = render(sel.GroupBy); err != nil {
		return nil, err
	}
	if sel.Having != nil {
		if out.having, err = c.sqlExpr(sel.Having, sqlCtx{aliases: true}, aliases); err != nil {
			return nil, err
		}
	}
	var order []string
	for _, o := range sel.OrderBy {
		s, err := render([]cql.SQLExpr{o.Expr})
		if err != nil {
			return nil, err
		}
		if o.Desc {
			s += " DESC"
		}
		// CLS's engine sorts NULLs last both ways; SQLite puts them
		// first in ascending order.
		order = append(order, s+" NULLS LAST")
	}
	out.orderBy = strings.Join(order, ", ")
	if sel.Limit >= 0 {
		if sel.Limit > MaxLimit {
			return nil, c.errf(sel.LimitPos, "LIMIT %d is over the maximum of %d", sel.Limit, MaxLimit)
		}
		out.limit = sel.Limit
	}
	return out, nil
}

const timeFormat = "'%Y-%m-%d %H:%M:%S'"

var intervalMS = map[string]int64{"second": 1000, "minute": 60_000, "hour": 3_600_000, "day": 86_400_000}

// sqlExpr renders one expression of the analysis part.
func (c *compiler) sqlExpr(e cql.SQLExpr, ctx sqlCtx, aliases map[string]int) (string, error) {
	sub := sqlCtx{} // aliases and positions apply at the top level only
	if ctx.aliases {
		sub.aliases = true
	}
	switch e := e.(type) {
	case *cql.Ident:
		if ctx.aliases {
			if i, ok := aliases[e.Name]; ok {
				return "c" + strconv.Itoa(i), nil
			}
		}
		return c.fieldValue(lookupField(e.Name)), nil
	case *cql.StringLit:
		return c.arg(e.Value), nil
	case *cql.NumberLit:
		if ctx.positions && e.Int {
			return "c" + strconv.Itoa(int(e.Value)-1), nil
		}
		if e.Int {
			n, _ := strconv.ParseInt(e.Text, 10, 64)
			return c.arg(n), nil
		}
		return c.arg(e.Value), nil
	case *cql.NullLit:
		return "NULL", nil
	case *cql.BoolLit:
		if e.Value {
			return "1", nil
		}
		return "0", nil
	case *cql.Interval:
		return "", c.errf(e.P, "INTERVAL is only allowed as the second argument of histogram")
	case *cql.Cast:
		return c.cast(e, sub, aliases)
	case *cql.Unary:
		x, err := c.sqlExpr(e.X, sub, aliases)
		if err != nil {
			return "", err
		}
		if e.Op == "NOT" {
			return "(NOT " + x + ")", nil
		}
		return "(-" + x + ")", nil
	case *cql.Binary:
		l, err := c.sqlExpr(e.L, sub, aliases)
		if err != nil {
			return "", err
		}
		r, err := c.sqlExpr(e.R, sub, aliases)
		if err != nil {
			return "", err
		}
		op := e.Op
		if op == "!=" {
			op = "<>"
		}
		return "(" + l + " " + op + " " + r + ")", nil
	case *cql.IsNull:
		x, err := c.sqlExpr(e.X, sub, aliases)
		if err != nil {
			return "", err
		}
		if e.Not {
			return "(" + x + " IS NOT NULL)", nil
		}
		return "(" + x + " IS NULL)", nil
	case *cql.In:
		x, err := c.sqlExpr(e.X, sub, aliases)
		if err != nil {
			return "", err
		}
		var items []string
		for _, it := range e.List {
			s, err := c.sqlExpr(it, sub, aliases)
			if err != nil {
				return "", err
			}
			items = append(items, s)
		}
		not := ""
		if e.Not {
			not = "NOT "
		}
		return "(" + x + " " + not + "IN (" + strings.Join(items, ", ") + "))", nil
	case *cql.Call:
		return c.call(e, sub, aliases)
	case *cql.Case:
		out := "(CASE"
		if e.Operand != nil {
			x, err := c.sqlExpr(e.Operand, sub, aliases)
			if err != nil {
				return "", err
			}
			out += " " + x
		}
		for _, w := range e.Whens {
			cond, err := c.sqlExpr(w.Cond, sub, aliases)
			if err != nil {
				return "", err
			}
			res, err := c.sqlExpr(w.Result, sub, aliases)
			if err != nil {
				return "", err
			}
			out += " WHEN " + cond + " THEN " + res
		}
		if e.Else != nil {
			x, err := c.sqlExpr(e.Else, sub, aliases)
			if err != nil {
				return "", err
			}
			out += " ELSE " + x
		}
		return out + " END)", nil
	}
	return "", c.errf(e.Pos(), "unsupported expression %T", e)
}

// millis renders x as unix milliseconds: CAST(x AS timestamp) of a time is
// the time itself here.
//
// Time arguments (histogram, date_trunc, date_format, time_series) are
// CLS's: __TIMESTAMP__ in milliseconds, cast(__TIMESTAMP__ as timestamp),
// or from_unixtime(seconds); any other number is read as milliseconds.
func (c *compiler) millis(x cql.SQLExpr, ctx sqlCtx, aliases map[string]int) (string, error) {
	if cast, ok := x.(*cql.Cast); ok && cast.Type == "timestamp" {
		x = cast.X
	}
	if call, ok := x.(*cql.Call); ok && call.Name == "from_unixtime" {
		s, err := c.sqlExpr(call.Args[0], ctx, aliases)
		if err != nil {
			return "", err
		}
		return "((" + s + ") * 1000)", nil
	}
	return c.sqlExpr(x, ctx, aliases)
}

// mysqlFormat converts a date_format/time_series format (MySQL-style, as
// CLS's Presto engine takes it) to SQLite's strftime.
func (c *compiler) mysqlFormat(lit cql.SQLExpr, fn string) (string, error) {
	f, ok := lit.(*cql.StringLit)
	if !ok {
		return "", c.errf(lit.Pos(), "%s's format must be a string such as '%%Y-%%m-%%d %%H:%%i:%%s'", fn)
	}
	var b strings.Builder
	for i := 0; i < len(f.Value); i++ {
		ch := f.Value[i]
		if ch != '%' {
			b.WriteByte(ch)
			continue
		}
		i++
		if i >= len(f.Value) {
			return "", c.errf(f.P, "%s's format ends with a lone %%", fn)
		}
		switch spec := f.Value[i]; spec {
		case 'Y', 'm', 'd', 'H', 'j', 'w', '%':
			b.WriteByte('%')
			b.WriteByte(spec)
		case 'i':
			b.WriteString("%M")
		case 's', 'S':
			b.WriteString("%S")
		case 'T':
			b.WriteString("%H:%M:%S")
		default:
			return "", c.errf(f.P, "%s's format: %%%c is not supported (supported: %%Y %%m %%d %%H %%i %%s %%S %%T %%j %%w %%%%)", fn, spec)
		}
	}
	return b.String(), nil
}

// windowMS parses time_series's window: a number and s, m, h or d ('5m').
func (c *compiler) windowMS(lit cql.SQLExpr) (int64, error) {
	w, ok := lit.(*cql.StringLit)
	bad := c.errf(lit.Pos(), "time_series's window must be a string such as '30s', '5m', '1h' or '1d'")
	if !ok || len(w.Value) < 2 {
		return 0, bad
	}
	per, known := map[byte]int64{'s': 1000, 'm': 60_000, 'h': 3_600_000, 'd': 86_400_000}[w.Value[len(w.Value)-1]]
	n, err := strconv.ParseInt(w.Value[:len(w.Value)-1], 10, 64)
	if !known || err != nil || n <= 0 || n > 1e6 {
		return 0, bad
	}
	return n * per, nil
}

func (c *compiler) cast(e *cql.Cast, ctx sqlCtx, aliases map[string]int) (string, error) {
	if e.Type == "timestamp" {
		ms, err := c.sqlExpr(e.X, ctx, aliases)
		if err != nil {
			return "", err
		}
		return "strftime('%Y-%m-%d %H:%M:%f', " + ms + " / 1000.0, 'unixepoch')", nil
	}
	x, err := c.sqlExpr(e.X, ctx, aliases)
	if err != nil {
		return "", err
	}
	switch e.Type {
	case "varchar", "text":
		return "CAST(" + x + " AS TEXT)", nil
	case "bigint", "integer":
		return "CAST(" + x + " AS INTEGER)", nil
	case "double", "real":
		return "CAST(" + x + " AS REAL)", nil
	case "boolean":
		return "(" + x + " <> 0)", nil
	}
	return "", c.errf(e.P, "unsupported CAST type %s", e.Type)
}

func (c *compiler) call(e *cql.Call, ctx sqlCtx, aliases map[string]int) (string, error) {
	args := make([]string, 0, len(e.Args))
	render := func(from int) error {
		for _, a := range e.Args[from:] {
			s, err := c.sqlExpr(a, ctx, aliases)
			if err != nil {
				return err
			}
			args = append(args, s)
		}
		return nil
	}
	switch e.Name {
	case "histogram":
		iv, ok := e.Args[1].(*cql.Interval)
		if !ok {
			return "", c.errf(e.Args[1].Pos(), "histogram's second argument must be an INTERVAL, e.g. interval 1 minute")
		}
		ms, err := c.millis(e.Args[0], ctx, aliases)
		if err != nil {
			return "", err
		}
		return c.bucket(ms, iv.N*intervalMS[iv.Unit]), nil
	case "date_trunc":
		unit, ok := e.Args[0].(*cql.StringLit)
		per, known := intervalMS[strings.ToLower(strings.TrimSpace(unitName(unit)))]
		if !ok || !known {
			return "", c.errf(e.Args[0].Pos(), "date_trunc's first argument must be 'second', 'minute', 'hour' or 'day'")
		}
		ms, err := c.millis(e.Args[1], ctx, aliases)
		if err != nil {
			return "", err
		}
		return c.bucket(ms, per), nil
	case "count":
		if e.Star {
			return "count(*)", nil
		}
		if err := render(0); err != nil {
			return "", err
		}
		if e.Distinct {
			return "count(DISTINCT " + args[0] + ")", nil
		}
		return "count(" + args[0] + ")", nil
	case "approx_distinct":
		if err := render(0); err != nil {
			return "", err
		}
		return "count(DISTINCT " + args[0] + ")", nil
	case "count_if":
		if err := render(0); err != nil {
			return "", err
		}
		return "count(CASE WHEN " + args[0] + " THEN 1 END)", nil
	case "approx_percentile":
		if err := render(0); err != nil {
			return "", err
		}
		return percentileFunc + "(" + args[0] + ", " + args[1] + ")", nil
	case "split_part":
		if err := render(0); err != nil {
			return "", err
		}
		return splitPartFunc + "(" + strings.Join(args, ", ") + ")", nil
	case "strpos":
		if err := render(0); err != nil {
			return "", err
		}
		return "instr(" + args[0] + ", " + args[1] + ")", nil
	case "from_unixtime":
		if err := render(0); err != nil {
			return "", err
		}
		return "strftime('%Y-%m-%d %H:%M:%f', " + args[0] + ", 'unixepoch')", nil
	case "date_format":
		// Arguments are bound in text order: the format comes first.
		f, err := c.mysqlFormat(e.Args[1], "date_format")
		if err != nil {
			return "", err
		}
		fa := c.arg(f)
		ms, err := c.millis(e.Args[0], ctx, aliases)
		if err != nil {
			return "", err
		}
		return "strftime(" + fa + ", (" + ms + ") / 1000, 'unixepoch')", nil
	case "time_series":
		// Buckets formatted; the padding argument (fill empty buckets) is
		// not applied: empty buckets are absent (ADR 0006).
		per, err := c.windowMS(e.Args[1])
		if err != nil {
			return "", err
		}
		f := "%Y-%m-%d %H:%M:%S"
		if len(e.Args) > 2 {
			if f, err = c.mysqlFormat(e.Args[2], "time_series"); err != nil {
				return "", err
			}
		}
		fa := c.arg(f) // text order: format, time, window
		ms, err := c.millis(e.Args[0], ctx, aliases)
		if err != nil {
			return "", err
		}
		p1, p2 := c.arg(per), c.arg(per)
		return "strftime(" + fa + ", ((" + ms + ") / " + p1 + ") * " + p2 + " / 1000, 'unixepoch')", nil
	case "sum", "avg", "min", "max", "lower", "upper", "length", "abs", "round", "coalesce":
		if err := render(0); err != nil {
			return "", err
		}
		return e.Name + "(" + strings.Join(args, ", ") + ")", nil
	}
	return "", c.errf(e.P, "unsupported function %s", e.Name)
}

func unitName(s *cql.StringLit) string {
	if s == nil {
		return ""
	}
	return s.Value
}

// bucket renders the start of ms's bucket of per milliseconds as UTC
// "2006-01-02 15:04:05", which sorts chronologically as text.
func (c *compiler) bucket(ms string, per int64) string {
	p1 := c.arg(per)
	p2 := c.arg(per)
	return "strftime(" + timeFormat + ", ((" + ms + ") / " + p1 + ") * " + p2 + " / 1000, 'unixepoch')"
}

// fieldValue renders a field as the SQL part reads it: NULL when the event
// did not send it, as in CLS's engine, so that count(col), IS NULL and
// GROUP BY give CLS's numbers.
func (c *compiler) fieldValue(f field) string {
	switch {
	case f.sqlCol && f.number:
		return f.col
	case f.sqlCol:
		return "NULLIF(" + f.col + ", '')"
	}
	return fieldFunc + "(event, " + c.arg(f.key) + ")"
}
