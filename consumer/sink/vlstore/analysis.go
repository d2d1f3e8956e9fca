package vlstore

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/auditpipe/auditpipe/consumer/search/cql"
	"github.com/auditpipe/auditpipe/consumer/sink/eventstore"
)

// groupCount is an analysis part LogsQL's stats pipe answers exactly:
//
//	SELECT k1 [AS a1], ..., count(*) [AS n] GROUP BY k1, ... ORDER BY ... [LIMIT n]
//
// with keys among exactFields (the SQLite store's text columns, where a
// missing and an empty value are both NULL, as VictoriaLogs, which drops
// empty values, groups them), items in any order, GROUP BY naming every
// key item (by name or alias), and an ORDER BY that names every key
// (ascending or descending, NULLs last both ways as the SQLite compiler
// says), so that the order is total and SQLite's tie order never shows.
// No DISTINCT, WHERE or HAVING.
type groupCount struct {
	columns []string
	// keys are the field of each item, "" for the count.
	keys []string
	// order: item index and direction.
	order []struct {
		item int
		desc bool
	}
	limit int
}

// planGroupCount returns the plan for sel, or false when sel is not of
// that form (the fallback answers it).
func planGroupCount(sel *cql.Select) (*groupCount, bool) {
	if sel.Distinct || sel.Where != nil || sel.Having != nil || len(sel.GroupBy) == 0 || sel.Limit > eventstore.MaxLimit {
		return nil, false
	}
	g := &groupCount{limit: eventstore.DefaultLimit}
	if sel.Limit >= 0 {
		g.limit = sel.Limit
	}
	names := map[string]int{} // alias or field name → item
	counts := 0
	for i, it := range sel.Items {
		g.columns = append(g.columns, it.Name())
		switch e := it.Expr.(type) {
		case *cql.Ident:
			if !exactFields[e.Name] {
				return nil, false
			}
			g.keys = append(g.keys, e.Name)
			names[e.Name] = i
		case *cql.Call:
			if e.Name != "count" || !e.Star || e.Distinct || len(e.Args) > 0 {
				return nil, false
			}
			g.keys = append(g.keys, "")
			counts++
		default:
			return nil, false
		}
		if it.Alias != "" {
			if _, dup := names[it.Alias]; dup {
				return nil, false
			}
			names[it.Alias] = i
		}
	}
	if counts != 1 {
		return nil, false
	}
	item := func(e cql.SQLExpr) (int, bool) {
		id, ok := e.(*cql.Ident)
		if !ok {
			return 0, false
		}
		i, ok := names[id.Name]
		return i, ok
	}
	grouped := map[int]bool{}
	for _, e := range sel.GroupBy {
		i, ok := item(e)
		if !ok || g.keys[i] == "" {
			return nil, false
		}
		grouped[i] = true
	}
	ordered := map[int]bool{}
	for _, o := range sel.OrderBy {
		i, ok := item(o.Expr)
		if !ok {
			return nil, false
		}
		ordered[i] = true
		g.order = append(g.order, struct {
			item int
			desc bool
		}{i, o.Desc})
	}
	for i, k := range g.keys {
		if k != "" && (!grouped[i] || !ordered[i]) {
			return nil, false
		}
	}
	return g, true
}

// run answers the plan over the events filter selects.
func (g *groupCount) run(ctx context.Context, s *Store, filter string) (eventstore.SearchResult, error) {
	var by []string
	for _, k := range g.keys {
		if k != "" {
			by = append(by, strconv.Quote(k))
		}
	}
	names := make([]string, 0, len(g.keys))
	for _, k := range g.keys {
		if k == "" {
			names = append(names, "auditpipe_count")
		} else {
			names = append(names, k)
		}
	}
	rows := [][]any{}
	var perr error
	q := filter + " | stats by (" + strings.Join(by, ", ") + ") count() as auditpipe_count"
	err := s.runRows(ctx, q, names, func(vals []string) {
		row := make([]any, len(vals))
		for i, v := range vals {
			switch {
			case g.keys[i] == "":
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					perr = fmt.Errorf("count %q is not a number", v)
				}
				row[i] = n
			case v != "":
				row[i] = v
			}
		}
		rows = append(rows, row)
	})
	if err == nil {
		err = perr
	}
	if err != nil {
		return eventstore.SearchResult{}, err
	}
	slices.SortFunc(rows, func(a, b []any) int {
		for _, o := range g.order {
			if c := compareValues(a[o.item], b[o.item], o.desc); c != 0 {
				return c
			}
		}
		return 0
	})
	rows = rows[:min(len(rows), g.limit)]
	return eventstore.SearchResult{Columns: g.columns, Rows: rows, Total: len(rows)}, nil
}

// compareValues orders two values of a column: NULLs last both ways,
// strings bytewise (SQLite's BINARY collation), counts numerically.
func compareValues(a, b any, desc bool) int {
	switch {
	case a == nil && b == nil:
		return 0
	case a == nil:
		return 1
	case b == nil:
		return -1
	}
	var c int
	switch a := a.(type) {
	case int64:
		c = cmp.Compare(a, b.(int64))
	case string:
		c = strings.Compare(a, b.(string))
	}
	if desc {
		c = -c
	}
	return c
}
