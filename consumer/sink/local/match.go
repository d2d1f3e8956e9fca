package local

import (
	"database/sql/driver"
	"strconv"
	"strings"
	"sync"

	"modernc.org/sqlite"

	"github.com/auditpipe/auditpipe/consumer/internal/flatten"
	"github.com/auditpipe/auditpipe/consumer/search/cql"
	"github.com/auditpipe/auditpipe/schemas"
)

// The SQL functions the compiled queries call. They implement CLS's
// matching rules (cql.Pattern) and read fields by their CLS key names
// (flatten.Lookup), so that the store and the CLS sink agree by
// construction.
const (
	// matchFunc(value, pattern, phrase) is 1 when value's words match.
	matchFunc = "auditpipe_match"
	// kvFunc(event, key, pattern, phrase) is 1 when the event's field key
	// is present and its words match.
	kvFunc = "auditpipe_kv"
	// textFunc(event, pattern, phrase) is 1 when one of the event's values
	// (not auditpipe's own fields) matches: CLS's full-text search.
	textFunc = "auditpipe_text"
	// fieldFunc(event, key) is the field's value as CLS receives it: text,
	// an integer or a real for JSON numbers; NULL when it was not sent.
	fieldFunc = "auditpipe_field"
	// numberFunc(event, key) is the field's value as a number when its
	// text is one (CLS parses long/double keys from text), else NULL.
	numberFunc = "auditpipe_number"
)

// registerFunctions registers the functions with the SQLite driver.
// modernc.org/sqlite only registers functions driver-wide (for every
// connection opened afterwards, process-wide), so this runs once per process;
// a package-level Once is the one piece of global state that the driver's own
// design forces on us. Open calls it before opening any connection.
var registerFunctions = sync.OnceValue(func() error {
	patterns := &patternCache{m: map[patternKey]cql.Pattern{}}
	scalar := map[string]struct {
		n int32
		f func(*sqlite.FunctionContext, []driver.Value) (driver.Value, error)
	}{
		matchFunc:  {3, patterns.sqlMatch},
		kvFunc:     {4, patterns.sqlKV},
		textFunc:   {3, patterns.sqlText},
		fieldFunc:  {2, sqlField},
		numberFunc: {2, sqlNumber},
	}
	for name, fn := range scalar {
		if err := sqlite.RegisterDeterministicScalarFunction(name, fn.n, fn.f); err != nil {
			return err
		}
	}
	return registerSQLFunctions()
})

type patternKey struct {
	pattern string
	phrase  bool
}

// patternCache keeps compiled patterns: a query calls the functions once
// per row with the same pattern. Bounded, since patterns come from users.
type patternCache struct {
	mu sync.Mutex
	m  map[patternKey]cql.Pattern
}

func (c *patternCache) get(pattern string, phrase bool) cql.Pattern {
	k := patternKey{pattern, phrase}
	c.mu.Lock()
	defer c.mu.Unlock()
	if p, ok := c.m[k]; ok {
		return p
	}
	if len(c.m) > 1000 {
		clear(c.m)
	}
	p := cql.CompilePattern(pattern, phrase)
	c.m[k] = p
	return p
}

func textArg(v driver.Value) (string, bool) {
	switch v := v.(type) {
	case string:
		return v, true
	case []byte:
		return string(v), true
	case int64:
		return strconv.FormatInt(v, 10), true
	case float64:
		return strconv.FormatFloat(v, 'g', -1, 64), true
	}
	return "", false
}

func boolResult(b bool) driver.Value {
	if b {
		return int64(1)
	}
	return int64(0)
}

func (c *patternCache) pattern(args []driver.Value) cql.Pattern {
	p, _ := args[0].(string)
	phrase, _ := args[1].(int64)
	return c.get(p, phrase != 0)
}

func (c *patternCache) sqlMatch(_ *sqlite.FunctionContext, args []driver.Value) (driver.Value, error) {
	v, ok := textArg(args[0])
	if !ok {
		return int64(0), nil
	}
	return boolResult(c.pattern(args[1:]).Match(cql.Words(v))), nil
}

func (c *patternCache) sqlKV(_ *sqlite.FunctionContext, args []driver.Value) (driver.Value, error) {
	ev, _ := textArg(args[0])
	key, _ := args[1].(string)
	v, _, found := flatten.Lookup([]byte(ev), key)
	if !found {
		return int64(0), nil
	}
	return boolResult(c.pattern(args[2:]).Match(cql.Words(v))), nil
}

func (c *patternCache) sqlText(_ *sqlite.FunctionContext, args []driver.Value) (driver.Value, error) {
	ev, _ := textArg(args[0])
	p := c.pattern(args[1:])
	matched := false
	var words []string
	_ = flatten.WalkCompact([]byte(ev), func(key, v string, _ flatten.Kind) error {
		if ownField(key) {
			return nil
		}
		words = cql.AppendWords(words[:0], v)
		if p.Match(words) {
			matched = true
			return errStop
		}
		return nil
	})
	return boolResult(matched), nil
}

func sqlField(_ *sqlite.FunctionContext, args []driver.Value) (driver.Value, error) {
	ev, _ := textArg(args[0])
	key, _ := args[1].(string)
	v, kind, found := flatten.Lookup([]byte(ev), key)
	if !found {
		return nil, nil
	}
	if kind == flatten.Number {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			return n, nil
		}
		if f, err := strconv.ParseFloat(v, 64); err == nil {
			return f, nil
		}
	}
	return v, nil
}

func sqlNumber(_ *sqlite.FunctionContext, args []driver.Value) (driver.Value, error) {
	ev, _ := textArg(args[0])
	key, _ := args[1].(string)
	v, _, found := flatten.Lookup([]byte(ev), key)
	if !found {
		return nil, nil
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
	if err != nil {
		return nil, nil
	}
	return f, nil
}

type stopError struct{}

func (stopError) Error() string { return "stop" }

var errStop error = stopError{}

// ownField reports whether key is one of the fields auditpipe adds: they
// are searchable by key (auditpipe.source:webhook) but not by full text,
// which sees the event as the apiserver sent it.
func ownField(key string) bool {
	return strings.HasPrefix(key, schemas.PipelineKey+".") || key == schemas.PipelineKey
}
