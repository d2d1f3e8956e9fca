// Package vlstore is the local event store on VictoriaLogs' storage
// (github.com/VictoriaMetrics/VictoriaLogs/lib/logstorage, embedded):
// step 2 of decision 0026's migration plan. It implements
// eventstore.Store; the write path and retention work so far.
//
// Layout (0026): one stream per auditpipe.cluster; every key that
// consumer/internal/flatten makes (the CLS sink's and the search's key
// names) is a field; _msg is the event's compact JSON as written (0010);
// _time is stageTimestamp (receivedAt, else the write time, for events
// without one).
//
// What works (see the NOTES section of decision 0026 for figures):
//   - Write: validation (UTF-8, a JSON object, cluster/auditID/stage
//     strings, a parsable stageTimestamp in the storage's time range:
//     narrower than the SQLite store's), one flatten walk per event,
//     MustAddRows per call, and a checkpoint per call so that Write
//     returning nil means durable (the contract); idempotency on
//     (cluster, auditID, stage, contentHash) and the auditIDReused marker
//     from an in-memory identity cache, loaded at Open for
//     Config.IdentityWindow and looked up per batch (auditID:in(...)) for
//     older events; the cache forgets what leaves the window; OnReused;
//     group commit (concurrent Write calls share one checkpoint).
//   - Clusters, UsedBytes (compressed parts plus index, as the storage
//     reports them), Close.
//   - Retention (retention.go): PruneStep by age drops the per-day
//     partitions wholly before the bound (rounded down to
//     Config.AgeGranularity, default a day, so events may stay up to a
//     day past MaxAge) and, for a finer granularity, deletes the bound's
//     day's older rows by a VictoriaLogs delete task (a rewrite of that
//     day's parts); events without a stageTimestamp stay. By size: whole
//     oldest days, then the oldest minutes of the next by a delete task,
//     down to 95 % of MaxBytes. Counts are exact (counted before and
//     after, writers held off), the identity cache forgets what went;
//     RunRetention, the used-bytes and pruned metrics. A delete task
//     leaves, of each block it deletes part of, the first row's
//     timestamp without fields: every query must AND liveRows
//     (stage:*) to skip it.
//
// What does not (returns ErrNotImplemented or is missing):
//   - Query and Search (step 3: the CQL → LogsQL compiler), the query
//     metric.
//
// Process-wide effects (forced by the dependency, done once in Open):
// the global flag set is parsed (empty) if nobody did, and VictoriaMetrics'
// logger, which writes to stderr in its own format, is set to WARN.
// Storage I/O errors end the process (VictoriaMetrics' logger.Panicf).
package vlstore
