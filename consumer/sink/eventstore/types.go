package eventstore

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/auditpipe/auditpipe/consumer/search/cql"
)

// WriteResult counts what one Store.Write call did with its values.
// Inserted+Duplicates+Invalid equals the number of values.
type WriteResult struct {
	// Inserted values were new and are now stored.
	Inserted int
	// Reused counts the inserted values that share cluster, auditID and
	// stage with a different event stored before them (a client reused
	// the Audit-ID header): they are stored with auditpipe.auditIDReused
	// set. They are included in Inserted.
	Reused int
	// Duplicates were already stored, by an earlier call or earlier in
	// the same call: an apiserver retry or a Kafka redelivery (same
	// cluster, auditID, stage and content). They changed nothing.
	Duplicates int
	// Invalid values are not storable ProcessedEvents and were skipped.
	Invalid int
	// InvalidValues says which values were invalid and why, in input order
	// (len(InvalidValues) == Invalid), so that the caller can log them or
	// send them to the DLQ: they will never become valid by retrying.
	InvalidValues []InvalidValue
}

// InvalidValue is one value that Write skipped.
type InvalidValue struct {
	Index  int    // position in the values given to Write
	Reason string // human-readable, e.g. "missing auditpipe.cluster"
}

// Limits of Query.Limit, the same as CLS's LIMIT.
const (
	DefaultLimit = 100
	MaxLimit     = 10000
)

// Query selects events. Empty fields do not filter; all set fields must match
// (AND). String filters are exact, case-sensitive matches on the field.
type Query struct {
	Cluster   string // auditpipe.cluster
	Verb      string // verb
	User      string // user.username
	Resource  string // objectRef.resource
	Namespace string // objectRef.namespace
	// From and To bound stageTimestamp, half-open: From <= t < To, so that
	// consecutive windows neither overlap nor leave gaps. Zero = unbounded.
	From, To time.Time
	// Text is a full-text search over every value of the event (not the
	// keys, not auditpipe's own fields): all words must occur, "quoted
	// words" must occur as a phrase, and a trailing * matches a prefix
	// (kube*). Matching is case-insensitive and on CLS's words (split at
	// CLS's delimiters, cql.Delimiters), so "kube-system" finds
	// system:serviceaccount:kube-system:default but "kube" does not.
	Text string
	// Limit is the page size: DefaultLimit when <= 0, at most MaxLimit.
	Limit int
}

// QueryResult is one page of matching events.
type QueryResult struct {
	// Events are the stored ProcessedEvent JSON documents, newest first by
	// stageTimestamp, then by cluster, auditID and stage for a stable order.
	Events []json.RawMessage
	// Total counts every matching event, not just this page.
	Total int
}

// SearchRequest is a CLS query over the store, with the console's separate
// time range and cluster.
type SearchRequest struct {
	// Query is the parsed query (cql.Parse). Nil matches every event.
	Query *cql.Query
	// Cluster, when set, keeps only this auditpipe.cluster.
	Cluster string
	// From and To bound stageTimestamp (__TIMESTAMP__), half-open:
	// From <= t < To. Zero = unbounded.
	From, To time.Time
	// Limit is the page size of an event search: DefaultLimit when <= 0,
	// at most MaxLimit. An analysis part has its own LIMIT and ignores
	// this one, like CLS's API.
	Limit int
	// Cursor continues an event search where the page that returned it
	// ended. Not allowed with an analysis part.
	Cursor string
}

// SearchResult is either a page of events (no analysis part) or the rows of
// the analysis part.
type SearchResult struct {
	// Events are ProcessedEvent JSON documents, newest first (by
	// stageTimestamp, then cluster, auditID, stage, then the order in which
	// they were stored).
	Events []json.RawMessage
	// Total counts every matching event, not only this page.
	Total int
	// Cursor fetches the next page; "" when this page is the last.
	Cursor string

	// Columns and Rows are the analysis part's result. Values are int64,
	// float64, string or nil.
	Columns []string
	Rows    [][]any
}

// InvalidSearchError is a search the caller got wrong (bad cursor, an
// analysis the engine rejects); parse and compile errors are *cql.Error.
// The search API answers it with 400.
type InvalidSearchError struct {
	Param string // the request parameter at fault: "q" or "cursor"
	Msg   string
}

func (e *InvalidSearchError) Error() string { return e.Param + ": " + e.Msg }

// Retention bounds the store by age and by size. Zero MaxAge and MaxBytes
// keep everything.
type Retention struct {
	// MaxAge deletes events whose stageTimestamp is older. Events without
	// a stageTimestamp never expire by age (they do by size, first).
	MaxAge time.Duration `json:"maxAge"`
	// MaxBytes deletes the oldest events while the store's used bytes
	// (Store.UsedBytes) exceed it. What the files on disk do is the
	// engine's: SQLite's file does not shrink (freed pages are reused by
	// new events), so it settles at about MaxBytes plus the WAL.
	MaxBytes int64 `json:"maxBytes"`
	// Interval is the pause between rounds when there was nothing to do.
	// Default 1m.
	Interval time.Duration `json:"interval"`
	// StepRows is, for an engine that deletes event by event (SQLite),
	// the most events one step deletes, in one transaction: it bounds how
	// long retention holds the write lock, so the consumer's writes wait
	// at most one step. Default 2000.
	StepRows int `json:"stepRows"`
}

// WithDefaults fills zero fields.
func (r Retention) WithDefaults() Retention {
	if r.Interval <= 0 {
		r.Interval = time.Minute
	}
	if r.StepRows <= 0 {
		r.StepRows = 2000
	}
	return r
}

// Validate reports impossible settings.
func (r Retention) Validate() error {
	switch {
	case r.MaxAge < 0:
		return fmt.Errorf("retention.maxAge: %s is negative", r.MaxAge)
	case r.MaxBytes < 0:
		return fmt.Errorf("retention.maxBytes: %d is negative", r.MaxBytes)
	case r.MaxBytes > 0 && r.MaxBytes < 1<<20:
		return fmt.Errorf("retention.maxBytes: %d is under 1 MiB; the schema alone takes a good part of that", r.MaxBytes)
	}
	return nil
}
