package policy

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

// FuzzManagedFieldsBytesMatchesDecode: whenever the byte-level path
// strips managedFields, the result means the same as the decoding path's.
func FuzzManagedFieldsBytesMatchesDecode(f *testing.F) {
	for _, s := range []string{
		`{"kind":"Pod","metadata":{"name":"a","managedFields":[{"manager":"kubectl"}],"uid":"1"},"spec":{}}`,
		`{"metadata":{"managedFields":[]}}`, `{"metadata":{"name":"x"}}`, `{"metadata":null}`, `{"a":1}`,
		`{"metadata":{"name":"a", "managedFields" : [1] }}`, `{"metadata":{"managedFields":1,"managedFields":2}}`,
		`{"items":[{"metadata":{"managedFields":[]}}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		fast, ok := withoutManagedFieldsBytes(body)
		if !ok {
			return
		}
		slow, err := withoutManagedFieldsDecode(body)
		require.NoError(t, err)
		var a, b any
		require.NoError(t, json.Unmarshal(fast, &a), "%q -> %q", body, fast)
		require.NoError(t, json.Unmarshal(slow, &b))
		require.Equal(t, b, a, "%q", body)
	})
}
