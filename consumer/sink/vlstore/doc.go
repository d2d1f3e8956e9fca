// Package vlstore is the local event store on VictoriaLogs' storage
// (github.com/VictoriaMetrics/VictoriaLogs/lib/logstorage, embedded):
// steps 2 and 3 of decision 0026's migration plan. It implements
// eventstore.Store.
//
// Layout (0026): one stream per auditpipe.cluster; every key that
// consumer/internal/flatten makes (the CLS sink's and the search's key
// names) is a field; the event's compact JSON as written (0010) is kept
// in a per-day file of zstd blocks next to the partitions (docs.go) and
// named by the number field auditpipe:doc (there is no _msg: the storage
// tokenized it a second time at every merge, half of its CPU); values
// that are no field (a key over 128 bytes, an unstorable stageTimestamp)
// are the text field auditpipe:rest, for the full-text prefilter;
// _time is stageTimestamp (receivedAt, else the write time, for events
// without one or with the zero time, which then have no stageTimestamp
// field: that is how reads tell them apart).
//
// What works (see the NOTES section of decision 0026 for figures):
//   - Write: validation (UTF-8, a JSON object, cluster/auditID/stage
//     strings, a parsable stageTimestamp in the storage's time range:
//     narrower than the SQLite store's), one flatten walk per event,
//     MustAddRows per call, concurrent Writes running their inserts at
//     once and each Write decoding and adding in parallel parts (one
//     cluster's partition is one Write at a time), and a checkpoint per
//     call so that Write returning nil means durable (the contract) — or,
//     with Config.DeferSync (what the consumer opens), rows made
//     searchable by the next read (which flushes the storage's buffer
//     first) and durable at Sync (eventstore.Syncer), which the local
//     sink's group runs before each offset commit, at most once per
//     Config.SyncInterval (1 s). A checkpoint holds the writers, waits
//     out the storage's in-memory merges and repeats its snapshot until
//     no row is left only in memory (a snapshot skips parts in merge);
//     idempotency on
//     (cluster, auditID, stage, contentHash) and the auditIDReused marker
//     from an in-memory identity cache, loaded at Open for
//     Config.IdentityWindow and looked up per batch (auditID:in(...)) for
//     older events; the cache forgets what leaves the window; OnReused;
//     group commit (concurrent Write calls share one checkpoint).
//   - Query (query.go): LogsQL throughout for the field filters (exact
//     :=), the cluster (its stream), the time range (_time, to the
//     millisecond as SQLite compares) and the total (stats count()); the
//     page is a top-k by _time whose last millisecond's ties are sorted
//     here (the order is milliseconds, then cluster, auditID, stage).
//     Full text (Text) is CLS's words (text.go): a LogsQL prefilter that
//     is a superset (any-case phrases on any field), then every candidate
//     is checked in Go with cql.Pattern, as the SQLite store's
//     auditpipe_text does; the total is counted there too.
//   - Search (search.go), native where LogsQL says the CLS filter exactly
//     (exact.go: *, AND/OR/NOT, an AND's filters cheapest first;
//     key:value for literal ASCII words — a word, word*, several words or
//     a "phrase" — on the SQLite store's text column keys and on every
//     other JSON path the storage holds as written (annotations.…,
//     user.groups, …), as regexps with CLS's delimiters and case behind
//     the words' any-case phrase filters; ranges and integer matches on
//     responseStatus.code): count() and a keyset page, and the analyses
//     `SELECT count(*)` and group counts (analysis.go, stats pipe):
//     `SELECT keys, count(*)|count(1)|count(column)|count_if(cond) [WHERE
//     cond] GROUP BY keys [HAVING counts] [ORDER BY items] [LIMIT n]`
//     with text column keys, responseStatus.code, other JSON paths and
//     one time bucket (histogram, date_trunc of __TIMESTAMP__), in
//     SQLite's order ties included (the GROUP BY's group order, which the
//     differential tests pin down); conditions (sqlcond.go) are =, !=,
//     IN, IS NULL on text column keys and comparisons on
//     responseStatus.code, with SQL's NULLs (AND, OR, NOT). A native plan
//     that meets data it cannot answer as SQLite would (a JSON path's
//     group whose value is missing, empty or a number's text; a
//     non-integer code) hands the request to the fallback. Everything
//     else (full text, other wildcards, key:* and key:"", DISTINCT,
//     other functions and conditions) takes the fallback
//     of 0026: a LogsQL superset (cluster, time range, per-term filters
//     where implied) is loaded into an ephemeral SQLite store
//     (consumer/sink/local, a temporary directory under
//     Config.SearchTempDir, default TMPDIR, deleted after the call) and the request runs there, so answers are the
//     SQLite store's by construction. That is the one import of sink/local
//     outside tests; it costs ~70 µs of CPU per candidate plus ~7–20 ms
//     per call (BenchmarkRead), and a search needing more than 100,000
//     candidates is refused as too broad (InvalidSearchError, q): the
//     candidates are read in one pass, `| limit 100001`. Full text costs
//     seconds at 1M events (decision 0026, "Step 5 prerequisite"): CLS's
//     words are case-insensitive, so the storage's bloom filters cannot
//     skip a block for them.
//     Cursors are vlstore's (cursor.go): the keyset with a hash of the
//     event as tie-break, translated to each call's ephemeral row ids.
//     Every read ANDs liveRows (joinFilters). Both are timed by
//     auditpipe_localstore_query_duration_seconds (querymetrics.go).
//   - Clusters, UsedBytes (compressed parts plus index, as the storage
//     reports them), Close (a last checkpoint; it lets running merges
//     end first: lib/logstorage v1.52.2 closes a partition's index under
//     a running merge, a data race the race detector reports).
//   - Retention (retention.go): PruneStep by age drops the per-day
//     partitions wholly before the bound (rounded down to
//     Config.AgeGranularity, default a day, so events may stay up to a
//     day past MaxAge) and, for a finer granularity, deletes the bound's
//     day's older rows by a VictoriaLogs delete task (a rewrite of that
//     day's parts); events without a stageTimestamp stay. By size: whole
//     oldest days (a day's event file goes only with its day), never the
//     newest, until under 95 % of MaxBytes; a store whose newest day alone
//     is over stays over, with a warning. Counts are exact (counted before and
//     after, writers held off), the identity cache forgets what went;
//     RunRetention, the used-bytes and pruned metrics. A delete task
//     leaves, of each block it deletes part of, the first row's
//     timestamp without fields: every query must AND liveRows
//     (stage:*) to skip it.
//
// What does not:
//   - Page and total are two LogsQL queries, not one snapshot: a page
//     read while events are written may disagree with its total by them.
//   - Known differences from the SQLite store: Query.Text with a wildcard
//     inside a word (a*b) is exact here (SQLite's index answers a
//     superset); copies under a reused auditID after the first are
//     ordered by a hash of the event, not by arrival; events the SQLite
//     store refuses (e.g. a non-numeric responseStatus.code) are stored
//     but not found by a Search that takes the fallback; an event with
//     one key twice (duplicate JSON members, or member names that
//     flatten.SanitizeKey makes equal) is matched and grouped by the
//     last value here, by the first in SQLite (key:value on a JSON path,
//     natively and through the fallback's prefilter alike).
//
// Process-wide effects (forced by the dependency, done once in Open):
// the global flag set is parsed (empty) if nobody did, and VictoriaMetrics'
// logger, which writes to stderr in its own format, is set to WARN.
// Storage I/O errors end the process (VictoriaMetrics' logger.Panicf).
package vlstore
