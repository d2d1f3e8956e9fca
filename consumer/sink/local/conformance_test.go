package local_test

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/consumer/sink/eventstore"
	"github.com/auditpipe/auditpipe/consumer/sink/eventstore/storetest"
	"github.com/auditpipe/auditpipe/consumer/sink/local"
)

// TestConformance runs the eventstore contract's suite against SQLite.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(tb testing.TB, dir string, opts eventstore.Options) eventstore.Store {
		s, err := local.Open(filepath.Join(dir, "events.db"),
			local.Options{Logger: opts.Logger, Registerer: opts.Registerer, OnReused: opts.OnReused})
		require.NoError(tb, err)
		return s
	})
}
