package vlstore_test

import (
	"os"
	"path/filepath"
	"strings"
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

// TestConformance runs the eventstore suite:
//
//	go test -count=1 -run TestConformance -v ./sink/vlstore/
//
// The retention cases (PruneStep, the used-bytes metric) are built on
// another branch (vlret); they run only when asked, until it merges:
//
//	VLSTORE_CONFORMANCE=1 go test -count=1 -run TestConformance -v ./sink/vlstore/
//
// TODO(vlret): remove the skip when retention merges.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(tb testing.TB, dir string, opts eventstore.Options) eventstore.Store {
		if os.Getenv("VLSTORE_CONFORMANCE") == "" && retentionCases[strings.SplitN(tb.Name(), "/", 3)[1]] {
			tb.Skip("retention is not on this branch (vlret); set VLSTORE_CONFORMANCE=1 to run it anyway")
		}
		return open(tb, dir, opts)
	})
}

// retentionCases are the suite's cases that need PruneStep or the
// used-bytes metric.
var retentionCases = map[string]bool{"RetentionByAge": true, "RetentionBySize": true, "UsedBytesMetricsAndReopen": true}
