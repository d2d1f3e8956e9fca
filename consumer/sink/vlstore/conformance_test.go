package vlstore_test

import (
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

// TestConformance runs the eventstore suite. Most of its cases read back
// through Query or Search, which step 3 builds: see the package doc and
// decision 0026's NOTES for which cases fail and why.
func TestConformance(t *testing.T) { storetest.Run(t, open) }
