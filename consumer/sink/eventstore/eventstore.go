// Package eventstore is the contract of the consumer's local event store:
// the Store interface that every storage engine implements, and the
// engine-neutral types its methods pass. Its users are the local sink
// (consumer/group), the search API and the console (consumer/search), the
// consumer's wiring and `auditpipe run` (consumer/app, deploy/local/allinone)
// and the replay tool's local target (processor/replay/replaycmd).
//
// Engines: consumer/sink/vlstore (VictoriaLogs' storage, embedded; the
// default since step 4 of decision 0026's migration plan) and
// consumer/sink/local (SQLite). The behaviours an engine must keep are the
// conformance suite in eventstore/storetest.
//
// Why one shared package, against Go's habit of declaring an interface
// where it is used: the request and result types must be shared by every
// engine and every user, and a second engine must not import the first
// (SQLite) to name them; and a second engine needs one contract to
// implement and to be tested against, not the union of what each user
// happens to declare. Users that need less still say so with a narrower
// interface (Writer here; search.Store, search.ClusterLister).
package eventstore

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Engines, the values of the consumer's local.engine.
const (
	// EngineSQLite is consumer/sink/local: one file.
	EngineSQLite = "sqlite"
	// EngineVictoriaLogs is consumer/sink/vlstore (VictoriaLogs' storage,
	// embedded: a directory), the default (decision 0026).
	EngineVictoriaLogs = "vlogs"
)

// Options are what every engine is opened with, besides its own settings
// (for SQLite, local.Options and the file's path).
type Options struct {
	// Logger receives the store's messages. Nil discards them.
	Logger *slog.Logger
	// Registerer, when not nil, gets the store's metrics, under the names
	// dashboards and alerts use: auditpipe_localstore_events_total
	// {outcome=inserted|duplicate|invalid},
	// auditpipe_localstore_auditid_reused_total,
	// auditpipe_localstore_write_errors_total,
	// auditpipe_localstore_write_duration_seconds,
	// auditpipe_localstore_query_duration_seconds,
	// auditpipe_localstore_pruned_events_total{reason=age|size} and
	// auditpipe_localstore_used_bytes. Close unregisters them, so a store
	// can be reopened on the same registry.
	Registerer prometheus.Registerer
	// OnReused, when not nil, is called after a Write made durable events
	// marked auditpipe.auditIDReused, with those events (each the JSON as
	// given to Write; the marker is set in the stored copy only), once per
	// stored event: the hook of the detections on the marker (decision
	// 0016). It runs on the writer's path: keep it short.
	OnReused func(ctx context.Context, events [][]byte)
}

// Writer stores processed events: what the local sink and the replay
// tool's local target use.
type Writer interface {
	// Write stores values, each a ProcessedEvent JSON. It is idempotent on
	// (cluster, auditID, stage, auditpipe.contentHash), decision 0012: a
	// retransmission changes nothing and counts as a duplicate, and a
	// different event under an auditID already stored for the cluster and
	// stage is stored too, marked auditpipe.auditIDReused. Invalid values
	// are counted and skipped. On error nothing of the call is stored and
	// the caller retries the whole batch. When Write returns nil the events
	// are visible to searches, and durable unless the store is a Syncer:
	// the caller commits their Kafka offsets next (after Sync for a
	// Syncer).
	Write(ctx context.Context, values [][]byte) (WriteResult, error)
}

// Syncer is a Writer whose Write does not make its events durable by
// itself: Sync makes every event a Write returned for durable (Close does
// too). An engine whose durability costs per call (a checkpoint of
// VictoriaLogs' storage: fsynced file parts that merges must combine
// later) does it once per Sync instead of once per Write: the consumer's
// local sink syncs before each offset commit (kafka.Syncer), which covers
// every partition's batches since the last commit. Engines durable on
// Write's return (SQLite) are not Syncers.
type Syncer interface {
	Sync(ctx context.Context) error
}

// Exporter reads every stored event, a page at a time, in an order that
// stays stable while the store is written to (new events come after the
// last position): the source of `consumer store migrate`. A position is
// the engine's own opaque text; "" is the start. Export returns the
// position of the page's last event (after itself for an empty page:
// the end, for now).
type Exporter interface {
	Export(ctx context.Context, after string, max int) (values [][]byte, next string, err error)
	// Count is how many events the store holds (the progress's total).
	Count(ctx context.Context) (int64, error)
}

// Store is the local event store, the contract of every engine. It is safe
// for concurrent use: several Write calls (one per partition), searches
// and retention at once.
type Store interface {
	Writer
	// Query returns the newest events matching q's field filters and how
	// many match in all (the API's /api/v1/events).
	Query(ctx context.Context, q Query) (QueryResult, error)
	// Search runs a CLS query (consumer/search/cql) with its optional
	// analysis part (| SELECT ...): a page of events, or the analysis rows
	// (the API's /api/v1/search). A query the caller got wrong is a
	// *cql.Error or an *InvalidSearchError. It stops when ctx ends.
	Search(ctx context.Context, req SearchRequest) (SearchResult, error)
	// Clusters returns the distinct auditpipe.cluster values stored,
	// sorted (the console's cluster selector).
	Clusters(ctx context.Context) ([]string, error)
	// RunRetention enforces r until ctx ends, and keeps the used-bytes
	// metric current with or without limits. Failures are logged and
	// retried: retention must never stop the consumer.
	RunRetention(ctx context.Context, r Retention)
	// PruneStep is one bounded round of retention at time now: it deletes
	// events older than r.MaxAge, else, while the store is over r.MaxBytes,
	// the oldest ones. more reports whether another step would find work.
	PruneStep(ctx context.Context, r Retention, now time.Time) (deleted int, more bool, err error)
	// UsedBytes is the size of the stored data, what r.MaxBytes bounds and
	// auditpipe_localstore_used_bytes reports.
	UsedBytes(ctx context.Context) (int64, error)
	// Close releases the store after the calls in flight. Safe to call
	// twice.
	Close() error
}
