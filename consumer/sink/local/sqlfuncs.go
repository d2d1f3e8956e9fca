package local

import (
	"database/sql/driver"
	"fmt"
	"math"
	"slices"
	"strings"

	"modernc.org/sqlite"
)

// Go implementations of CLS's SQL functions that SQLite lacks.
const (
	// percentileFunc(x, p) is approx_percentile: the exact nearest-rank
	// percentile (the smallest value with at least p of the values at or
	// below it), where CLS's engine estimates with a sketch.
	percentileFunc = "auditpipe_percentile"
	// splitPartFunc(s, delim, n) is Presto's split_part: the n-th (from 1)
	// field of s split at delim, NULL past the last.
	splitPartFunc = "auditpipe_split_part"
)

func registerSQLFunctions() error {
	if err := sqlite.RegisterFunction(percentileFunc, &sqlite.FunctionImpl{
		NArgs:         2,
		Deterministic: true,
		MakeAggregate: func(sqlite.FunctionContext) (sqlite.AggregateFunction, error) {
			return &percentile{}, nil
		},
	}); err != nil {
		return err
	}
	return sqlite.RegisterDeterministicScalarFunction(splitPartFunc, 3, sqlSplitPart)
}

type percentile struct {
	values []float64
	p      float64
	bad    error
}

func (a *percentile) Step(_ *sqlite.FunctionContext, args []driver.Value) error {
	p, ok := number(args[1])
	if !ok || p < 0 || p > 1 {
		a.bad = fmt.Errorf("approx_percentile's percentage must be a number from 0 to 1")
		return a.bad
	}
	a.p = p
	if v, ok := number(args[0]); ok {
		a.values = append(a.values, v)
	}
	return nil
}

func (a *percentile) WindowInverse(*sqlite.FunctionContext, []driver.Value) error {
	return fmt.Errorf("approx_percentile is not a window function")
}

func (a *percentile) Final(*sqlite.FunctionContext) {}

// WindowValue returns the aggregate's value (the driver calls it for plain
// aggregates too).
func (a *percentile) WindowValue(*sqlite.FunctionContext) (driver.Value, error) {
	if a.bad != nil {
		return nil, a.bad
	}
	if len(a.values) == 0 {
		return nil, nil
	}
	slices.Sort(a.values)
	i := int(math.Ceil(a.p*float64(len(a.values)))) - 1
	return a.values[max(i, 0)], nil
}

func number(v driver.Value) (float64, bool) {
	switch v := v.(type) {
	case int64:
		return float64(v), true
	case float64:
		return v, true
	}
	return 0, false
}

func sqlSplitPart(_ *sqlite.FunctionContext, args []driver.Value) (driver.Value, error) {
	s, ok := textArg(args[0])
	d, ok2 := textArg(args[1])
	n, ok3 := args[2].(int64)
	if !ok || !ok2 || !ok3 || d == "" || n < 1 {
		return nil, nil
	}
	parts := strings.Split(s, d)
	if n > int64(len(parts)) {
		return nil, nil
	}
	return parts[n-1], nil
}
