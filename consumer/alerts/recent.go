package alerts

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/auditpipe/auditpipe/schemas"
)

// AlertsPath is where APIHandler serves the recent alerts.
const AlertsPath = "/api/v1/alerts"

// DefaultKeep is how many recent alerts a Handler keeps for the API.
const DefaultKeep = 10000

// Entry is an alert the handler read, with what became of it.
type Entry struct {
	schemas.Alert
	Outcome string `json:"outcome" desc:"delivered, duplicate, rate_limited or failed."`
}

// Recent holds the last alerts a Handler read, newest last, for
// GET /api/v1/alerts. It is memory only: a restart starts empty (the
// alerts topic is the durable record), and each replica holds the alerts
// of its own partitions.
type Recent struct {
	mu      sync.Mutex
	entries []Entry
	next    int
	full    bool
}

// NewRecent keeps the last n entries.
func NewRecent(n int) *Recent {
	if n <= 0 {
		n = DefaultKeep
	}
	return &Recent{entries: make([]Entry, n)}
}

func (r *Recent) add(e Entry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.entries[r.next] = e
	r.next++
	if r.next == len(r.entries) {
		r.next, r.full = 0, true
	}
}

// Filter selects alerts; zero fields select everything.
type Filter struct {
	Cluster string
	Rule    string
	// MinSeverity keeps alerts at this severity or above.
	MinSeverity string
	// From and To bound the alert's time (the event's stageTimestamp):
	// From inclusive, To exclusive.
	From, To time.Time
	Limit    int
}

var severityRank = map[string]int{"info": 0, "low": 1, "medium": 2, "high": 3, "critical": 4}

// List returns the matching entries, newest first, at most f.Limit
// (default 100), and how many matched in all.
func (r *Recent) List(f Filter) ([]Entry, int) {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	r.mu.Lock()
	n := r.next
	if r.full {
		n = len(r.entries)
	}
	all := make([]Entry, 0, n)
	for i := 1; i <= n; i++ {
		all = append(all, r.entries[(r.next-i+len(r.entries))%len(r.entries)])
	}
	r.mu.Unlock()
	var out []Entry
	total := 0
	for _, e := range all {
		switch {
		case f.Cluster != "" && e.Cluster != f.Cluster,
			f.Rule != "" && e.Rule != f.Rule,
			f.MinSeverity != "" && severityRank[e.Severity] < severityRank[f.MinSeverity],
			!f.From.IsZero() && e.Time.Before(f.From),
			!f.To.IsZero() && !e.Time.Before(f.To):
			continue
		}
		total++
		if len(out) < f.Limit {
			out = append(out, e)
		}
	}
	return out, total
}

// AlertsResponse is the body of GET /api/v1/alerts.
type AlertsResponse struct {
	Alerts []Entry `json:"alerts"`
	Total  int     `json:"total"`
}

// APIHandler serves GET /api/v1/alerts?cluster=&rule=&severity=&from=&to=&limit=
// from r. severity is a minimum; from and to are RFC 3339 or unix
// milliseconds.
func APIHandler(r *Recent) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodGet {
			w.Header().Set("Allow", http.MethodGet)
			writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "use GET"})
			return
		}
		f, err := parseFilter(req)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		entries, total := r.List(f)
		if entries == nil {
			entries = []Entry{}
		}
		writeJSON(w, http.StatusOK, AlertsResponse{Alerts: entries, Total: total})
	})
}

func parseFilter(req *http.Request) (Filter, error) {
	var f Filter
	for name, vals := range req.URL.Query() {
		if len(vals) > 1 {
			return f, fmt.Errorf("%s: given more than once", name)
		}
		v := vals[0]
		var err error
		switch name {
		case "cluster":
			f.Cluster = v
		case "rule":
			f.Rule = v
		case "severity":
			if _, ok := severityRank[v]; !ok {
				return f, fmt.Errorf("severity: %q is not one of info, low, medium, high, critical", v)
			}
			f.MinSeverity = v
		case "from":
			f.From, err = parseTime(v)
		case "to":
			f.To, err = parseTime(v)
		case "limit":
			f.Limit, err = strconv.Atoi(v)
			if err == nil && (f.Limit < 1 || f.Limit > DefaultKeep) {
				err = fmt.Errorf("want 1 to %d", DefaultKeep)
			}
		default:
			return f, fmt.Errorf("%s: unknown parameter; known: cluster, rule, severity, from, to, limit", name)
		}
		if err != nil {
			return f, fmt.Errorf("%s: %w", name, err)
		}
	}
	return f, nil
}

// parseTime reads RFC 3339 or unix milliseconds.
func parseTime(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.UnixMilli(ms).UTC(), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, errors.New("want RFC 3339 or unix milliseconds")
	}
	return t, nil
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
