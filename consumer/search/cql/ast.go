// Package cql parses the query language of Tencent Cloud CLS as TKE's cluster
// audit console uses it: a CQL search (key:value, AND/OR/NOT, parentheses,
// "phrases", suffix and infix *, ranges such as responseStatus.code>=400,
// key:* and key:"") optionally followed by "| SQL" analysis (SELECT, WHERE,
// GROUP BY, HAVING, ORDER BY, LIMIT, count, histogram, __TIMESTAMP__).
//
// The package only parses: it produces a syntax tree and positioned errors,
// and knows nothing about storage. consumer/sink/local compiles the tree to
// SQLite, so that the same runbook query works in the CLS console and on
// auditpipe's local store. Function names of the SQL part are checked here
// against a whitelist, so an unsupported function is reported at its position
// before anything reaches a database.
package cql

// Query is a parsed query.
type Query struct {
	// Text is the query as given; error positions are byte offsets into it.
	Text string
	// Filter is the search part; nil matches every event (empty or "*").
	Filter Expr
	// SQL is the analysis part after '|', nil when there is none.
	SQL *Select
}

// Expr is a node of the search part: *And, *Or, *Not or *Term.
type Expr interface {
	// Pos is the byte offset of the node in Query.Text.
	Pos() int
}

// And matches when both sides match.
type And struct {
	L, R Expr
	P    int
}

// Or matches when either side matches.
type Or struct {
	L, R Expr
	P    int
}

// Not matches when X does not.
type Not struct {
	X Expr
	P int
}

// TermKind says what a Term tests.
type TermKind int

// Term kinds.
const (
	// Match: Field (or the full text when Field is "") contains Value; see
	// Term.Parts for wildcards.
	Match TermKind = iota
	// Exists: key:* — the field is present.
	Exists
	// Empty: key:"" — the field is present and the empty string.
	Empty
	// Range: key>n, key>=n, key<n, key<=n, key=n on a number.
	Range
	// All: a bare "*", every event.
	All
)

// Term is a leaf of the search part.
type Term struct {
	Kind TermKind
	// Field is the dotted path (objectRef.name), "" for full text.
	Field string
	// Parts is the unescaped value split at its wildcards: "ng*nx" is
	// ["ng", "nx"], "nginx*" is ["nginx", ""], "nginx" is ["nginx"]. A
	// quoted value has no wildcards. Parts never starts with "" when it has
	// more than one element: prefix wildcards are rejected, as in CLS.
	Parts []string
	// Pattern is the value as CLS matches it: '*' (any run) and '?' (one
	// character) are wildcards, '\' escapes a literal '*', '?' or '\';
	// other escapes are resolved (an escaped delimiter is a plain
	// delimiter). CompilePattern splits it into words. A quoted value has
	// every wildcard escaped.
	Pattern string
	// Quoted is true for a "phrase".
	Quoted bool
	// Op is the comparison of a Range: ">", ">=", "<", "<=" or "=".
	Op string
	// Number is the operand of a Range.
	Number float64
	P      int
}

// Value is the value without wildcards (the parts joined).
func (t *Term) Value() string {
	n := 0
	for _, p := range t.Parts {
		n += len(p)
	}
	b := make([]byte, 0, n)
	for _, p := range t.Parts {
		b = append(b, p...)
	}
	return string(b)
}

// Wildcard reports whether the value has a * wildcard.
func (t *Term) Wildcard() bool { return len(t.Parts) > 1 }

// Pos implements Expr.
func (e *And) Pos() int { return e.P }

// Pos implements Expr.
func (e *Or) Pos() int { return e.P }

// Pos implements Expr.
func (e *Not) Pos() int { return e.P }

// Pos implements Expr.
func (e *Term) Pos() int { return e.P }

// Select is the "| SQL" analysis part. There is no FROM: the source is the
// events the search part selected, as in CLS.
type Select struct {
	// Distinct is SELECT DISTINCT.
	Distinct bool
	Items    []SelectItem
	Where    SQLExpr // nil when absent
	GroupBy  []SQLExpr
	Having   SQLExpr // nil when absent
	OrderBy  []OrderItem
	// Limit is -1 when absent.
	Limit    int
	LimitPos int
	P        int
}

// SelectItem is one output column.
type SelectItem struct {
	Expr SQLExpr
	// Alias is the AS name, "" when absent.
	Alias string
	// Text is the item's source text without the alias, the column name
	// when there is no alias.
	Text string
}

// Name is the output column name: the alias, else the source text.
func (s SelectItem) Name() string {
	if s.Alias != "" {
		return s.Alias
	}
	return s.Text
}

// OrderItem is one ORDER BY key.
type OrderItem struct {
	Expr SQLExpr
	Desc bool
}

// SQLExpr is an expression of the SQL part: *Ident, *StringLit, *NumberLit,
// *NullLit, *BoolLit, *Call, *Cast, *Interval, *Binary, *Unary, *In,
// *IsNull or *Case.
type SQLExpr interface {
	Pos() int
}

// Ident names a field ("objectRef.name", userAgent, __TIMESTAMP__) or, in
// GROUP BY, HAVING and ORDER BY, a select alias.
type Ident struct {
	Name   string
	Quoted bool // written in double quotes
	P      int
}

// StringLit is a 'single quoted' string, unescaped.
type StringLit struct {
	Value string
	P     int
}

// NumberLit is a number; Int is set when it is an integer.
type NumberLit struct {
	Text  string
	Int   bool
	Value float64
	P     int
}

// NullLit is NULL.
type NullLit struct{ P int }

// BoolLit is TRUE or FALSE.
type BoolLit struct {
	Value bool
	P     int
}

// Call is a function call; Name is lower case and on the whitelist.
type Call struct {
	Name     string
	Args     []SQLExpr
	Star     bool // count(*)
	Distinct bool // count(DISTINCT x)
	P        int
}

// Cast is CAST(X AS Type); Type is lower case: timestamp, varchar, bigint,
// double, integer, real, text, boolean.
type Cast struct {
	X    SQLExpr
	Type string
	P    int
}

// Interval is INTERVAL N unit (unit singular, lower case: second, minute,
// hour, day), an argument of histogram.
type Interval struct {
	N    int64
	Unit string
	P    int
}

// Binary is L Op R; Op is upper case: OR AND = != < <= > >= + - * / % LIKE
// "NOT LIKE".
type Binary struct {
	Op   string
	L, R SQLExpr
	P    int
}

// Unary is NOT X or -X.
type Unary struct {
	Op string
	X  SQLExpr
	P  int
}

// In is X [NOT] IN (List).
type In struct {
	X    SQLExpr
	List []SQLExpr
	Not  bool
	P    int
}

// Case is CASE [Operand] WHEN ... THEN ... [ELSE Else] END; with an
// Operand, each When.Cond is compared to it.
type Case struct {
	Operand SQLExpr // nil for a searched CASE
	Whens   []When
	Else    SQLExpr // nil when absent
	P       int
}

// When is one WHEN Cond THEN Result of a Case.
type When struct {
	Cond, Result SQLExpr
}

// Pos implements SQLExpr.
func (e *Case) Pos() int { return e.P }

// IsNull is X IS [NOT] NULL.
type IsNull struct {
	X   SQLExpr
	Not bool
	P   int
}

// Pos implements SQLExpr.
func (e *Ident) Pos() int { return e.P }

// Pos implements SQLExpr.
func (e *StringLit) Pos() int { return e.P }

// Pos implements SQLExpr.
func (e *NumberLit) Pos() int { return e.P }

// Pos implements SQLExpr.
func (e *NullLit) Pos() int { return e.P }

// Pos implements SQLExpr.
func (e *BoolLit) Pos() int { return e.P }

// Pos implements SQLExpr.
func (e *Call) Pos() int { return e.P }

// Pos implements SQLExpr.
func (e *Cast) Pos() int { return e.P }

// Pos implements SQLExpr.
func (e *Interval) Pos() int { return e.P }

// Pos implements SQLExpr.
func (e *Binary) Pos() int { return e.P }

// Pos implements SQLExpr.
func (e *Unary) Pos() int { return e.P }

// Pos implements SQLExpr.
func (e *In) Pos() int { return e.P }

// Pos implements SQLExpr.
func (e *IsNull) Pos() int { return e.P }
