package jsonbytes

import (
	"bytes"
	"encoding/json"
)

// Marshal encodes v as encoding/json does but without HTML escaping, so
// that values keep their bytes ("<", ">" and "&" are common in
// annotations, scripts and request URIs): the one JSON encoder of the
// processor's byte-preserving paths.
func Marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}
