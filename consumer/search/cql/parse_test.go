package cql

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// show renders a search tree in a compact, unambiguous prefix form, so that
// the expected trees below read like the queries.
func show(e Expr) string {
	switch e := e.(type) {
	case nil:
		return "ALL"
	case *And:
		return "(AND " + show(e.L) + " " + show(e.R) + ")"
	case *Or:
		return "(OR " + show(e.L) + " " + show(e.R) + ")"
	case *Not:
		return "(NOT " + show(e.X) + ")"
	case *Term:
		switch e.Kind {
		case Exists:
			return e.Field + ":EXISTS"
		case Empty:
			return e.Field + ":EMPTY"
		case Range:
			return e.Field + e.Op + strconv.FormatFloat(e.Number, 'g', -1, 64)
		case All:
			return "*"
		}
		v := strconv.Quote(e.Pattern)
		if e.Quoted {
			v = "phrase" + v
		}
		if e.Field == "" {
			return "text:" + v
		}
		return e.Field + ":" + v
	}
	return fmt.Sprintf("?%T", e)
}

func showSQL(e SQLExpr) string {
	switch e := e.(type) {
	case *Ident:
		return "[" + e.Name + "]"
	case *StringLit:
		return strconv.Quote(e.Value)
	case *NumberLit:
		return e.Text
	case *NullLit:
		return "NULL"
	case *BoolLit:
		return strconv.FormatBool(e.Value)
	case *Call:
		var args []string
		if e.Star {
			args = append(args, "*")
		}
		for _, a := range e.Args {
			args = append(args, showSQL(a))
		}
		d := ""
		if e.Distinct {
			d = "DISTINCT "
		}
		return e.Name + "(" + d + strings.Join(args, ", ") + ")"
	case *Cast:
		return "cast(" + showSQL(e.X) + " as " + e.Type + ")"
	case *Interval:
		return "interval " + strconv.FormatInt(e.N, 10) + " " + e.Unit
	case *Binary:
		return "(" + showSQL(e.L) + " " + e.Op + " " + showSQL(e.R) + ")"
	case *Unary:
		return "(" + e.Op + " " + showSQL(e.X) + ")"
	case *In:
		var items []string
		for _, it := range e.List {
			items = append(items, showSQL(it))
		}
		n := ""
		if e.Not {
			n = "NOT "
		}
		return "(" + showSQL(e.X) + " " + n + "IN " + strings.Join(items, ", ") + ")"
	case *Case:
		out := "(case"
		if e.Operand != nil {
			out += " " + showSQL(e.Operand)
		}
		for _, w := range e.Whens {
			out += " when " + showSQL(w.Cond) + " then " + showSQL(w.Result)
		}
		if e.Else != nil {
			out += " else " + showSQL(e.Else)
		}
		return out + ")"
	case *IsNull:
		if e.Not {
			return "(" + showSQL(e.X) + " IS NOT NULL)"
		}
		return "(" + showSQL(e.X) + " IS NULL)"
	}
	return fmt.Sprintf("?%T", e)
}

func TestParseSearch(t *testing.T) {
	tests := []struct{ q, want string }{
		// TKE's published examples.
		{`objectRef.resource:deployments AND objectRef.name:"nginx" AND verb:"delete"`,
			`(AND (AND objectRef.resource:"deployments" objectRef.name:phrase"nginx") verb:phrase"delete")`},
		{`objectRef.resource:nodes AND requestObject:unschedulable`,
			`(AND objectRef.resource:"nodes" requestObject:"unschedulable")`},
		{`*`, `ALL`},
		{``, `ALL`},
		{`   `, `ALL`},
		{`**`, `ALL`},
		// Operators in any case, precedence NOT > AND > OR, juxtaposition.
		{`a or b and c`, `(OR text:"a" (AND text:"b" text:"c"))`},
		{`a Or b AnD not c`, `(OR text:"a" (AND text:"b" (NOT text:"c")))`},
		{`(a OR b) c`, `(AND (OR text:"a" text:"b") text:"c")`},
		{`a NOT b`, `(AND text:"a" (NOT text:"b"))`},
		{`NOT NOT a`, `(NOT (NOT text:"a"))`},
		{`android orange notes`, `(AND (AND text:"android" text:"orange") text:"notes")`},
		// Wildcards, phrases, escapes.
		{`objectRef.name:nginx*`, `objectRef.name:"nginx*"`},
		{`objectRef.name:ng*x`, `objectRef.name:"ng*x"`},
		{`objectRef.name:ng**x`, `objectRef.name:"ng*x"`},
		{`kube*`, `text:"kube*"`},
		{`"cannot list"`, `text:phrase"cannot list"`},
		{`objectRef.name:"a*b"`, `objectRef.name:phrase"a\\*b"`},
		{`user.username:system\:admin`, `user.username:"system:admin"`},
		{`user.username:system:serviceaccount:kube-system:default`, `user.username:"system:serviceaccount:kube-system:default"`},
		{`objectRef.name:a\*b`, `objectRef.name:"a\\*b"`},
		{`objectRef.name:ngin?`, `objectRef.name:"ngin?"`},
		{`objectRef.name:a\?b`, `objectRef.name:"a\\?b"`},
		// Grouped values (CLS usage) and ranges written with a colon.
		{`verb:(get OR list)`, `(OR verb:"get" verb:"list")`},
		{`verb:(get OR "list") AND NOT objectRef.name:(a* b)`, `(AND (OR verb:"get" verb:phrase"list") (NOT (AND objectRef.name:"a*" objectRef.name:"b")))`},
		{`code:>=400`, `code>=400`},
		{`code:>400 code:<500 code:<=1 code:=3`, `(AND (AND (AND code>400 code<500) code<=1) code=3)`},
		{`objectRef.name:"say \"hi\""`, `objectRef.name:phrase"say \"hi\""`},
		{`a\ b`, `text:"a b"`},
		{`NOT\ x`, `text:"NOT x"`},
		// Ranges, exists, empty.
		{`responseStatus.code>=400`, `responseStatus.code>=400`},
		{`responseStatus.code>400 AND responseStatus.code<500`, `(AND responseStatus.code>400 responseStatus.code<500)`},
		{`x<=1.5`, `x<=1.5`},
		{`x=-3`, `x=-3`},
		{`responseStatus.code:*`, `responseStatus.code:EXISTS`},
		{`objectRef.namespace:""`, `objectRef.namespace:EMPTY`},
		{`annotations.authorization.k8s.io/decision:forbid`, `annotations.authorization.k8s.io/decision:"forbid"`},
		{`auditpipe.principal.type:human`, `auditpipe.principal.type:"human"`},
		{"verb:get\tOR\nverb:list", `(OR verb:"get" verb:"list")`},
	}
	for _, tt := range tests {
		t.Run(tt.q, func(t *testing.T) {
			q, err := Parse(tt.q)
			require.NoError(t, err)
			require.Equal(t, tt.want, show(q.Filter))
			require.Nil(t, q.SQL)
			require.Equal(t, tt.q, q.Text)
		})
	}
}

func TestParseSQL(t *testing.T) {
	tests := []struct {
		q       string
		filter  string
		items   []string // expression (name)
		where   string
		groupBy []string
		having  string
		orderBy []string
		limit   int
	}{
		{
			q:       `* | SELECT histogram(cast(__TIMESTAMP__ as timestamp), interval 1 minute) AS time, COUNT(1) AS qps, userAgent GROUP BY time, userAgent ORDER BY time`,
			filter:  "ALL",
			items:   []string{`histogram(cast([__TIMESTAMP__] as timestamp), interval 1 minute) (time)`, `count(1) (qps)`, `[userAgent] (userAgent)`},
			groupBy: []string{"[time]", "[userAgent]"},
			orderBy: []string{"[time]"},
			limit:   -1,
		},
		{
			q:      `* | SELECT CASE WHEN "responseStatus.code" >= 400 THEN 'error' ELSE 'ok' END AS outcome, count_if(verb = 'delete') AS deletes, CASE verb WHEN 'get' THEN 1 WHEN 'list' THEN 2 END AS v`,
			filter: "ALL",
			items: []string{`(case when ([responseStatus.code] >= 400) then "error" else "ok") (outcome)`, `count_if(([verb] = "delete")) (deletes)`,
				`(case [verb] when "get" then 1 when "list" then 2) (v)`},
			limit: -1,
		},
		{
			q:      `* | SELECT DISTINCT split_part("user.username", ':', 3) AS ns, strpos(userAgent, '/') AS p, approx_percentile("auditpipe.latencyMs", 0.95) AS p95, date_format(from_unixtime(__TIMESTAMP__ / 1000), '%Y-%m-%d %H:%i') AS t, time_series(__TIMESTAMP__, '5m', '%H:%i', '0') AS ts`,
			filter: "ALL",
			items: []string{`split_part([user.username], ":", 3) (ns)`, `strpos([userAgent], "/") (p)`, `approx_percentile([auditpipe.latencyMs], 0.95) (p95)`,
				`date_format(from_unixtime(([__TIMESTAMP__] / 1000)), "%Y-%m-%d %H:%i") (t)`, `time_series([__TIMESTAMP__], "5m", "%H:%i", "0") (ts)`},
			limit: -1,
		},
		{
			q:       `verb:delete | select "user.username" as "user", count(*) deletes group by "user" order by deletes desc, 1 limit 10`,
			filter:  `verb:"delete"`,
			items:   []string{`[user.username] (user)`, `count(*) (deletes)`},
			groupBy: []string{"[user]"},
			orderBy: []string{"[deletes] DESC", "1"},
			limit:   10,
		},
		{
			q:      `| SELECT verb, count(DISTINCT "user.username") WHERE "responseStatus.code" >= 400 AND verb NOT IN ('get', 'list') AND "objectRef.name" LIKE 'nginx%' AND x IS NOT NULL OR NOT y = -1.5 HAVING count(1) > 2`,
			filter: "ALL",
			items:  []string{`[verb] (verb)`, `count(DISTINCT [user.username]) (count(DISTINCT "user.username"))`},
			where:  `((((([responseStatus.code] >= 400) AND ([verb] NOT IN "get", "list")) AND ([objectRef.name] LIKE "nginx%")) AND ([x] IS NOT NULL)) OR (NOT ([y] = (- 1.5))))`,
			having: `(count(1) > 2)`,
			limit:  -1,
		},
		{
			q:      `* | SELECT date_trunc('hour', __TIMESTAMP__) AS h, round(avg("auditpipe.latencyMs"), 2), 'it''s' AS s`,
			filter: "ALL",
			items:  []string{`date_trunc("hour", [__TIMESTAMP__]) (h)`, `round(avg([auditpipe.latencyMs]), 2) (round(avg("auditpipe.latencyMs"), 2))`, `"it's" (s)`},
			limit:  -1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.q, func(t *testing.T) {
			q, err := Parse(tt.q)
			require.NoError(t, err)
			require.Equal(t, tt.filter, show(q.Filter))
			require.NotNil(t, q.SQL)
			var items []string
			for _, it := range q.SQL.Items {
				items = append(items, showSQL(it.Expr)+" ("+it.Name()+")")
			}
			require.Equal(t, tt.items, items)
			if tt.where != "" {
				require.Equal(t, tt.where, showSQL(q.SQL.Where))
			} else {
				require.Nil(t, q.SQL.Where)
			}
			var groups []string
			for _, g := range q.SQL.GroupBy {
				groups = append(groups, showSQL(g))
			}
			require.Equal(t, tt.groupBy, groups)
			if tt.having != "" {
				require.Equal(t, tt.having, showSQL(q.SQL.Having))
			}
			var order []string
			for _, o := range q.SQL.OrderBy {
				s := showSQL(o.Expr)
				if o.Desc {
					s += " DESC"
				}
				order = append(order, s)
			}
			require.Equal(t, tt.orderBy, order)
			require.Equal(t, tt.limit, q.SQL.Limit)
		})
	}
}

// TestParseErrors checks that every error names the right position, with
// the caret under it.
func TestParseErrors(t *testing.T) {
	tests := []struct {
		q    string
		pos  int
		want string // part of the message
	}{
		{`verb:get AND`, 12, "expected a search term"},
		{`verb:`, 5, `expected a value after "verb:"`},
		{`verb: get`, 5, "expected a value"},
		{`(verb:get OR verb:list`, 0, "unbalanced '('"},
		{`verb:get)`, 8, "unbalanced ')'"},
		{`*abc`, 0, "cannot start with *"},
		{`objectRef.name:*nginx`, 15, "cannot start with *"},
		{`objectRef.name:"nginx`, 15, "unterminated quoted phrase"},
		{`code>=abc`, 6, `needs a number, got "abc"`},
		{`code>=`, 6, "expected a number"},
		{`verb:()`, 5, "empty group"},
		{`verb:(get OR list`, 5, "unbalanced '('"},
		{`objectRef.name:ab:*cd`, 15, "cannot start with *"},
		{`objectRef.name:?ab`, 15, "cannot start with *"},
		{`?ab`, 0, "cannot start with *"},
		{`:x`, 0, "expected a field name"},
		{`a AND OR b`, 6, "found operator OR"},
		{`OR a`, 0, "found operator OR"},
		{`obj ref:x`, 4, ""}, // "ref:x" parses; make sure "obj" is fine
		{`bad$field:x`, 0, `character "$" is not allowed`},
		{`a..b:x`, 0, "empty path segment"},
		{`ng*x:y`, 0, "cannot contain *"},
		{`abc\`, 3, "escapes nothing"},
		{`verb:get AND | SELECT count(*)`, 13, "before '|'"},
		{`* | count(*)`, 4, "expected SELECT"},
		{`* | SELECT`, 10, "expected an expression"},
		{`* | SELECT foo(1)`, 11, "unsupported function foo"},
		{`* | SELECT load_extension('x')`, 11, "unsupported function load_extension"},
		{`* | SELECT count(*) FROM events`, 20, "FROM is not needed"},
		{`* | SELECT 1; DROP TABLE events`, 12, "';' is not allowed"},
		{`* | SELECT (SELECT 1)`, 12, "subqueries are not supported"},
		{`* | SELECT * LIMIT 1`, 11, "SELECT * is not supported"},
		{`* | SELECT count(*) LIMIT x`, 26, "LIMIT needs a non-negative integer"},
		{`* | SELECT count(*) LIMIT 5 OFFSET 10`, 28, "unexpected"},
		{`* | SELECT 'abc`, 11, "unterminated string"},
		{`* | SELECT "a`, 11, "unterminated quoted field name"},
		{`* | SELECT cast(x as blob)`, 21, "unsupported CAST type"},
		{`* | SELECT CASE verb END`, 21, "expected WHEN"},
		{`* | SELECT CASE WHEN verb = 'a' 'b' END`, 32, "expected THEN"},
		{`* | SELECT CASE WHEN verb = 'a' THEN 1`, 38, "expected END"},
		{`* | SELECT histogram(__TIMESTAMP__, interval 1 fortnight)`, 47, "expected an interval unit"},
		{`* | SELECT sum(a, b)`, 11, "sum takes 1 argument, got 2"},
		{`* | SELECT count()`, 11, "count needs an argument"},
		{`* | SELECT avg(DISTINCT a)`, 15, "DISTINCT is supported in count"},
		{`* | SELECT a GROUP x`, 19, "expected BY after GROUP"},
		{`* | SELECT a WHERE`, 18, "expected an expression"},
		{`* | SELECT a @ b`, 13, `unexpected character '@'`},
		{`* | SELECT "a b"`, 11, `character " " is not allowed`},
		{`héllo )`, 7, "unbalanced ')'"},
	}
	for _, tt := range tests {
		t.Run(tt.q, func(t *testing.T) {
			_, err := Parse(tt.q)
			if tt.want == "" {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			var pe *Error
			require.True(t, errors.As(err, &pe), "%T %v", err, err)
			require.Equal(t, tt.pos, pe.Pos, "%v", err)
			require.Contains(t, pe.Msg, tt.want)
			// The caret line puts ^ under the byte offset's character.
			lines := strings.Split(err.Error(), "\n")
			require.Len(t, lines, 3)
			require.Equal(t, "position "+strconv.Itoa(tt.pos)+": "+pe.Msg, lines[0])
			col := len([]rune(tt.q[:tt.pos]))
			require.Equal(t, strings.Repeat(" ", 2+col)+"^", lines[2])
		})
	}
}

func TestParseLimits(t *testing.T) {
	_, err := Parse(strings.Repeat("a ", MaxQueryLen))
	require.ErrorContains(t, err, "longer than")

	deep := strings.Repeat("(", 500) + "a" + strings.Repeat(")", 500)
	_, err = Parse(deep)
	require.ErrorContains(t, err, "nests deeper")

	_, err = Parse(strings.Repeat("NOT ", 500) + "a")
	require.ErrorContains(t, err, "nests deeper")

	_, err = Parse("* | SELECT " + strings.Repeat("(", 500) + "1" + strings.Repeat(")", 500))
	require.ErrorContains(t, err, "nests deeper")

	_, err = Parse("verb:a\x00b")
	require.ErrorContains(t, err, "position 6: query contains a NUL")

	_, err = Parse("verb:\xff")
	var pe *Error
	require.ErrorAs(t, err, &pe)
	require.Equal(t, 5, pe.Pos)
	require.Contains(t, pe.Msg, "UTF-8")
}

// FuzzParse checks that the parser never panics or loops, that every error
// is a positioned *Error inside the query, and that parsing is deterministic.
//
//	go test -run '^$' -fuzz FuzzParse -fuzztime 30s ./search/cql/
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		`objectRef.resource:deployments AND objectRef.name:"nginx" AND verb:"delete"`,
		`objectRef.resource:nodes AND requestObject:unschedulable`,
		`* | SELECT histogram(cast(__TIMESTAMP__ as timestamp), interval 1 minute) AS time, COUNT(1) AS qps, userAgent GROUP BY time, userAgent ORDER BY time`,
		`responseStatus.code>=400 OR NOT (verb:get or verb:list) a\:b "x y" ng*x kube*`,
		`verb:delete | SELECT "user.username" AS u, count(*) AS n WHERE x IN ('a', 'b') AND y IS NOT NULL GROUP BY u HAVING n > 1 ORDER BY n DESC LIMIT 10`,
		`key:* AND key:"" AND a.b.c<=-1.5e3`,
		`* | SELECT date_trunc('minute', __TIMESTAMP__), round(avg(x), 2), -x % 3, 'it''s'`,
		`(((a)))`, `"unterminated`, `\`, `|`, `a | `,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		q, err := Parse(s)
		if err != nil {
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("error %T is not *cql.Error: %v", err, err)
			}
			if pe.Pos < 0 || pe.Pos > len(s) {
				t.Fatalf("error position %d outside the query (len %d): %v", pe.Pos, len(s), err)
			}
			_ = err.Error() // renders the caret line without panicking
			_, err2 := Parse(s)
			if err2 == nil || err2.Error() != err.Error() {
				t.Fatalf("not deterministic: %v then %v", err, err2)
			}
			return
		}
		if q.Text != s {
			t.Fatalf("Text %q, want %q", q.Text, s)
		}
		walk(t, q.Filter, len(s))
	})
}

// walk checks invariants of a parsed tree: positions inside the query,
// Parts never empty and never starting with a prefix wildcard.
func walk(t *testing.T, e Expr, n int) {
	if e == nil {
		return
	}
	if e.Pos() < 0 || e.Pos() > n {
		t.Fatalf("node %T at %d outside the query (len %d)", e, e.Pos(), n)
	}
	switch e := e.(type) {
	case *And:
		walk(t, e.L, n)
		walk(t, e.R, n)
	case *Or:
		walk(t, e.L, n)
		walk(t, e.R, n)
	case *Not:
		walk(t, e.X, n)
	case *Term:
		if e.Kind == Match {
			if len(e.Parts) == 0 || len(e.Parts) > 1 && e.Parts[0] == "" {
				t.Fatalf("term %q has bad parts %q", e.Field, e.Parts)
			}
		}
	}
}
