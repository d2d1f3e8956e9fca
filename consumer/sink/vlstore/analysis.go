package vlstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/auditpipe/auditpipe/consumer/internal/flatten"
	"github.com/auditpipe/auditpipe/consumer/search/cql"
	"github.com/auditpipe/auditpipe/consumer/sink/eventstore"
)

// groupCount is an analysis part LogsQL's stats pipe answers exactly:
//
//	SELECT k1 [AS a1], ..., count(*) [AS n], ... GROUP BY k1, ... [ORDER BY ...] [LIMIT n]
//
// Items in any order, each a key or a count:
//   - a key: a text column key (exactFields, where a missing and an empty
//     value are both NULL, as VictoriaLogs, which drops empty values,
//     groups them); responseStatus.code (an integer, 0 and missing NULL,
//     as the SQLite store's column); another JSON path exactKey allows
//     (the SQLite store reads it from the event: "" is not NULL there and
//     a JSON number is a number, which the storage's text cannot tell
//     apart, so a group whose value is missing, empty or a number's text
//     makes the plan give up: errNotExact, the fallback answers); or a
//     time bucket, histogram(__TIMESTAMP__, interval n unit) or
//     date_trunc('unit', __TIMESTAMP__) (optionally cast(... as
//     timestamp)), at most one, NULL for events without stageTimestamp;
//   - count(*), count(literal) or count(key) for a text column key (its
//     non-NULL values), count_if(condition).
//
// GROUP BY names every key item, by name, alias or position, and nothing
// else; ORDER BY names items (keys or counts); HAVING compares counts
// (count(*) or a count item's alias) with numbers, joined by AND and OR
// (planHaving); WHERE and count_if's condition are what sqlCond
// translates. No DISTINCT.
//
// The order is the SQLite store's, ties included: ORDER BY's items, NULLs
// last both ways (the SQLite compiler's NULLS LAST), then the order in
// which SQLite's GROUP BY delivers the groups (tieOrder), because
// SQLite's ORDER BY with a LIMIT (which the SQLite store always has)
// keeps rows of equal keys in the order they came.
type groupCount struct {
	columns []string
	items   []statItem
	order   []orderKey
	// ties is SQLite's group order: the GROUP BY keys, ascending with
	// NULLs first, or each in the direction of the ORDER BY item in the
	// same place when ORDER BY has as many items as GROUP BY (SQLite then
	// sorts the groups that way, hoping to spare the ORDER BY's sort).
	ties []orderKey
	// where is the WHERE condition as a LogsQL filter ("" when none).
	where string
	// having keeps a group (nil: every group); rows is the group's
	// number of events.
	having func(row []any, rows int64) bool
	limit  int
}

type itemKind int

const (
	itemCount      itemKind = iota // count(*)
	itemCountField                 // count(field): the non-NULL values
	itemCountIf                    // count_if(condition): the TRUE ones
	itemText                       // a text column key
	itemCode                       // responseStatus.code
	itemPath                       // another JSON path
	itemBucket                     // a time bucket of stageTimestamp
)

type statItem struct {
	kind  itemKind
	field string
	// cond is count_if's condition, a LogsQL filter (sqlCond).
	cond string
	// per is a bucket's width in milliseconds.
	per int64
}

func (it statItem) key() bool { return it.kind >= itemText }

type orderKey struct {
	item int
	desc bool
}

// errNotExact: the native plan found data it cannot answer exactly (see
// groupCount); the fallback answers instead.
var errNotExact = errors.New("vlstore: the native plan cannot answer this exactly")

// maxBucketMS bounds a bucket's width (the storage computes buckets in
// nanoseconds): 10,000 days.
const maxBucketMS = 10_000 * 86_400_000

// planGroupCount returns the plan for sel, or false when sel is not of
// that form (the fallback answers it).
func planGroupCount(sel *cql.Select) (*groupCount, bool) {
	if sel.Distinct || len(sel.GroupBy) == 0 || sel.Limit > eventstore.MaxLimit {
		return nil, false
	}
	g := &groupCount{limit: eventstore.DefaultLimit}
	if sel.Where != nil {
		t, _, ok := sqlCond(sel.Where)
		if !ok {
			return nil, false
		}
		g.where = t
	}
	if sel.Limit >= 0 {
		g.limit = sel.Limit
	}
	names := map[string]int{} // alias or field name → item
	aliases := map[string]int{}
	buckets := 0
	for i, it := range sel.Items {
		g.columns = append(g.columns, it.Name())
		si, ok := planItem(it.Expr)
		if !ok {
			return nil, false
		}
		if si.kind == itemBucket {
			buckets++
		}
		g.items = append(g.items, si)
		if id, ok := it.Expr.(*cql.Ident); ok && si.key() {
			if _, dup := names[id.Name]; dup {
				return nil, false
			}
			names[id.Name] = i
		}
		if it.Alias != "" {
			if _, dup := names[it.Alias]; dup {
				return nil, false
			}
			names[it.Alias] = i
			aliases[it.Alias] = i
		}
	}
	if buckets > 1 {
		return nil, false
	}
	item := func(e cql.SQLExpr) (int, bool) {
		switch e := e.(type) {
		case *cql.Ident:
			i, ok := names[e.Name]
			return i, ok
		case *cql.NumberLit:
			if e.Int && e.Value >= 1 && int(e.Value) <= len(sel.Items) {
				return int(e.Value) - 1, true
			}
		}
		return 0, false
	}
	grouped := map[int]bool{}
	var groupBy []int
	for _, e := range sel.GroupBy {
		i, ok := item(e)
		if !ok || !g.items[i].key() || grouped[i] {
			return nil, false
		}
		grouped[i] = true
		groupBy = append(groupBy, i)
	}
	for i, it := range g.items {
		if it.key() && !grouped[i] {
			return nil, false
		}
	}
	for _, o := range sel.OrderBy {
		i, ok := item(o.Expr)
		if !ok {
			return nil, false
		}
		g.order = append(g.order, orderKey{i, o.Desc})
	}
	if sel.Having != nil {
		h, ok := planHaving(sel.Having, g.items, aliases)
		if !ok {
			return nil, false
		}
		g.having = h
	}
	for j, i := range groupBy {
		desc := false
		if len(sel.OrderBy) == len(sel.GroupBy) {
			desc = sel.OrderBy[j].Desc
		}
		g.ties = append(g.ties, orderKey{i, desc})
	}
	return g, true
}

// planHaving translates a HAVING condition on counts: comparisons (= !=
// <> < <= > >=) between count(*) or count(literal), an alias of a count
// item (HAVING resolves aliases, as the SQLite compiler does, not field
// names), and number literals, joined by AND and OR. Counts are never
// NULL, so two-valued logic is SQL's here.
func planHaving(e cql.SQLExpr, items []statItem, aliases map[string]int) (func(row []any, rows int64) bool, bool) {
	b, ok := e.(*cql.Binary)
	if !ok {
		return nil, false
	}
	switch b.Op {
	case "AND", "OR":
		l, ok1 := planHaving(b.L, items, aliases)
		r, ok2 := planHaving(b.R, items, aliases)
		if !ok1 || !ok2 {
			return nil, false
		}
		if b.Op == "AND" {
			return func(row []any, n int64) bool { return l(row, n) && r(row, n) }, true
		}
		return func(row []any, n int64) bool { return l(row, n) || r(row, n) }, true
	case "=", "!=", "<>", "<", "<=", ">", ">=":
		l, ok1 := havingOperand(b.L, items, aliases)
		r, ok2 := havingOperand(b.R, items, aliases)
		if !ok1 || !ok2 {
			return nil, false
		}
		op := b.Op
		return func(row []any, n int64) bool {
			c := cmp.Compare(l(row, n), r(row, n))
			switch op {
			case "=":
				return c == 0
			case "!=", "<>":
				return c != 0
			case "<":
				return c < 0
			case "<=":
				return c <= 0
			case ">":
				return c > 0
			}
			return c >= 0
		}, true
	}
	return nil, false
}

// havingOperand is a number of HAVING: a count (as float64: SQLite
// compares integers and reals numerically) or a number literal.
func havingOperand(e cql.SQLExpr, items []statItem, aliases map[string]int) (func(row []any, rows int64) float64, bool) {
	switch e := e.(type) {
	case *cql.NumberLit:
		v := e.Value
		return func([]any, int64) float64 { return v }, true
	case *cql.Call:
		if it, ok := planItem(e); ok && it.kind == itemCount {
			return func(_ []any, n int64) float64 { return float64(n) }, true
		}
	case *cql.Ident:
		if i, ok := aliases[e.Name]; ok && !items[i].key() {
			return func(row []any, _ int64) float64 { return float64(row[i].(int64)) }, true
		}
	}
	return nil, false
}

// planItem classifies one SELECT item.
func planItem(e cql.SQLExpr) (statItem, bool) {
	switch e := e.(type) {
	case *cql.Ident:
		switch {
		case exactFields[e.Name]:
			return statItem{kind: itemText, field: e.Name}, true
		case e.Name == keyCode:
			return statItem{kind: itemCode, field: e.Name}, true
		case exactKey(e.Name):
			return statItem{kind: itemPath, field: e.Name}, true
		}
	case *cql.Call:
		switch {
		case e.Name == "count" && e.Star && !e.Distinct:
			return statItem{kind: itemCount}, true
		case e.Name == "count" && !e.Distinct && len(e.Args) == 1:
			switch a := e.Args[0].(type) {
			case *cql.NumberLit, *cql.StringLit, *cql.BoolLit:
				return statItem{kind: itemCount}, true // never NULL: every row
			case *cql.Ident:
				if exactFields[a.Name] {
					return statItem{kind: itemCountField, field: a.Name}, true
				}
			}
		case e.Name == "count_if" && !e.Distinct && len(e.Args) == 1:
			if t, _, ok := sqlCond(e.Args[0]); ok {
				return statItem{kind: itemCountIf, cond: t}, true
			}
		case e.Name == "histogram" && len(e.Args) == 2:
			iv, ok := e.Args[1].(*cql.Interval)
			if ok && isTimestamp(e.Args[0]) {
				return bucketItem(iv.N * intervalMS[iv.Unit])
			}
		case e.Name == "date_trunc" && len(e.Args) == 2:
			unit, ok := e.Args[0].(*cql.StringLit)
			if ok && isTimestamp(e.Args[1]) {
				return bucketItem(intervalMS[strings.ToLower(strings.TrimSpace(unit.Value))])
			}
		}
	}
	return statItem{}, false
}

// intervalMS are the SQLite compiler's interval units.
var intervalMS = map[string]int64{"second": 1000, "minute": 60_000, "hour": 3_600_000, "day": 86_400_000}

func bucketItem(per int64) (statItem, bool) {
	if per <= 0 || per > maxBucketMS || per%1000 != 0 {
		return statItem{}, false
	}
	return statItem{kind: itemBucket, per: per}, true
}

// isTimestamp: __TIMESTAMP__ (any case, as the SQLite compiler takes it),
// or cast(__TIMESTAMP__ as timestamp), which the SQLite compiler reads as
// the same milliseconds in a time function.
func isTimestamp(e cql.SQLExpr) bool {
	if c, ok := e.(*cql.Cast); ok && c.Type == "timestamp" {
		e = c.X
	}
	id, ok := e.(*cql.Ident)
	return ok && strings.EqualFold(id.Name, "__TIMESTAMP__")
}

// run answers the plan over the events filter selects (filters, ANDed;
// timed: they bound the time, so every event has a stageTimestamp).
func (g *groupCount) run(ctx context.Context, s *Store, filters []string, timed bool) (eventstore.SearchResult, error) {
	if g.where != "" {
		filters = append(slices.Clip(filters), g.where)
	}
	groups := map[string][]any{}
	var rows [][]any
	add := func(row []any) {
		var b strings.Builder
		for i, it := range g.items {
			if it.key() {
				fmt.Fprintf(&b, "%T:%q,", row[i], fmt.Sprint(row[i]))
			}
		}
		k := b.String()
		if prev, ok := groups[k]; ok {
			// Two storage groups that are one SQLite group
			// (responseStatus.code 0 and missing): add the counts (and
			// the events, the last element).
			for i := range row {
				if i == len(g.items) || !g.items[i].key() {
					prev[i] = prev[i].(int64) + row[i].(int64)
				}
			}
			return
		}
		groups[k] = row
		rows = append(rows, row)
	}
	bucketed := slices.ContainsFunc(g.items, func(it statItem) bool { return it.kind == itemBucket })
	withTS := filters
	if bucketed && !timed {
		withTS = append(slices.Clip(filters), strconv.Quote(keyStageTS)+":*")
	}
	if err := g.stats(ctx, s, joinFilters(withTS), true, add); err != nil {
		return eventstore.SearchResult{}, err
	}
	if bucketed && !timed {
		// Events without stageTimestamp: the bucket is NULL.
		without := joinFilters(append(slices.Clip(filters), "-"+strconv.Quote(keyStageTS)+":*"))
		if err := checkNoTimestamp(ctx, s, without); err != nil {
			return eventstore.SearchResult{}, err
		}
		if err := g.stats(ctx, s, without, false, add); err != nil {
			return eventstore.SearchResult{}, err
		}
	}
	if g.having != nil {
		rows = slices.DeleteFunc(rows, func(r []any) bool { return !g.having(r, r[len(g.items)].(int64)) })
	}
	slices.SortFunc(rows, func(a, b []any) int {
		for _, o := range g.order {
			if c := compareValues(a[o.item], b[o.item], o.desc); c != 0 {
				return c
			}
		}
		for _, o := range g.ties {
			if c := compareGroups(a[o.item], b[o.item], o.desc); c != 0 {
				return c
			}
		}
		return 0
	})
	rows = rows[:min(len(rows), g.limit)]
	out := make([][]any, len(rows))
	for i, r := range rows {
		out[i] = r[:len(g.items)]
	}
	rows = out
	return eventstore.SearchResult{Columns: g.columns, Rows: rows, Total: len(rows)}, nil
}

// maxNoTimestamp is the most events without a stageTimestamp field that
// checkNoTimestamp reads.
const maxNoTimestamp = 10_000

// checkNoTimestamp returns errNotExact unless every event filter selects
// (events without a stageTimestamp field) has no time for SQLite either:
// the field absent or the zero time. An event whose stageTimestamp the
// storage could not keep as _time (decades old, days ahead: write.go's
// storableTime) has none here and a time bucket in SQLite. Such events
// are rare; past maxNoTimestamp of them the check gives up
// (errNotExact) rather than read them all.
func checkNoTimestamp(ctx context.Context, s *Store, filter string) error {
	evs, err := s.fetch(ctx, filter+" | limit "+strconv.Itoa(maxNoTimestamp+1), nil)
	if err != nil {
		return err
	}
	if len(evs) > maxNoTimestamp {
		return errNotExact
	}
	for i := range evs {
		msg, err := s.event(&evs[i])
		if err != nil {
			return err
		}
		v, kind, found := flatten.Lookup([]byte(msg), keyStageTS)
		if !found || kind != flatten.String {
			continue
		}
		if t, err := time.Parse(time.RFC3339, v); err != nil || !t.IsZero() {
			return errNotExact // a time in SQLite, or an event it refuses
		}
	}
	return nil
}

// stats runs one stats query and passes each group's row (the items'
// values as the SQLite store gives them) to add. bucketed: the time
// bucket is the storage's _time bucket; otherwise it is NULL.
func (g *groupCount) stats(ctx context.Context, s *Store, filter string, bucketed bool, add func([]any)) error {
	var by, aggs, names []string
	for i, it := range g.items {
		name := "auditpipe_" + strconv.Itoa(i)
		switch it.kind {
		case itemCount:
			aggs = append(aggs, "count() as "+name)
		case itemCountField:
			aggs = append(aggs, "count("+strconv.Quote(it.field)+") as "+name)
		case itemCountIf:
			aggs = append(aggs, "count() if ("+it.cond+") as "+name)
		case itemBucket:
			if !bucketed {
				name = ""
				break
			}
			by = append(by, "_time:"+strconv.FormatInt(it.per/1000, 10)+"s")
			name = "_time"
		default:
			by = append(by, strconv.Quote(it.field))
			name = it.field
		}
		names = append(names, name)
	}
	// The rows of the group: a stats without keys over no events gives
	// one row of zeros, where SQLite gives no group.
	aggs = append(aggs, "count() as auditpipe_rows")
	names = append(names, "auditpipe_rows")
	q := filter + " | stats"
	if len(by) > 0 {
		q += " by (" + strings.Join(by, ", ") + ")"
	}
	q += " " + strings.Join(aggs, ", ")
	var perr error
	err := s.runRows(ctx, q, names, func(vals []string) {
		if vals[len(vals)-1] == "0" || perr != nil {
			return
		}
		row := make([]any, len(g.items)+1)
		for i, it := range g.items {
			var err error
			if row[i], err = it.value(vals[i], names[i] != ""); err != nil {
				perr = err
				return
			}
		}
		n, err := strconv.ParseInt(vals[len(vals)-1], 10, 64)
		if err != nil {
			perr = fmt.Errorf("count %q is not a number", vals[len(vals)-1])
			return
		}
		row[len(g.items)] = n
		add(row)
	})
	if err == nil {
		err = perr
	}
	return err
}

// jsonNumber is the text of a JSON number (RFC 8259), as flatten passes
// a number's value.
var jsonNumber = regexp.MustCompile(`^-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?$`)

// value is the SQLite store's value of the item for the storage's text v
// (has: the query returned the column).
func (it statItem) value(v string, has bool) (any, error) {
	switch it.kind {
	case itemCount, itemCountField, itemCountIf:
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("count %q is not a number", v)
		}
		return n, nil
	case itemBucket:
		if !has {
			return nil, nil
		}
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return nil, fmt.Errorf("time bucket %q: %w", v, err)
		}
		return t.UTC().Format(time.DateTime), nil
	case itemCode:
		if v == "" {
			return nil, nil
		}
		n, err := strconv.ParseInt(v, 10, 32)
		if err != nil {
			return nil, errNotExact // an event the SQLite store refuses
		}
		if n == 0 {
			return nil, nil
		}
		return n, nil
	case itemPath:
		if v == "" || jsonNumber.MatchString(v) {
			return nil, errNotExact
		}
		return v, nil
	}
	if v == "" {
		return nil, nil
	}
	return v, nil
}

// compareValues orders two values of a column as the SQLite store's
// ORDER BY does: NULLs last both ways, strings bytewise (SQLite's BINARY
// collation), numbers numerically.
func compareValues(a, b any, desc bool) int {
	switch {
	case a == nil && b == nil:
		return 0
	case a == nil:
		return 1
	case b == nil:
		return -1
	}
	c := compareNonNull(a, b)
	if desc {
		c = -c
	}
	return c
}

// compareGroups orders two values of a GROUP BY key as SQLite sorts the
// groups: NULL is the smallest value (first ascending, last descending).
func compareGroups(a, b any, desc bool) int {
	var c int
	switch {
	case a == nil && b == nil:
		return 0
	case a == nil:
		c = -1
	case b == nil:
		c = 1
	default:
		c = compareNonNull(a, b)
	}
	if desc {
		c = -c
	}
	return c
}

func compareNonNull(a, b any) int {
	switch a := a.(type) {
	case int64:
		return cmp.Compare(a, b.(int64))
	case string:
		return strings.Compare(a, b.(string))
	}
	return 0
}
