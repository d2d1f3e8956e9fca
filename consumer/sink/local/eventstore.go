package local

import "github.com/auditpipe/auditpipe/consumer/sink/eventstore"

// *Store is the SQLite engine of the eventstore contract (decision 0026,
// migration step 1).
var _ eventstore.Store = (*Store)(nil)

// The request and result types are the engine-neutral ones of
// consumer/sink/eventstore. These aliases keep this package's code and
// tests as they were; code outside the package names the eventstore types.
type (
	WriteResult        = eventstore.WriteResult
	InvalidValue       = eventstore.InvalidValue
	Query              = eventstore.Query
	QueryResult        = eventstore.QueryResult
	SearchRequest      = eventstore.SearchRequest
	SearchResult       = eventstore.SearchResult
	InvalidSearchError = eventstore.InvalidSearchError
	Retention          = eventstore.Retention
)

// Limits of Query.Limit and SearchRequest.Limit (eventstore's).
const (
	DefaultLimit = eventstore.DefaultLimit
	MaxLimit     = eventstore.MaxLimit
)
