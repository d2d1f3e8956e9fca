package search

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/auditpipe/auditpipe/consumer/sink/eventstore"
)

// EventsPath is where NewHandler serves the events API.
const EventsPath = "/api/v1/events"

// Querier runs a query. Every eventstore.Store satisfies it.
type Querier interface {
	Query(ctx context.Context, q eventstore.Query) (eventstore.QueryResult, error)
}

// Store is what the API reads: the field filters of /api/v1/events and the
// CLS queries of /api/v1/search. Every eventstore.Store satisfies it.
type Store interface {
	Querier
	Search(ctx context.Context, req eventstore.SearchRequest) (eventstore.SearchResult, error)
}

// EventsResponse is the body of a successful GET /api/v1/events.
type EventsResponse struct {
	Events []json.RawMessage `json:"events"`
	Total  int               `json:"total"`
}

// ErrorResponse is the body of a failed request. Parameter names the query
// parameter at fault, when there is one.
type ErrorResponse struct {
	Error     string `json:"error"`
	Parameter string `json:"parameter,omitempty"`
	// Position is the byte offset of a query error in q.
	Position *int `json:"position,omitempty"`
}

// NewHandler returns the read-only search API:
//
//	GET /api/v1/events?cluster=&verb=&user=&resource=&namespace=&q=&from=&to=&limit=
//	GET /api/v1/search?q=&from=&to=&cluster=&limit=&cursor=
//
// from and to take RFC 3339 or unix milliseconds and bound stageTimestamp
// (from inclusive, to exclusive). Unknown parameters are rejected so that a
// typo (users=bob) is not silently a query for everything.
// It does no authentication: wrap it with ProtectAPI (or RequireToken)
// when it listens beyond loopback.
func NewHandler(store Store, logger *slog.Logger) http.Handler {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	h := &handler{store: store, logger: logger}
	mux := http.NewServeMux()
	mux.HandleFunc(EventsPath, h.events)
	mux.HandleFunc(SearchPath, h.search)
	return mux
}

type handler struct {
	store  Store
	logger *slog.Logger
}

// paramError is a bad query parameter, answered with 400.
type paramError struct {
	param, msg string
}

func (e *paramError) Error() string { return fmt.Sprintf("parameter %s: %s", e.param, e.msg) }

func (h *handler) events(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		writeJSON(w, http.StatusMethodNotAllowed, ErrorResponse{Error: "method " + r.Method + " not allowed, use GET"})
		return
	}
	q, err := parseQuery(r.URL.Query())
	if err != nil {
		var pe *paramError
		if errors.As(err, &pe) {
			writeJSON(w, http.StatusBadRequest, ErrorResponse{Error: pe.Error(), Parameter: pe.param})
			return
		}
		writeJSON(w, http.StatusBadRequest, ErrorResponse{Error: err.Error()})
		return
	}
	res, err := h.store.Query(r.Context(), q)
	if err != nil {
		if r.Context().Err() != nil {
			// The client went away; nobody reads the answer.
			h.logger.Debug("search canceled", "err", err)
			return
		}
		// Database details stay in the log, not in the answer.
		h.logger.Error("search failed", "err", err, "query", r.URL.RawQuery)
		writeJSON(w, http.StatusInternalServerError, ErrorResponse{Error: "query failed"})
		return
	}
	if res.Events == nil {
		res.Events = []json.RawMessage{} // "events":[] rather than null
	}
	writeJSON(w, http.StatusOK, EventsResponse{Events: res.Events, Total: res.Total})
}

// parseQuery validates the query parameters of GET /api/v1/events.
func parseQuery(v url.Values) (eventstore.Query, error) {
	var q eventstore.Query
	// Sorted, so that of several bad parameters the same one is reported.
	for _, name := range slices.Sorted(maps.Keys(v)) {
		vals := v[name]
		if len(vals) > 1 {
			return q, &paramError{name, "given more than once"}
		}
		val := vals[0]
		switch name {
		case "cluster":
			q.Cluster = val
		case "verb":
			q.Verb = val
		case "user":
			q.User = val
		case "resource":
			q.Resource = val
		case "namespace":
			q.Namespace = val
		case "q":
			q.Text = val
		case "from", "to":
			t, err := ParseTime(val)
			if err != nil {
				return q, &paramError{name, err.Error()}
			}
			if name == "from" {
				q.From = t
			} else {
				q.To = t
			}
		case "limit":
			n, err := strconv.Atoi(val)
			if err != nil || n < 1 || n > eventstore.MaxLimit {
				return q, &paramError{name, fmt.Sprintf("want an integer from 1 to %d, got %q", eventstore.MaxLimit, val)}
			}
			q.Limit = n
		default:
			return q, &paramError{name, "unknown parameter; known: cluster, verb, user, resource, namespace, q, from, to, limit"}
		}
	}
	if !q.From.IsZero() && !q.To.IsZero() && !q.From.Before(q.To) {
		return q, &paramError{"to", "must be after from"}
	}
	return q, nil
}

// ParseTime reads a time as RFC 3339 (2024-05-01T12:00:00Z, fractions
// allowed) or as unix milliseconds (1714564800000). An empty string is the
// zero time (unbounded).
func ParseTime(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, nil
	}
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
		if ms < 0 {
			return time.Time{}, fmt.Errorf("unix milliseconds must not be negative, got %d", ms)
		}
		return time.UnixMilli(ms).UTC(), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("want RFC 3339 (2024-05-01T12:00:00Z) or unix milliseconds, got %q", s)
	}
	return t, nil
}

func writeJSON(w http.ResponseWriter, code int, body any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	// An error here means the client is gone; there is nobody to tell.
	_ = json.NewEncoder(w).Encode(body)
}
