package local

import (
	"strconv"
	"strings"

	"github.com/auditpipe/auditpipe/consumer/search/cql"
)

// fieldKind says how key:value matches a field.
type fieldKind int

const (
	// kindJSON: no column; reached through the event JSON, text semantics.
	kindJSON fieldKind = iota
	// kindKeyword: a column holding one identifier-like value (verb,
	// resource, namespace...). key:value is exact, case-sensitive equality
	// (served by the column's index); wildcards are a GLOB.
	kindKeyword
	// kindText: a column holding free text (user name, object name, user
	// agent). key:value is a token/phrase match like CLS's tokenized
	// fields, with the full-text index as a prefilter.
	kindText
	// kindNumber: an integer column (responseStatus.code).
	kindNumber
)

// field is how a CLS field name maps onto the store.
type field struct {
	col  string // column, "" when there is none
	kind fieldKind
	path string // JSON path of the field in events.event
	// sqlCol: the column holds the field as the SQL part should see it.
	// user_groups joins the groups with newlines, so SQL reads the JSON.
	sqlCol bool
	// indexed: an index leads with the column, so its distinct values can
	// be walked cheaply (see distinctMatch).
	indexed bool
}

// timestampField is CLS's name for the log time: stageTimestamp in unix ms.
const timestampField = "__TIMESTAMP__"

// columnFields are the fields with a column. Their names are the CLS field
// names of the event, exactly as in the JSON.
var columnFields = map[string]field{
	"auditID":               {col: "audit_id", kind: kindKeyword, sqlCol: true},
	"stage":                 {col: "stage", kind: kindKeyword, sqlCol: true},
	"level":                 {col: "level", kind: kindKeyword, sqlCol: true},
	"verb":                  {col: "verb", kind: kindKeyword, sqlCol: true},
	"user.username":         {col: "username", kind: kindText, sqlCol: true, indexed: true},
	"user.groups":           {col: "user_groups", kind: kindText},
	"objectRef.resource":    {col: "resource", kind: kindKeyword, sqlCol: true},
	"objectRef.subresource": {col: "subresource", kind: kindKeyword, sqlCol: true},
	"objectRef.namespace":   {col: "namespace", kind: kindKeyword, sqlCol: true},
	"objectRef.name":        {col: "name", kind: kindText, sqlCol: true, indexed: true},
	"objectRef.apiGroup":    {col: "api_group", kind: kindKeyword, sqlCol: true},
	"responseStatus.code":   {col: "code", kind: kindNumber, sqlCol: true},
	"userAgent":             {col: "user_agent", kind: kindText, sqlCol: true, indexed: true},
	"auditpipe.cluster":     {col: "cluster", kind: kindKeyword, sqlCol: true},
	timestampField:          {col: "stage_ts", kind: kindNumber, sqlCol: true},
}

// lookupField resolves a dotted field name. Names are case-sensitive, like
// the JSON keys, except __TIMESTAMP__.
func lookupField(name string) field {
	if strings.EqualFold(name, timestampField) {
		return columnFields[timestampField]
	}
	f, ok := columnFields[name]
	if !ok {
		f.kind = kindJSON
	}
	f.path = jsonPath(name)
	return f
}

// jsonPath turns a dotted field name into an SQLite JSON path with every
// segment quoted. Annotation keys contain dots and slashes
// (authorization.k8s.io/decision), so everything after "annotations." is
// one key, as in CLS's flattened index.
func jsonPath(name string) string {
	var segs []string
	if rest, ok := strings.CutPrefix(name, "annotations."); ok {
		segs = []string{"annotations", rest}
	} else {
		segs = strings.Split(name, ".")
	}
	var b strings.Builder
	b.WriteString("$")
	for _, s := range segs {
		// cql only admits letters, digits and _-./@ in field names, so a
		// segment cannot contain a quote.
		b.WriteString(`."`)
		b.WriteString(s)
		b.WriteString(`"`)
	}
	return b.String()
}

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

// ftsCond renders "the event's full text matches q". How SQLite uses it
// matters more than anything else for speed on a large store:
//
//   - "id IN (SELECT rowid ... MATCH ?)" lets the planner drive the query
//     from the full-text hits, one table lookup per hit: instant for a rare
//     word, seconds for a word in 20% of a million events.
//   - "+id IN (...)" (the unary + hides the rowid from the planner) turns it
//     into a filter, checked through a Bloom filter while another index
//     (the time range, verb, ...) drives: cost bounded by that range.
//
// With a time range (the console always has one) the range drives; without
// one, the full-text hits do. A prefilter (drive=false) never drives: its
// word may be in every event.
func (c *compiler) ftsCond(q string, drive bool) string {
	c.args = append(c.args, q)
	if drive && !c.timeRange {
		return "id IN (SELECT rowid FROM events_fts WHERE events_fts MATCH ?)"
	}
	return "+id IN (SELECT rowid FROM events_fts WHERE events_fts MATCH ?)"
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
		case f.kind == kindNumber:
			return "(" + f.col + " IS NOT NULL)", nil
		case f.col != "":
			return "(" + f.col + " <> '')", nil
		}
		return "(IFNULL(json_type(event, " + c.arg(f.path) + "), 'null') <> 'null')", nil
	case cql.Empty:
		if f.kind == kindNumber {
			return "0", nil
		}
		return "(json_extract(event, " + c.arg(f.path) + ") = '')", nil
	case cql.Range:
		op := t.Op
		if f.kind == kindNumber {
			return "(" + f.col + " " + op + " " + c.arg(t.Number) + ")", nil
		}
		p := c.arg(f.path)
		p2 := c.arg(f.path)
		return "(json_type(event, " + p + ") IN ('integer', 'real') AND json_extract(event, " + p2 + ") " + op + " " + c.arg(t.Number) + ")", nil
	case cql.Match:
		return c.match(t, f)
	}
	return "", c.errf(t.P, "unsupported term")
}

func (c *compiler) match(t *cql.Term, f field) (string, error) {
	value := t.Value()
	switch f.kind {
	case kindKeyword:
		if !t.Wildcard() {
			return "(" + f.col + " = " + c.arg(value) + ")", nil
		}
		return "(" + f.col + " GLOB " + c.arg(globPattern(t.Parts)) + ")", nil
	case kindNumber:
		if !t.Wildcard() {
			if n, err := strconv.ParseInt(value, 10, 64); err == nil {
				return "(" + f.col + " = " + c.arg(n) + ")", nil
			}
		}
		return "(" + matchFunc + "(CAST(" + f.col + " AS TEXT), " + c.arg(encodePattern(t.Parts)) + ") = 1)", nil
	case kindText:
		pattern := encodePattern(t.Parts)
		if f.indexed {
			return c.distinctMatch(f.col, pattern), nil
		}
		// The full-text index holds every value of the event, so an event
		// whose field matches has the words somewhere: a prefilter that
		// keeps the function off most rows.
		prefilter := ""
		if q, _ := ftsQuery(t.Parts); q != "" {
			prefilter = c.ftsCond(q, false) + " AND "
		}
		return "(" + prefilter + matchFunc + "(" + f.col + ", " + c.arg(pattern) + ") = 1)", nil
	default:
		// Any other path: its JSON rendition (a string, a number, true,
		// or a whole object such as requestObject) matched token-wise, so
		// requestObject:unschedulable finds {"spec":{"unschedulable":true}}.
		return "(" + matchFunc + "(event -> " + c.arg(f.path) + ", " + c.arg(encodePattern(t.Parts)) + ") = 1)", nil
	}
}

// distinctMatch renders a word match on an indexed text column: walk the
// column's distinct values through its index (a recursive loose index scan,
// one seek per distinct value: user names and object names number in the
// thousands where events number in the millions), keep those the pattern
// matches, and select the events by value, which the (col, stage_ts) index
// serves together with the time range.
//
// The walk runs once per search, before the statements (resolveLookups):
// the count and the page would otherwise each repeat it. Until then the
// argument is a *distinctLookup placeholder.
func (c *compiler) distinctMatch(col, pattern string) string {
	c.args = append(c.args, &distinctLookup{col: col, pattern: pattern})
	return "(" + col + " IN (SELECT value FROM json_each(?)))"
}

// distinctLookup is a pending distinct-value walk; col is one of our column
// names, never user input.
type distinctLookup struct {
	col, pattern string
}

func (l *distinctLookup) sql() string {
	return "WITH RECURSIVE d(v) AS (SELECT min(" + l.col + ") FROM events" +
		" UNION ALL SELECT (SELECT min(" + l.col + ") FROM events WHERE " + l.col + " > d.v) FROM d WHERE d.v IS NOT NULL)" +
		" SELECT json_group_array(v) FROM d WHERE " + matchFunc + "(v, ?) = 1"
}

// fullText renders a bare term: a search of every value of the event.
func (c *compiler) fullText(t *cql.Term) (string, error) {
	q, exact := ftsQuery(t.Parts)
	if t.Quoted || !t.Wildcard() {
		if q == "" {
			return "", c.errf(t.P, "%q has no letters or digits to search for", t.Value())
		}
		return "(" + c.ftsCond(q, true) + ")", nil
	}
	if q == "" {
		return "", c.errf(t.P, "the pattern %q has no letters or digits before its first * to search for", encodePattern(t.Parts))
	}
	cond := "(" + c.ftsCond(q, true)
	if !exact {
		// Infix wildcards: the index narrows by the literal prefixes, the
		// function checks the whole pattern on the event.
		cond += " AND " + matchFunc + "(event, " + c.arg(encodePattern(t.Parts)) + ") = 1"
	}
	return cond + ")", nil
}

// globPattern renders parts as a GLOB pattern with the literal text escaped
// ([*], [?], [[]).
func globPattern(parts []string) string {
	var b strings.Builder
	for i, p := range parts {
		if i > 0 {
			b.WriteByte('*')
		}
		for _, r := range p {
			switch r {
			case '*', '?', '[':
				b.WriteByte('[')
				b.WriteRune(r)
				b.WriteByte(']')
			default:
				b.WriteRune(r)
			}
		}
	}
	return b.String()
}

// selectSQL holds the pieces of a compiled analysis part.
type selectSQL struct {
	columns []string
	list    string // the SELECT list
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
	out := &selectSQL{limit: DefaultLimit}
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
		order = append(order, s)
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
		f := lookupField(e.Name)
		if f.col != "" && f.sqlCol {
			return f.col, nil
		}
		return "json_extract(event, " + c.arg(f.path) + ")", nil
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
	}
	return "", c.errf(e.Pos(), "unsupported expression %T", e)
}

// millis renders x as unix milliseconds: CAST(x AS timestamp) of a time is
// the time itself here.
func (c *compiler) millis(x cql.SQLExpr, ctx sqlCtx, aliases map[string]int) (string, error) {
	if cast, ok := x.(*cql.Cast); ok && cast.Type == "timestamp" {
		x = cast.X
	}
	return c.sqlExpr(x, ctx, aliases)
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
