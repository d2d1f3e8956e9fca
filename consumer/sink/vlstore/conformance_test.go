package vlstore_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/auditpipe/auditpipe/consumer/sink/eventstore"
	"github.com/auditpipe/auditpipe/consumer/sink/eventstore/storetest"
	"github.com/auditpipe/auditpipe/consumer/sink/vlstore"
)

func open(tb testing.TB, dir string, opts eventstore.Options) eventstore.Store {
	tb.Helper()
	s, err := vlstore.Open(filepath.Join(dir, "vlogs"), opts, vlstore.Config{})
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// TestConformance runs the eventstore suite. Every case but Clusters
// reads back through Query, Search or PruneStep, which are not built yet
// (decision 0026's NOTES list where each fails), so it runs only when
// asked, to keep `go test ./...` meaningful meanwhile:
//
//	VLSTORE_CONFORMANCE=1 go test -count=1 -run TestConformance -v ./sink/vlstore/
//
// Remove the gate once Query and Search exist (step 3).
func TestConformance(t *testing.T) {
	if os.Getenv("VLSTORE_CONFORMANCE") == "" {
		t.Skip("Query, Search and PruneStep are not implemented yet; set VLSTORE_CONFORMANCE=1 to run the suite")
	}
	storetest.Run(t, open)
}
