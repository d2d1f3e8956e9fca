package search

import (
	"context"
	"log/slog"
	"net/http"
	"sort"

	"github.com/auditpipe/auditpipe/internal/fleet"
)

// ClustersPath is where NewClustersHandler lists the clusters.
const ClustersPath = "/api/v1/clusters"

// ClusterLister lists the clusters that have events. Every
// eventstore.Store satisfies it.
type ClusterLister interface {
	Clusters(ctx context.Context) ([]string, error)
}

// ClusterInfo is one entry of GET /api/v1/clusters.
type ClusterInfo struct {
	ID          string `json:"id"`
	DisplayName string `json:"displayName,omitempty"`
	Region      string `json:"region,omitempty"`
	Environment string `json:"environment,omitempty"`
	Owner       string `json:"owner,omitempty"`
	// Registered: the cluster is in the fleet registry.
	Registered bool `json:"registered"`
	// Stored: the store holds events of the cluster.
	Stored bool `json:"stored"`
}

// ClustersResponse is the body of GET /api/v1/clusters.
type ClustersResponse struct {
	Clusters []ClusterInfo `json:"clusters"`
}

// NewClustersHandler serves GET /api/v1/clusters: the clusters of the fleet
// registry (fleetFile, "" for none) and those the store holds events of,
// sorted by id, for the console's cluster selector. The registry file is
// read on each request, so an edit shows without a restart (the processor
// reloads it too); its policy and CLS settings are not exposed.
func NewClustersHandler(store ClusterLister, fleetFile string, logger *slog.Logger) http.Handler {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			w.Header().Set("Allow", http.MethodGet)
			writeJSON(w, http.StatusMethodNotAllowed, ErrorResponse{Error: "method " + r.Method + " not allowed, use GET"})
			return
		}
		if len(r.URL.Query()) > 0 {
			writeJSON(w, http.StatusBadRequest, ErrorResponse{Error: "GET /api/v1/clusters takes no parameters"})
			return
		}
		byID := map[string]*ClusterInfo{}
		if fleetFile != "" {
			reg, err := fleet.LoadFile(fleetFile)
			if err != nil {
				logger.Error("list clusters: read fleet registry", "file", fleetFile, "err", err)
				writeJSON(w, http.StatusInternalServerError, ErrorResponse{Error: "reading the fleet registry failed"})
				return
			}
			for id, c := range reg.Clusters {
				byID[id] = &ClusterInfo{ID: id, DisplayName: c.DisplayName, Region: c.Region,
					Environment: c.Environment, Owner: c.Owner, Registered: true}
			}
		}
		stored, err := store.Clusters(r.Context())
		if err != nil {
			if r.Context().Err() != nil {
				return
			}
			logger.Error("list clusters", "err", err)
			writeJSON(w, http.StatusInternalServerError, ErrorResponse{Error: "listing the clusters failed"})
			return
		}
		for _, id := range stored {
			c, ok := byID[id]
			if !ok {
				c = &ClusterInfo{ID: id}
				byID[id] = c
			}
			c.Stored = true
		}
		out := make([]ClusterInfo, 0, len(byID))
		for _, c := range byID {
			out = append(out, *c)
		}
		sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
		writeJSON(w, http.StatusOK, ClustersResponse{Clusters: out})
	})
}
