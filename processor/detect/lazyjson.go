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

// skipString returns the index after the string that starts at b[i]
// ('"'). A byte loop beats bytes.IndexByte on the short strings (keys,
// names) that make up most of a Kubernetes object.
func skipString(b []byte, i int) (int, error) {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '"':
			return i + 1, nil
		case '\\':
			i++ // the escaped byte cannot end the string
		}
	}
	return 0, errMalformed
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
		for ; i < len(b); i++ {
			switch b[i] {
			case '"':
				for i++; i < len(b) && b[i] != '"'; i++ {
					if b[i] == '\\' {
						i++
					}
				}
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1, nil
				}
			}
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
// object that starts at b[i], and returns the index after the object. fn
// returning errStop ends the scan early (the index is then 0).
func eachMember(b []byte, i int, fn func(key, value []byte) error) (int, error) {
	i = skipWS(b, i)
	if i >= len(b) || b[i] != '{' {
		return 0, errMalformed
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		return i + 1, nil
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return 0, errMalformed
		}
		kend, err := skipString(b, i)
		if err != nil {
			return 0, err
		}
		key := b[i:kend]
		i = skipWS(b, kend)
		if i >= len(b) || b[i] != ':' {
			return 0, errMalformed
		}
		i = skipWS(b, i+1)
		vend, err := skipValue(b, i)
		if err != nil {
			return 0, err
		}
		if err := fn(key, b[i:vend]); err != nil {
			return 0, err
		}
		i = skipWS(b, vend)
		if i >= len(b) {
			return 0, errMalformed
		}
		if b[i] == '}' {
			return i + 1, nil
		}
		if b[i] != ',' {
			return 0, errMalformed
		}
		i = skipWS(b, i+1)
	}
}

// errStop ends a member scan early.
var errStop = errors.New("stop")

// eachElement calls fn with each element of the array b. Objects are
// scanned member by member in the same pass and handed over expanded, so
// an array of objects (containers, rules, volumes) costs one pass, not
// two.
func eachElement(b []byte, fn func(value any) error) error {
	i := skipWS(b, 0)
	if i >= len(b) || b[i] != '[' {
		return errMalformed
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == ']' {
		return nil
	}
	for {
		var end int
		var val any
		var err error
		if i < len(b) && b[i] == '{' {
			o := &lazyObject{expanded: true, members: make([]member, 0, 8)}
			end, err = eachMember(b, i, o.add)
			o.raw, o.err = b[i:end:end], err
			val = o
		} else {
			end, err = skipValue(b, i)
			if err == nil {
				val, err = lazyValue(b[i:end])
			}
		}
		if err != nil {
			return err
		}
		if err := fn(val); err != nil {
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

// member is one member of a lazy object: its key and raw value, and the
// value converted for CEL once a rule asked for it.
type member struct {
	key []byte // without quotes; unescaped when the raw key had escapes
	raw []byte
	val ref.Val
}

// lazyObject is a JSON object seen by CEL as a map(string, dyn). Looking
// up a key scans the object's members once (keys and value bounds only)
// and converts only the value asked for. Whole-map operations (iteration,
// equality, conversion), which the shipped rules do not use, decode it
// with encoding/json.
type lazyObject struct {
	raw      []byte
	members  []member
	expanded bool
	err      error
	full     traits.Mapper
}

var (
	_ traits.Mapper = (*lazyObject)(nil)
	_ traits.Lister = (*lazyList)(nil)
)

// emptyObject stands for an absent body, so that rules can select into
// it without guarding against null.
func emptyObject() *lazyObject { return &lazyObject{raw: []byte("{}"), expanded: true} }

func (o *lazyObject) expand() error {
	if o.expanded {
		return o.err
	}
	o.expanded = true
	o.members = make([]member, 0, 12)
	_, o.err = eachMember(o.raw, 0, o.add)
	return o.err
}

// add records one member while the object is scanned.
func (o *lazyObject) add(k, v []byte) error {
	key, err := rawKey(k)
	if err != nil {
		return err
	}
	o.members = append(o.members, member{key: key, raw: v})
	return nil
}

// rawKey is a quoted key without its quotes, unescaped when needed.
func rawKey(k []byte) ([]byte, error) {
	key := k[1 : len(k)-1]
	if bytes.IndexByte(key, '\\') < 0 {
		return key, nil
	}
	s, err := unquote(k)
	return []byte(s), err
}

// lookup returns the value of key (the last one when repeated, as in
// encoding/json), nil when absent.
func (o *lazyObject) lookup(key string) (ref.Val, error) {
	if err := o.expand(); err != nil {
		return nil, err
	}
	for i := len(o.members) - 1; i >= 0; i-- {
		m := &o.members[i]
		if string(m.key) != key {
			continue
		}
		if m.val == nil {
			v, err := lazyValue(m.raw)
			if err != nil {
				return nil, err
			}
			m.val = types.DefaultTypeAdapter.NativeToValue(v)
		}
		return m.val, nil
	}
	return nil, nil
}

// whole decodes the object for the operations that need all of it.
func (o *lazyObject) whole() (traits.Mapper, error) {
	if o.full != nil {
		return o.full, nil
	}
	var m map[string]any
	if err := json.Unmarshal(o.raw, &m); err != nil {
		return nil, fmt.Errorf("%w: %v", errMalformed, err)
	}
	o.full = types.NewStringInterfaceMap(types.DefaultTypeAdapter, m)
	return o.full, nil
}

func (o *lazyObject) Find(k ref.Val) (ref.Val, bool) {
	key, ok := k.(types.String)
	if !ok {
		return nil, false
	}
	v, err := o.lookup(string(key))
	if err != nil {
		return types.WrapErr(err), false
	}
	return v, v != nil
}

func (o *lazyObject) Get(k ref.Val) ref.Val {
	v, found := o.Find(k)
	if types.IsError(v) {
		return v
	}
	if !found {
		return types.NewErr("no such key: %v", k)
	}
	return v
}

func (o *lazyObject) Contains(k ref.Val) ref.Val {
	v, found := o.Find(k)
	if types.IsError(v) {
		return v
	}
	return types.Bool(found)
}

func (o *lazyObject) Size() ref.Val {
	if err := o.expand(); err != nil {
		return types.WrapErr(err)
	}
	return types.Int(len(o.members))
}

func (o *lazyObject) ConvertToNative(t reflect.Type) (any, error) {
	m, err := o.whole()
	if err != nil {
		return nil, err
	}
	return m.ConvertToNative(t)
}

func (o *lazyObject) ConvertToType(t ref.Type) ref.Val {
	if t == types.TypeType {
		return types.MapType
	}
	if t == types.MapType {
		return o
	}
	m, err := o.whole()
	if err != nil {
		return types.WrapErr(err)
	}
	return m.ConvertToType(t)
}

func (o *lazyObject) Equal(other ref.Val) ref.Val {
	m, err := o.whole()
	if err != nil {
		return types.WrapErr(err)
	}
	if lo, ok := other.(*lazyObject); ok {
		om, err := lo.whole()
		if err != nil {
			return types.WrapErr(err)
		}
		return m.Equal(om)
	}
	return m.Equal(other)
}

func (o *lazyObject) Type() ref.Type { return types.MapType }

func (o *lazyObject) Value() any {
	m, err := o.whole()
	if err != nil {
		return nil
	}
	return m.Value()
}

func (o *lazyObject) Iterator() traits.Iterator {
	m, err := o.whole()
	if err != nil {
		return types.NewStringList(types.DefaultTypeAdapter, nil).Iterator()
	}
	return m.Iterator()
}

// lazyList is a JSON array seen by CEL as a list(dyn): its elements are
// found on first use and converted (objects stay lazy).
type lazyList struct {
	raw      []byte
	items    []ref.Val
	l        traits.Lister
	expanded bool
	err      error
}

func (a *lazyList) expand() (traits.Lister, error) {
	if a.expanded {
		return a.l, a.err
	}
	a.expanded = true
	a.items = make([]ref.Val, 0, 8)
	a.err = eachElement(a.raw, func(val any) error {
		a.items = append(a.items, types.DefaultTypeAdapter.NativeToValue(val))
		return nil
	})
	if a.err != nil {
		return nil, a.err
	}
	a.l = types.NewRefValList(types.DefaultTypeAdapter, a.items)
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

// ObjectName returns metadata.name of a JSON object body, "" when it has
// none. It stops scanning at the first metadata member (apiservers write
// it before spec and status).
func ObjectName(body []byte) string {
	meta := first(body, "metadata")
	if meta == nil {
		return ""
	}
	name := first(meta, "name")
	if len(name) == 0 || name[0] != '"' {
		return ""
	}
	s, _ := unquote(name)
	return s
}

// first returns the raw value of the first member key of object b.
func first(b []byte, key string) []byte {
	var found []byte
	_, _ = eachMember(b, 0, func(k, v []byte) error {
		if kk, err := rawKey(k); err == nil && string(kk) == key {
			found = v
			return errStop
		}
		return nil
	})
	return found
}
