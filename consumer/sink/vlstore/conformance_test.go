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

// TestConformance runs the whole eventstore suite:
//
//	go test -count=1 -run TestConformance -v ./sink/vlstore/
func TestConformance(t *testing.T) {
	storetest.Run(t, open)
}
