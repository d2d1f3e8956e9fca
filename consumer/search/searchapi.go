package search

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/auditpipe/auditpipe/consumer/search/cql"
	"github.com/auditpipe/auditpipe/consumer/sink/eventstore"
)

// SearchPath is where NewHandler serves CLS queries.
const SearchPath = "/api/v1/search"

// SearchTimeout bounds one search on the server, so that an expensive
// analysis sent over the network cannot hold the store's read connections
// indefinitely. The store stops the search when the context ends.
const SearchTimeout = 60 * time.Second

// SearchEventsResponse is the body of GET /api/v1/search for a query without
// an analysis part.
type SearchEventsResponse struct {
	Events []json.RawMessage `json:"events"`
	// Total counts every match, not only this page.
	Total int `json:"total"`
	// Cursor, passed back as ?cursor=, fetches the next page; absent on
	// the last page.
	Cursor string `json:"cursor,omitempty"`
}

// SearchRowsResponse is the body of GET /api/v1/search for a query with an
// analysis part (| SELECT ...).
type SearchRowsResponse struct {
	Columns []string `json:"columns"`
	Rows    [][]any  `json:"rows"`
}

func (h *handler) search(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		writeJSON(w, http.StatusMethodNotAllowed, ErrorResponse{Error: "method " + r.Method + " not allowed, use GET"})
		return
	}
	req, err := parseSearch(r.URL.Query())
	if err != nil {
		writeSearchError(w, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), SearchTimeout)
	defer cancel()
	res, err := h.store.Search(ctx, req)
	if err != nil {
		var qe *cql.Error
		var ie *eventstore.InvalidSearchError
		if errors.As(err, &qe) || errors.As(err, &ie) {
			writeSearchError(w, err)
			return
		}
		if r.Context().Err() != nil {
			h.logger.Debug("search canceled", "err", err)
			return
		}
		if ctx.Err() != nil {
			writeJSON(w, http.StatusServiceUnavailable, ErrorResponse{Error: fmt.Sprintf("the search took longer than %s: narrow the time range or the query", SearchTimeout)})
			return
		}
		// Database details stay in the log, not in the answer.
		h.logger.Error("search failed", "err", err, "query", r.URL.RawQuery)
		writeJSON(w, http.StatusInternalServerError, ErrorResponse{Error: "query failed"})
		return
	}
	if req.Query != nil && req.Query.SQL != nil {
		rows := res.Rows
		if rows == nil {
			rows = [][]any{}
		}
		writeJSON(w, http.StatusOK, SearchRowsResponse{Columns: res.Columns, Rows: rows})
		return
	}
	events := res.Events
	if events == nil {
		events = []json.RawMessage{}
	}
	writeJSON(w, http.StatusOK, SearchEventsResponse{Events: events, Total: res.Total, Cursor: res.Cursor})
}

func writeSearchError(w http.ResponseWriter, err error) {
	var pe *paramError
	var qe *cql.Error
	var ie *eventstore.InvalidSearchError
	switch {
	case errors.As(err, &pe):
		writeJSON(w, http.StatusBadRequest, ErrorResponse{Error: pe.Error(), Parameter: pe.param})
	case errors.As(err, &qe):
		pos := qe.Pos
		writeJSON(w, http.StatusBadRequest, ErrorResponse{Error: "parameter q: " + qe.Error(), Parameter: "q", Position: &pos})
	case errors.As(err, &ie):
		writeJSON(w, http.StatusBadRequest, ErrorResponse{Error: "parameter " + ie.Error(), Parameter: ie.Param})
	default:
		writeJSON(w, http.StatusBadRequest, ErrorResponse{Error: err.Error()})
	}
}

// parseSearch validates the query parameters of GET /api/v1/search.
func parseSearch(v url.Values) (eventstore.SearchRequest, error) {
	var req eventstore.SearchRequest
	for _, name := range slices.Sorted(maps.Keys(v)) {
		vals := v[name]
		if len(vals) > 1 {
			return req, &paramError{name, "given more than once"}
		}
		val := vals[0]
		switch name {
		case "q":
			q, err := cql.Parse(val)
			if err != nil {
				return req, err
			}
			req.Query = q
		case "cluster":
			req.Cluster = val
		case "cursor":
			req.Cursor = val
		case "from", "to":
			t, err := ParseTime(val)
			if err != nil {
				return req, &paramError{name, err.Error()}
			}
			if name == "from" {
				req.From = t
			} else {
				req.To = t
			}
		case "limit":
			n, err := strconv.Atoi(val)
			if err != nil || n < 1 || n > eventstore.MaxLimit {
				return req, &paramError{name, fmt.Sprintf("want an integer from 1 to %d, got %q", eventstore.MaxLimit, val)}
			}
			req.Limit = n
		default:
			return req, &paramError{name, "unknown parameter; known: q, from, to, cluster, limit, cursor"}
		}
	}
	if !req.From.IsZero() && !req.To.IsZero() && !req.From.Before(req.To) {
		return req, &paramError{"to", "must be after from"}
	}
	return req, nil
}
