// Package local is auditpipe's embedded event store: one SQLite file (through
// the pure-Go modernc.org/sqlite driver, so the binary stays cgo-free) that
// holds every processed event once, keyed by its natural identity (cluster,
// auditID, stage, content hash; decision 0012: a different event under a
// reused auditID is kept and marked auditpipe.auditIDReused), with indexed
// columns for the common audit fields, the full ProcessedEvent JSON, and an
// FTS5 index of CLS's words (the full text and every key's words, under the
// key names the CLS sink sends). It is written by the consumer group (Write)
// and read by the search API (Search), which compiles the CLS query language
// (consumer/search/cql) to SQL that matches like CLS's default index; see
// docs/decisions/0006-search-language.md. *Store is the SQLite engine of
// the consumer/sink/eventstore contract (decision 0026): the consumer, the
// search API and the all-in-one use it through that interface.
//
// Concurrency model: one writer connection (SQLite allows one writer per file
// anyway, and a single connection turns lock contention into a Go-side queue)
// and a pool of read-only connections. WAL mode lets readers run while the
// writer commits. Concurrent Write calls are safe and are serialised.
//
// Several consumer replicas: a store file has exactly one writer. Replicas
// in one process share one *Store (app.Deps.Store): the single writer
// connection serialises their batches, and each is idempotent, so the
// batches a rebalance hands from one replica to another only count as
// duplicates. A second process opening the same file works (SQLite's lock,
// busy_timeout, the IMMEDIATE migration) but only queues behind the first
// for every commit: do not plan on it. Replicas on separate hosts have a
// store each, holding the partitions each consumed; a rebalance then splits
// a cluster's history across stores. For one complete local store, run its
// sink in a dedicated single-member group; CLS is the fleet-wide view. See
// docs/decisions/0005-cls-sink.md.
//
// Retention (RunRetention, PruneStep) deletes by age (stageTimestamp) and by
// size (pages in use) in steps of bounded rows, one short transaction each,
// so the consumer's writes wait at most one step.
//
// Durability: an acknowledged Kafka offset is committed only after Write
// returns, so Write must not return before its transaction is on disk. The
// store therefore runs with synchronous=FULL (an fsync of the WAL at every
// commit); see docs/decisions/0002-local-store-sqlite.md.
package local
