package event

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

var listSeeds = []string{
	`{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[{"auditID":"a","stage":"s"},{"kind":"Event","auditID":"b","stage":"t","x":[1,"]}",{"y":"\"}"}]}]}`,
	`{"items":null,"kind":null}`,
	`{"items":[],"ITEMS":[1, 2 ,"x"] , "Kind":"EventList"}`,
	`{"items":[{"auditID":"a"}],"items":[true]}`,
	`{"kind":"Event\u004cist","items":[]}`,
	`{"k\u0069nd":"x","items":[]}`,
	`{"\u212aind":"x","items":[]}`,
	`{"kind":5,"items":[]}`,
	`{"items":{}}`,
	`[1]`,
	`{"items":[1,2]`,
	` { "items" : [ { "auditID" : "a\"b" , "stage" : "s" } ] } `,
	`{}`,
}

// FuzzSplitEventListMatchesEncodingJSON: whenever SplitEventList reads a
// body, it reads what encoding/json reads.
func FuzzSplitEventListMatchesEncodingJSON(f *testing.F) {
	for _, s := range listSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		kind, apiVersion, items, ok := SplitEventList(body)
		var want struct {
			Kind       string            `json:"kind"`
			APIVersion string            `json:"apiVersion"`
			Items      []json.RawMessage `json:"items"`
		}
		err := json.Unmarshal(body, &want)
		if !ok {
			return
		}
		require.NoError(t, err, "%s", body)
		require.Equal(t, want.Kind, kind)
		require.Equal(t, want.APIVersion, apiVersion)
		require.Equal(t, want.Items == nil, items == nil)
		require.Equal(t, want.Items, items)
	})
}

// FuzzIdentifyValidMatchesIdentify: on valid JSON, identifyValid gives
// Identify's answer.
func FuzzIdentifyValidMatchesIdentify(f *testing.F) {
	for _, s := range append(listSeeds,
		`{"auditID":"a","stage":"s","AUDITID":"b"}`,
		`{"auditID":"a","stage":null,"kind":"Pod"}`,
		`{"auditID":"a\u0041","stage":"s"}`,
		`{"auditID":1,"stage":"s"}`,
		`{"auditId":"x","Stage":"s","requestObject":{"a":[{"b":"}"}]}}`,
	) {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, item []byte) {
		if !json.Valid(item) {
			return
		}
		id, reason := Identify(item)
		gotID, gotReason := identifyValid(item)
		require.Equal(t, reason, gotReason, "%s", item)
		if reason == "" {
			require.Equal(t, id, gotID, "%s", item)
		}
	})
}

// TestValidFastPaths: the fast paths take the common forms, so the fuzz
// tests above compare something.
func TestValidFastPaths(t *testing.T) {
	_, _, items, ok := SplitEventList([]byte(listSeeds[0]))
	require.True(t, ok)
	require.Len(t, items, 2)
	require.Equal(t, `{"kind":"Event","auditID":"b","stage":"t","x":[1,"]}",{"y":"\"}"}]}`, string(items[1]))
	seen := 0
	require.True(t, walkObject(items[1], func(key, v []byte) bool { seen++; return true }))
	require.Equal(t, 4, seen)
	id, reason := identifyValid(items[1])
	require.Empty(t, reason)
	require.Equal(t, Identity{Kind: "Event", AuditID: "b", Stage: "t"}, id)
}
