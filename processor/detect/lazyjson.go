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
//
// The first look into a body indexes it in one pass: where each object
// and array ends. Every later step (into spec, into each container) then
// jumps over nested values instead of scanning them again, so a body
// costs one pass however many rules and levels look into it.

var errMalformed = errors.New("malformed JSON body")

// doc is one body and its structural index.
type doc struct {
	b []byte
	// opens[k] is the offset of the k-th '{' or '[' (in order),
	// closes[k] the offset of its matching '}' or ']'.
	opens, closes []int32
}

// newDoc indexes b.
func newDoc(b []byte) (*doc, error) {
	// Kubernetes objects have about one object or array per 30 bytes.
	n := len(b)/24 + 8
	d := &doc{b: b, opens: make([]int32, 0, n), closes: make([]int32, 0, n)}
	var stackBuf [32]int32
	stack := stackBuf[:0]
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c > ']' && c != '{' && c != '}' {
			continue // most bytes: letters
		}
		switch c {
		case '"':
			for i++; i < len(b); i++ {
				if c := b[i]; c == '"' {
					break
				} else if c == '\\' {
					i++
				}
			}
			if i >= len(b) {
				return nil, errMalformed
			}
		case '{', '[':
			stack = append(stack, int32(len(d.opens)))
			d.opens = append(d.opens, int32(i))
			d.closes = append(d.closes, -1)
		case '}', ']':
			if len(stack) == 0 {
				return nil, errMalformed
			}
			d.closes[stack[len(stack)-1]] = int32(i)
			stack = stack[:len(stack)-1]
		}
	}
	if len(stack) != 0 {
		return nil, errMalformed
	}
	return d, nil
}

// containerEnd returns the offset after the object or array that opens
// at i.
func (d *doc) containerEnd(i int) (int, error) {
	lo, hi := 0, len(d.opens)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if int(d.opens[mid]) < i {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	if lo == len(d.opens) || int(d.opens[lo]) != i {
		return 0, errMalformed
	}
	return int(d.closes[lo]) + 1, nil
}

// value turns the JSON value at b[i:end] into what CEL sees: scalars are
// decoded, objects and arrays stay lazy.
func (d *doc) value(i, end int) (any, error) {
	v := d.b[i:end]
	if len(v) == 0 {
		return nil, errMalformed
	}
	switch v[0] {
	case '{':
		return &lazyObject{d: d, start: i, end: end}, nil
	case '[':
		return &lazyList{d: d, start: i, end: end}, nil
	case '"':
		return unquote(v)
	case 't':
		return true, nil
	case 'f':
		return false, nil
	case 'n':
		return nil, nil
	}
	if n, err := strconv.ParseInt(string(v), 10, 64); err == nil {
		return n, nil
	}
	f, err := strconv.ParseFloat(string(v), 64)
	if err != nil {
		return nil, fmt.Errorf("%w: number %q", errMalformed, v)
	}
	return f, nil
}

// root returns the lazy value of a whole body.
func root(b []byte) (any, error) {
	d, err := newDoc(b)
	if err != nil {
		return nil, err
	}
	i := skipWS(b, 0)
	end, err := d.skipValue(i)
	if err != nil {
		return nil, err
	}
	if skipWS(b, end) != len(b) {
		return nil, errMalformed
	}
	return d.value(i, end)
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

// skipString returns the offset after the string that opens at b[i].
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

// skipValue returns the offset after the value that starts at b[i].
func (d *doc) skipValue(i int) (int, error) {
	b := d.b
	if i >= len(b) {
		return 0, errMalformed
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		return d.containerEnd(i)
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

// eachMember calls fn with the raw key and the value bounds of each
// member of the object that opens at b[i].
func (d *doc) eachMember(i int, fn func(keyStart, keyEnd, start, end int) error) error {
	b := d.b
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
		kstart := i
		i = skipWS(b, kend)
		if i >= len(b) || b[i] != ':' {
			return errMalformed
		}
		i = skipWS(b, i+1)
		vend, err := d.skipValue(i)
		if err != nil {
			return err
		}
		if err := fn(kstart, kend, i, vend); err != nil {
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

// eachElement calls fn with the bounds of each element of the array that
// opens at b[i].
func (d *doc) eachElement(i int, fn func(start, end int) error) error {
	b := d.b
	if i >= len(b) || b[i] != '[' {
		return errMalformed
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == ']' {
		return nil
	}
	for {
		end, err := d.skipValue(i)
		if err != nil {
			return err
		}
		if err := fn(i, end); err != nil {
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

// member is one member of a lazy object: the bounds of its key (with
// quotes) and value in the body, and the value converted for CEL once a
// rule asked for it.
type member struct {
	keyStart, keyEnd, start, end int32
	val                          ref.Val
}

// lazyObject is a JSON object seen by CEL as a map(string, dyn). Looking
// up a key reads the object's members once (keys and value bounds) and
// converts only the value asked for. Whole-map operations (iteration,
// equality, conversion), which the shipped rules do not use, decode it
// with encoding/json.
type lazyObject struct {
	d          *doc // nil for the empty object
	start, end int
	members    []member
	lookups    int // lookups answered by scanFor before expanding
	expanded   bool
	err        error
	full       traits.Mapper
}

var (
	_ traits.Mapper = (*lazyObject)(nil)
	_ traits.Lister = (*lazyList)(nil)
)

// emptyObject stands for an absent body, so that rules can select into
// it without guarding against null.
func emptyObject() *lazyObject { return &lazyObject{expanded: true} }

func (o *lazyObject) raw() []byte {
	if o.d == nil {
		return []byte("{}")
	}
	return o.d.b[o.start:o.end]
}

func (o *lazyObject) expand() error {
	if o.expanded {
		return o.err
	}
	o.expanded = true
	o.members = make([]member, 0, 8)
	o.err = o.d.eachMember(o.start, func(ks, ke, start, end int) error {
		o.members = append(o.members, member{keyStart: int32(ks), keyEnd: int32(ke), start: int32(start), end: int32(end)})
		return nil
	})
	return o.err
}

// keyIs reports whether member m's key is key.
func (o *lazyObject) keyIs(m *member, key string) bool {
	raw := o.d.b[m.keyStart+1 : m.keyEnd-1]
	if bytes.IndexByte(raw, '\\') < 0 {
		return string(raw) == key
	}
	s, err := unquote(o.d.b[m.keyStart:m.keyEnd])
	return err == nil && s == key
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
	if !o.expanded && o.lookups == 0 {
		// Most objects (each container, each volume) are asked one
		// question: answer it with a scan that keeps nothing, and
		// remember the members only when a second question comes.
		o.lookups++
		return o.scanFor(key)
	}
	if err := o.expand(); err != nil {
		return nil, err
	}
	for i := len(o.members) - 1; i >= 0; i-- {
		m := &o.members[i]
		if !o.keyIs(m, key) {
			continue
		}
		if m.val == nil {
			v, err := o.d.value(int(m.start), int(m.end))
			if err != nil {
				return nil, err
			}
			m.val = types.DefaultTypeAdapter.NativeToValue(v)
		}
		return m.val, nil
	}
	return nil, nil
}

// scanFor finds key by scanning the members without recording them; the
// last occurrence wins, as in lookup.
func (o *lazyObject) scanFor(key string) (ref.Val, error) {
	found := member{start: -1}
	err := o.d.eachMember(o.start, func(ks, ke, start, end int) error {
		m := member{keyStart: int32(ks), keyEnd: int32(ke), start: int32(start), end: int32(end)}
		if o.keyIs(&m, key) {
			found = m
		}
		return nil
	})
	if err != nil {
		o.expanded, o.err = true, err
		return nil, err
	}
	if found.start < 0 {
		return nil, nil
	}
	v, err := o.d.value(int(found.start), int(found.end))
	if err != nil {
		return nil, err
	}
	return types.DefaultTypeAdapter.NativeToValue(v), nil
}

// whole decodes the object for the operations that need all of it.
func (o *lazyObject) whole() (traits.Mapper, error) {
	if o.full != nil {
		return o.full, nil
	}
	var m map[string]any
	if err := json.Unmarshal(o.raw(), &m); err != nil {
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
// found on first use and converted (objects and arrays stay lazy).
type lazyList struct {
	d          *doc
	start, end int
	items      []ref.Val
	l          traits.Lister
	expanded   bool
	err        error
}

func (a *lazyList) expand() (traits.Lister, error) {
	if a.expanded {
		return a.l, a.err
	}
	a.expanded = true
	a.items = make([]ref.Val, 0, 8)
	a.err = a.d.eachElement(a.start, func(start, end int) error {
		val, err := a.d.value(start, end)
		if err != nil {
			return err
		}
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
// none. It stops at the first metadata member (apiservers write it before
// spec and status) and indexes nothing.
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

// first returns the raw value of the first member key of the object b,
// scanning (not indexing) what comes before it.
func first(b []byte, key string) []byte {
	i := skipWS(b, 0)
	if i >= len(b) || b[i] != '{' {
		return nil
	}
	i = skipWS(b, i+1)
	for i < len(b) && b[i] == '"' {
		kend, err := skipString(b, i)
		if err != nil {
			return nil
		}
		k, err := rawKey(b[i:kend])
		if err != nil {
			return nil
		}
		i = skipWS(b, kend)
		if i >= len(b) || b[i] != ':' {
			return nil
		}
		i = skipWS(b, i+1)
		vend, err := scanValue(b, i)
		if err != nil {
			return nil
		}
		if string(k) == key {
			return b[i:vend]
		}
		i = skipWS(b, vend)
		if i >= len(b) || b[i] != ',' {
			return nil
		}
		i = skipWS(b, i+1)
	}
	return nil
}

// scanValue is skipValue without an index.
func scanValue(b []byte, i int) (int, error) {
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
				end, err := skipString(b, i)
				if err != nil {
					return 0, err
				}
				i = end - 1
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
	for i < len(b) && !bytes.ContainsRune([]byte(",}] \n\r\t"), rune(b[i])) {
		i++
	}
	if i == start {
		return 0, errMalformed
	}
	return i, nil
}
