package redact_test

import (
	"testing"

	"github.com/auditpipe/auditpipe/processor/redact"
	"github.com/auditpipe/auditpipe/schemas"
	"github.com/stretchr/testify/require"
)

// A body that cannot hold secret material comes back as the same bytes:
// not decoded, not re-encoded (key order and spacing kept).
func TestHarmlessBodiesUntouched(t *testing.T) {
	body := []byte(`{ "kind":"Pod", "spec":{"volumes":[{"secret":{"secretName":"tls"}}]} ,"apiVersion":"v1"}`)
	ev := schemas.Event{ObjectRef: &schemas.ObjectReference{Resource: "pods"}, RequestObject: body, ResponseObject: body}
	require.Nil(t, redact.Event(&ev))
	require.Equal(t, string(body), string(ev.RequestObject))
	require.Same(t, &body[0], &ev.ResponseObject[0])
}

// A Status answering a Secret request keeps its message; a Secret body
// with an unknown top-level field loses that field's value.
func TestStatusOnSecretsEndpointKeepsMessage(t *testing.T) {
	ev := schemas.Event{ObjectRef: &schemas.ObjectReference{Resource: "secrets"},
		RequestObject:  []byte(`{"kind":"Secret","data":{"a":"eA=="},"extra":"leak"}`),
		ResponseObject: []byte(`{"kind":"Status","status":"Failure","message":"secrets \"x\" already exists","code":409}`)}
	paths := redact.Event(&ev)
	require.ElementsMatch(t, []string{"/requestObject/data/a", "/requestObject/extra"}, paths)
	require.NotContains(t, string(ev.RequestObject), "leak")
	require.Contains(t, string(ev.ResponseObject), "already exists")
}

// The core group spelled "core" (GKE's converter) is the core group.
func TestCoreGroupAlias(t *testing.T) {
	ev := schemas.Event{ObjectRef: &schemas.ObjectReference{Resource: "secrets", APIGroup: "core"},
		RequestObject: []byte(`{"data":{"k":"c2VjcmV0"}}`)}
	require.Equal(t, []string{"/requestObject/data/k"}, redact.Event(&ev))
	require.Equal(t, `{"data":{"k":"auditpipe:redacted"}}`, string(ev.RequestObject))
}
