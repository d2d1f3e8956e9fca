package schemas

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the JSON Schema files from the Go types")

// TestJSONSchemaInSync derives a JSON Schema from the Go types by reflection
// and compares it with the checked-in file, so a field added to the Go type
// without the schema (or the other way round) fails the build. Run with
// -update to rewrite the file after an intended change.
func TestJSONSchemaInSync(t *testing.T) {
	schema := map[string]any{
		"$schema":     "https://json-schema.org/draft/2020-12/schema",
		"$id":         "https://github.com/auditpipe/auditpipe/schemas/jsonschema/processed-event.schema.json",
		"title":       "auditpipe processed audit event",
		"description": "Value of a record on the events topic: a Kubernetes audit.k8s.io/v1 Event plus auditpipe's fields under \"auditpipe\". Schema version " + itoa(SchemaVersion) + ".",
	}
	for k, v := range schemaFor(reflect.TypeFor[ProcessedEvent]()) {
		schema[k] = v
	}
	got, err := json.MarshalIndent(schema, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	const path = "jsonschema/processed-event.schema.json"
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s (run go test -update to create it): %v", path, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s is out of sync with the Go types; run `go test ./schemas -run TestJSONSchemaInSync -update` and review the diff", path)
	}
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

var (
	timeType = reflect.TypeFor[time.Time]()
	rawType  = reflect.TypeFor[json.RawMessage]()
)

// schemaFor maps a Go type to JSON Schema the way encoding/json encodes it.
func schemaFor(t reflect.Type) map[string]any {
	switch {
	case t == timeType:
		return map[string]any{"type": "string", "format": "date-time"}
	case t == rawType:
		return map[string]any{"description": "Any JSON value, kept as sent."}
	}
	switch t.Kind() {
	case reflect.Pointer:
		return schemaFor(t.Elem())
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int32, reflect.Int64:
		return map[string]any{"type": "integer"}
	case reflect.Float64:
		return map[string]any{"type": "number"}
	case reflect.Slice:
		return map[string]any{"type": "array", "items": schemaFor(t.Elem())}
	case reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": schemaFor(t.Elem())}
	case reflect.Struct:
		props := map[string]any{}
		var required []string
		addFields(t, props, &required)
		s := map[string]any{"type": "object", "properties": props}
		if len(required) > 0 {
			s["required"] = required
		}
		return s
	}
	panic("schemaFor: unsupported type " + t.String())
}

func addFields(t reflect.Type, props map[string]any, required *[]string) {
	for f := range t.Fields() {
		if f.Anonymous {
			addFields(f.Type, props, required)
			continue
		}
		name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		s := schemaFor(f.Type)
		if d := f.Tag.Get("desc"); d != "" {
			s["description"] = d
		}
		props[name] = s
		if !strings.Contains(opts, "omitempty") && f.Type.Kind() != reflect.Pointer {
			*required = append(*required, name)
		}
	}
}
