package search_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/consumer/search"
	"github.com/auditpipe/auditpipe/consumer/sink/local"
	"github.com/auditpipe/auditpipe/consumer/sink/local/localtest"
)

func TestClustersListsRegistryAndStore(t *testing.T) {
	store, err := local.Open(filepath.Join(t.TempDir(), "events.db"), local.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, store.Close()) })
	fleetFile := filepath.Join(t.TempDir(), "fleet.yaml")
	require.NoError(t, os.WriteFile(fleetFile, []byte(`clusters:
  `+localtest.ClusterGKE+`:
    displayName: GKE production
    region: us-central1
    environment: production
    owner: team-a
    policy: /secret/path/policy.yaml
  staging-1:
    displayName: Staging
`), 0o644))

	get := func(t *testing.T, h http.Handler, target string) (int, search.ClustersResponse, string) {
		t.Helper()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, target, nil))
		var body search.ClustersResponse
		if rec.Code == http.StatusOK {
			require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body))
		}
		return rec.Code, body, rec.Body.String()
	}

	h := search.NewClustersHandler(store, fleetFile, nil)
	t.Run("empty store: the registry", func(t *testing.T) {
		code, body, raw := get(t, h, search.ClustersPath)
		require.Equal(t, http.StatusOK, code, raw)
		require.Equal(t, []search.ClusterInfo{
			{ID: localtest.ClusterGKE, DisplayName: "GKE production", Region: "us-central1", Environment: "production", Owner: "team-a", Registered: true},
			{ID: "staging-1", DisplayName: "Staging", Registered: true},
		}, body.Clusters)
		require.NotContains(t, raw, "policy", "policy paths are not exposed")
	})

	// The fixtures of three clusters, one of them registered.
	all := append(localtest.All(t), localtest.Falco(t)...)
	_, err = store.Write(context.Background(), localtest.Values(all))
	require.NoError(t, err)
	stored := map[string]bool{}
	for _, e := range all {
		stored[e.Pipeline.Cluster] = true
	}
	require.Len(t, stored, 3, "the fixtures span three clusters")

	t.Run("registry and store", func(t *testing.T) {
		code, body, raw := get(t, h, search.ClustersPath)
		require.Equal(t, http.StatusOK, code, raw)
		require.Equal(t, []search.ClusterInfo{
			{ID: localtest.ClusterGKE, DisplayName: "GKE production", Region: "us-central1", Environment: "production", Owner: "team-a", Registered: true, Stored: true},
			{ID: localtest.ClusterKind, Stored: true},
			{ID: localtest.ClusterFalco, Stored: true},
			{ID: "staging-1", DisplayName: "Staging", Registered: true},
		}, body.Clusters)
	})

	t.Run("no registry: the store's clusters", func(t *testing.T) {
		code, body, raw := get(t, search.NewClustersHandler(store, "", nil), search.ClustersPath)
		require.Equal(t, http.StatusOK, code, raw)
		var ids []string
		for _, c := range body.Clusters {
			require.True(t, c.Stored)
			require.False(t, c.Registered)
			ids = append(ids, c.ID)
		}
		require.Equal(t, []string{localtest.ClusterGKE, localtest.ClusterKind, localtest.ClusterFalco}, ids)
	})

	t.Run("errors", func(t *testing.T) {
		code, _, raw := get(t, h, search.ClustersPath+"?cluster=x")
		require.Equal(t, http.StatusBadRequest, code, raw)
		code, _, raw = get(t, search.NewClustersHandler(store, filepath.Join(t.TempDir(), "missing.yaml"), nil), search.ClustersPath)
		require.Equal(t, http.StatusInternalServerError, code, raw)
		require.NotContains(t, raw, "missing.yaml", "file paths stay in the log")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, search.ClustersPath, nil))
		require.Equal(t, http.StatusMethodNotAllowed, rec.Code)
	})
}
