package detect

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"

	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/common/types/traits"
)

// Request and response bodies reach CEL as lazy values: an object or an
// array is the bytes the apiserver sent, expanded one level only when a
// rule looks inside, and at most once per event. Decoding a 10 KB pod body
// into map[string]any costs more than the rest of the processor does per
// event; a rule that asks for spec.hostNetwork only scans the bytes on its
// path.
//
// The bytes were validated as JSON when the event was decoded, so the
// scanner below only finds the ends of values. It never reads out of
// bounds and reports malformed input as an error (the rule then does not
// match and the error is counted).

var errMalformed = errors.New("malformed JSON body")

// lazyValue turns the JSON value b into what CEL sees: scalars are
// decoded, objects and arrays stay lazy.
func lazyValue(b []byte) (any, error) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return nil, errMalformed
	}
	switch b[0] {
	case '{':
		return &lazyObject{raw: b}, nil
	case '[':
		return &lazyList{raw: b}, nil
	case '"':
		return unquote(b)
	case 't':
		return true, nil
	case 'f':
		return false, nil
	case 'n':
		return nil, nil
	}
	if i, err := strconv.ParseInt(string(b), 10, 64); err == nil {
		return i, nil
	}
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		return nil, fmt.Errorf("%w: number %q", errMalformed, b)
	}
	return f, nil
}

func unquote(b []byte) (string, error) {
	if len(b) < 2 {
		return "", errMalformed
	}
	if bytes.IndexByte(b, '\\') < 0 {
		return string(b[1 : len(b)-1]), nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return "", fmt.Errorf("%w: %v", errMalformed, err)
	}
	return s, nil
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\n' || b[i] == '\r' || b[i] == '\t') {
		i++
	}
	return i
}

// skipString returns the index after the string that starts at b[i] ('"').
func skipString(b []byte, i int) (int, error) {
	i++
	for {
		j := bytes.IndexByte(b[i:], '"')
		if j < 0 {
			return 0, errMalformed
		}
		i += j
		// An odd number of backslashes before the quote escapes it.
		n := 0
		for k := i - 1; k >= 0 && b[k] == '\\'; k-- {
			n++
		}
		i++
		if n%2 == 0 {
			return i, nil
		}
	}
}

// skipValue returns the index after the value that starts at b[i].
func skipValue(b []byte, i int) (int, error) {
	if i >= len(b) {
		return 0, errMalformed
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				end, err := skipString(b, i)
				if err != nil {
					return 0, err
				}
				i = end
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1, nil
				}
			}
			i++
		}
		return 0, errMalformed
	}
	start := i
	for i < len(b) {
		switch b[i] {
		case ',', '}', ']', ' ', '\n', '\r', '\t':
			if i == start {
				return 0, errMalformed
			}
			return i, nil
		}
		i++
	}
	if i == start {
		return 0, errMalformed
	}
	return i, nil
}

// eachMember calls fn with the raw key and value of each member of the
// object b.
func eachMember(b []byte, fn func(key, value []byte) error) error {
	i := skipWS(b, 0)
	if i >= len(b) || b[i] != '{' {
		return errMalformed
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		return nil
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return errMalformed
		}
		kend, err := skipString(b, i)
		if err != nil {
			return err
		}
		key := b[i:kend]
		i = skipWS(b, kend)
		if i >= len(b) || b[i] != ':' {
			return errMalformed
		}
		i = skipWS(b, i+1)
		vend, err := skipValue(b, i)
		if err != nil {
			return err
		}
		if err := fn(key, b[i:vend]); err != nil {
			return err
		}
		i = skipWS(b, vend)
		if i >= len(b) {
			return errMalformed
		}
		if b[i] == '}' {
			return nil
		}
		if b[i] != ',' {
			return errMalformed
		}
		i = skipWS(b, i+1)
	}
}

// eachElement calls fn with each raw element of the array b.
func eachElement(b []byte, fn func(value []byte) error) error {
	i := skipWS(b, 0)
	if i >= len(b) || b[i] != '[' {
		return errMalformed
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == ']' {
		return nil
	}
	for {
		end, err := skipValue(b, i)
		if err != nil {
			return err
		}
		if err := fn(b[i:end]); err != nil {
			return err
		}
		i = skipWS(b, end)
		if i >= len(b) {
			return errMalformed
		}
		if b[i] == ']' {
			return nil
		}
		if b[i] != ',' {
			return errMalformed
		}
		i = skipWS(b, i+1)
	}
}

// lazyObject is a JSON object seen by CEL as a map(string, dyn).
type lazyObject struct {
	raw    []byte
	fields map[string]any
	m      traits.Mapper
	err    error
}

var (
	_ traits.Mapper = (*lazyObject)(nil)
	_ traits.Lister = (*lazyList)(nil)
)

// emptyObject stands for an absent body, so that rules can select into
// it without guarding against null.
func emptyObject() *lazyObject {
	o := &lazyObject{fields: map[string]any{}}
	o.m = types.NewStringInterfaceMap(types.DefaultTypeAdapter, o.fields)
	return o
}

func (o *lazyObject) expand() (traits.Mapper, error) {
	if o.m != nil || o.err != nil {
		return o.m, o.err
	}
	fields := make(map[string]any, 8)
	err := eachMember(o.raw, func(k, v []byte) error {
		key, err := unquote(k)
		if err != nil {
			return err
		}
		val, err := lazyValue(v)
		if err != nil {
			return err
		}
		fields[key] = val // the last one wins, as in encoding/json
		return nil
	})
	if err != nil {
		o.err = err
		return nil, err
	}
	o.fields = fields
	o.m = types.NewStringInterfaceMap(types.DefaultTypeAdapter, fields)
	return o.m, nil
}

func (o *lazyObject) ConvertToNative(t reflect.Type) (any, error) {
	m, err := o.expand()
	if err != nil {
		return nil, err
	}
	return m.ConvertToNative(t)
}

func (o *lazyObject) ConvertToType(t ref.Type) ref.Val {
	if t == types.TypeType {
		return types.MapType
	}
	m, err := o.expand()
	if err != nil {
		return types.WrapErr(err)
	}
	return m.ConvertToType(t)
}

func (o *lazyObject) Equal(other ref.Val) ref.Val {
	m, err := o.expand()
	if err != nil {
		return types.WrapErr(err)
	}
	return m.Equal(other)
}

func (o *lazyObject) Type() ref.Type { return types.MapType }

func (o *lazyObject) Value() any {
	m, err := o.expand()
	if err != nil {
		return nil
	}
	return m.Value()
}

func (o *lazyObject) Contains(v ref.Val) ref.Val {
	m, err := o.expand()
	if err != nil {
		return types.WrapErr(err)
	}
	return m.Contains(v)
}

func (o *lazyObject) Get(k ref.Val) ref.Val {
	m, err := o.expand()
	if err != nil {
		return types.WrapErr(err)
	}
	return m.Get(k)
}

func (o *lazyObject) Iterator() traits.Iterator {
	m, err := o.expand()
	if err != nil {
		return types.NewStringList(types.DefaultTypeAdapter, nil).Iterator()
	}
	return m.Iterator()
}

func (o *lazyObject) Size() ref.Val {
	m, err := o.expand()
	if err != nil {
		return types.WrapErr(err)
	}
	return m.Size()
}

func (o *lazyObject) Find(k ref.Val) (ref.Val, bool) {
	m, err := o.expand()
	if err != nil {
		return types.WrapErr(err), false
	}
	return m.Find(k)
}

// lazyList is a JSON array seen by CEL as a list(dyn).
type lazyList struct {
	raw   []byte
	items []any
	l     traits.Lister
	err   error
}

func (a *lazyList) expand() (traits.Lister, error) {
	if a.l != nil || a.err != nil {
		return a.l, a.err
	}
	var items []any
	err := eachElement(a.raw, func(v []byte) error {
		val, err := lazyValue(v)
		if err != nil {
			return err
		}
		items = append(items, val)
		return nil
	})
	if err != nil {
		a.err = err
		return nil, err
	}
	a.items = items
	a.l = types.NewDynamicList(types.DefaultTypeAdapter, items)
	return a.l, nil
}

func (a *lazyList) ConvertToNative(t reflect.Type) (any, error) {
	l, err := a.expand()
	if err != nil {
		return nil, err
	}
	return l.ConvertToNative(t)
}

func (a *lazyList) ConvertToType(t ref.Type) ref.Val {
	if t == types.TypeType {
		return types.ListType
	}
	l, err := a.expand()
	if err != nil {
		return types.WrapErr(err)
	}
	return l.ConvertToType(t)
}

func (a *lazyList) Equal(other ref.Val) ref.Val {
	l, err := a.expand()
	if err != nil {
		return types.WrapErr(err)
	}
	return l.Equal(other)
}

func (a *lazyList) Type() ref.Type { return types.ListType }

func (a *lazyList) Value() any {
	l, err := a.expand()
	if err != nil {
		return nil
	}
	return l.Value()
}

func (a *lazyList) Add(other ref.Val) ref.Val {
	l, err := a.expand()
	if err != nil {
		return types.WrapErr(err)
	}
	return l.Add(other)
}

func (a *lazyList) Contains(v ref.Val) ref.Val {
	l, err := a.expand()
	if err != nil {
		return types.WrapErr(err)
	}
	return l.Contains(v)
}

func (a *lazyList) Get(i ref.Val) ref.Val {
	l, err := a.expand()
	if err != nil {
		return types.WrapErr(err)
	}
	return l.Get(i)
}

func (a *lazyList) Iterator() traits.Iterator {
	l, err := a.expand()
	if err != nil {
		return types.NewStringList(types.DefaultTypeAdapter, nil).Iterator()
	}
	return l.Iterator()
}

func (a *lazyList) Size() ref.Val {
	l, err := a.expand()
	if err != nil {
		return types.WrapErr(err)
	}
	return l.Size()
}
