// Package config loads YAML configuration files strictly: an unknown key is
// an error that names the key and the file, because a misspelt option that
// is silently ignored is how audit pipelines end up dropping events.
package config

import (
	"fmt"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"
)

// Validator is implemented by configuration types that check themselves
// after loading.
type Validator interface {
	Validate() error
}

// LoadFile decodes the YAML (or JSON) file at path into out, which should
// already hold the defaults: keys absent from the file keep them. Unknown
// keys are errors. If out implements Validator, Validate runs last.
func LoadFile(path string, out any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read config %s: %w", path, err)
	}
	if err := Load(data, out); err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	return nil
}

// Load is LoadFile for bytes.
func Load(data []byte, out any) error {
	if err := Decode(data, out); err != nil {
		return err
	}
	if v, ok := out.(Validator); ok {
		if err := v.Validate(); err != nil {
			return fmt.Errorf("invalid: %w", err)
		}
	}
	return nil
}

// Decode is Load without Validate, for callers that still apply flags
// over the file before they validate the result.
func Decode(data []byte, out any) error {
	// Find unknown keys first, with their full path ("webhook.listne"):
	// the decoder's own strict mode names only the last element.
	var generic any
	if err := yaml.Unmarshal(data, &generic); err != nil {
		return fmt.Errorf("decode: %w", err)
	}
	if unknown := unknownKeys(generic, reflect.TypeOf(out), ""); len(unknown) > 0 {
		return fmt.Errorf("unknown field %s", strings.Join(quoteAll(unknown), ", "))
	}
	if err := yaml.UnmarshalStrict(data, out); err != nil {
		return fmt.Errorf("decode: %w", err)
	}
	return nil
}

// unknownKeys lists the dotted paths of keys in v that t (a struct, through
// pointers, slices and maps) has no JSON field for.
func unknownKeys(v any, t reflect.Type, prefix string) []string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var out []string
	switch val := v.(type) {
	case map[string]any:
		switch t.Kind() {
		case reflect.Map:
			for k, sub := range val {
				out = append(out, unknownKeys(sub, t.Elem(), join(prefix, k))...)
			}
		case reflect.Struct:
			fields := jsonFields(t)
			for k, sub := range val {
				ft, ok := fields[k]
				if !ok {
					out = append(out, join(prefix, k))
					continue
				}
				out = append(out, unknownKeys(sub, ft, join(prefix, k))...)
			}
		}
	case []any:
		if t.Kind() == reflect.Slice || t.Kind() == reflect.Array {
			for i, sub := range val {
				out = append(out, unknownKeys(sub, t.Elem(), prefix+"["+strconv.Itoa(i)+"]")...)
			}
		}
	}
	sort.Strings(out)
	return out
}

// jsonFields maps the JSON names of t's fields (embedded structs inlined)
// to their types.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	fields := map[string]reflect.Type{}
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if f.Anonymous && name == "" {
			for k, v := range jsonFields(f.Type) {
				fields[k] = v
			}
			continue
		}
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		fields[name] = f.Type
	}
	return fields
}

func join(prefix, key string) string {
	if prefix == "" {
		return key
	}
	return prefix + "." + key
}

func quoteAll(s []string) []string {
	q := make([]string, len(s))
	for i, v := range s {
		q[i] = strconv.Quote(v)
	}
	return q
}
