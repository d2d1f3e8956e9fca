package webhook

import (
	"context"
	"net/http"
	"time"
)

// contextWithTimeout bounds publishing by the configured timeout and by the
// ?timeout= the apiserver appends (less a second, so the apiserver gets an
// answer before it gives up on the request and counts a failure).
func contextWithTimeout(r *http.Request, limit time.Duration) (context.Context, context.CancelFunc) {
	if q := r.URL.Query().Get("timeout"); q != "" {
		if d, err := time.ParseDuration(q); err == nil && d > 2*time.Second && d-time.Second < limit {
			limit = d - time.Second
		}
	}
	return context.WithTimeout(r.Context(), limit)
}
