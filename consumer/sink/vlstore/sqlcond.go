package vlstore

import (
	"math"
	"strconv"
	"strings"

	"github.com/auditpipe/auditpipe/consumer/search/cql"
)

// sqlCond translates a condition of the `| SQL` part (WHERE, count_if) to
// two LogsQL filters: t selects the events for which the SQLite store
// evaluates it to TRUE, f those for which it is FALSE; the others make it
// NULL (SQL's three-valued logic, which NOT must keep: NOT NULL is NULL).
// ok is false for anything else (the fallback answers). Translated:
//   - AND, OR, NOT of translated conditions;
//   - a text column key (exactFields: the column NULLIF empty in SQLite, NULL
//     when missing or empty, as the storage, which drops empty values)
//     compared with = or != (<>) to a non-empty string literal, [NOT] IN
//     a list of them, IS [NOT] NULL: exact, case-sensitive matches, as
//     SQLite's BINARY collation;
//   - responseStatus.code (an integer, NULL when missing or 0) compared
//     with a number literal (= != <> < <= > >=), IS [NOT] NULL.
func sqlCond(e cql.SQLExpr) (t, f string, ok bool) {
	switch e := e.(type) {
	case *cql.Binary:
		switch e.Op {
		case "AND", "OR":
			lt, lf, ok1 := sqlCond(e.L)
			rt, rf, ok2 := sqlCond(e.R)
			if !ok1 || !ok2 {
				return "", "", false
			}
			if e.Op == "AND" {
				return "(" + lt + " " + rt + ")", "(" + lf + " OR " + rf + ")", true
			}
			return "(" + lt + " OR " + rt + ")", "(" + lf + " " + rf + ")", true
		case "=", "!=", "<>", "<", "<=", ">", ">=":
			return comparison(e)
		}
	case *cql.Unary:
		if e.Op == "NOT" {
			t, f, ok := sqlCond(e.X)
			return f, t, ok
		}
	case *cql.IsNull:
		id, ok := e.X.(*cql.Ident)
		if !ok {
			return "", "", false
		}
		var present string
		switch {
		case exactFields[id.Name]:
			present = strconv.Quote(id.Name) + ":*"
		case id.Name == keyCode:
			present = codeNonZero
		default:
			return "", "", false
		}
		absent := "(NOT " + present + ")"
		if e.Not {
			return present, absent, true
		}
		return absent, present, true
	case *cql.In:
		id, ok := e.X.(*cql.Ident)
		if !ok || !exactFields[id.Name] || len(e.List) == 0 {
			return "", "", false
		}
		vals := make([]string, len(e.List))
		for i, it := range e.List {
			s, ok := it.(*cql.StringLit)
			if !ok || s.Value == "" {
				return "", "", false
			}
			vals[i] = strconv.Quote(s.Value)
		}
		field := strconv.Quote(id.Name)
		in := field + ":in(" + strings.Join(vals, ", ") + ")"
		notIn := "(" + field + ":* NOT " + in + ")"
		if e.Not {
			return notIn, in, true
		}
		return in, notIn, true
	}
	return "", "", false
}

// codeNonZero selects a numeric responseStatus.code other than 0: the
// SQLite store's code column is NULL for 0 (omitempty wrote none).
var codeNonZero = "(" + strconv.Quote(keyCode) + ":<0 OR " + strconv.Quote(keyCode) + ":>0)"

// negated is the comparison that is FALSE where op is TRUE, on non-NULL
// numbers.
var negated = map[string]string{"=": "!=", "!=": "=", "<>": "=", "<": ">=", "<=": ">", ">": "<=", ">=": "<"}

// mirrored is op with its operands swapped (5 < x is x > 5).
var mirrored = map[string]string{"=": "=", "!=": "!=", "<>": "<>", "<": ">", "<=": ">=", ">": "<", ">=": "<="}

func comparison(e *cql.Binary) (t, f string, ok bool) {
	id, lok := e.L.(*cql.Ident)
	lit, op := e.R, e.Op
	if !lok {
		if id, ok = e.R.(*cql.Ident); !ok {
			return "", "", false
		}
		lit, op = e.L, mirrored[e.Op]
	}
	switch {
	case exactFields[id.Name]:
		s, ok := lit.(*cql.StringLit)
		if !ok || s.Value == "" || (op != "=" && op != "!=" && op != "<>") {
			return "", "", false
		}
		field := strconv.Quote(id.Name)
		eq := exactFilter(id.Name, s.Value)
		ne := "(" + field + ":* NOT " + eq + ")"
		if op == "=" {
			return eq, ne, true
		}
		return ne, eq, true
	case id.Name == keyCode:
		n, ok := lit.(*cql.NumberLit)
		if !ok || math.IsInf(n.Value, 0) || math.IsNaN(n.Value) {
			return "", "", false
		}
		return codeCompare(op, n.Value), codeCompare(negated[op], n.Value), true
	}
	return "", "", false
}

// codeCompare selects the events whose code is not NULL and satisfies
// `code op v`.
func codeCompare(op string, v float64) string {
	field := strconv.Quote(keyCode)
	num := strconv.FormatFloat(v, 'f', -1, 64)
	var r string
	switch op {
	case "=":
		r = "(" + field + ":>=" + num + " " + field + ":<=" + num + ")"
	case "!=", "<>":
		r = "(" + field + ":<" + num + " OR " + field + ":>" + num + ")"
	default:
		r = field + ":" + op + num
	}
	return "(" + codeNonZero + " " + r + ")"
}
