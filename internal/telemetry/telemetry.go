// Package telemetry holds what every auditpipe process exposes about
// itself: structured logs (log/slog), Prometheus metrics on an injected
// registry, and health endpoints that report what the process depends on.
package telemetry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// NewLogger returns a slog logger writing to w. level is debug, info, warn
// or error; format is text or json. A line carries each key once: a
// With("component", ...) below another replaces the outer value instead of
// repeating the key (the innermost, most specific value wins).
func NewLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(format) {
	case "text", "":
		return slog.New(&uniqueKeys{inner: slog.NewTextHandler(w, opts)}), nil
	case "json":
		return slog.New(&uniqueKeys{inner: slog.NewJSONHandler(w, opts)}), nil
	}
	return nil, fmt.Errorf("log format %q: want text or json", format)
}

// uniqueKeys keeps the attributes of With itself, one per key (a later
// one replaces an earlier one in place), and adds them to each record, so
// that a chain of With calls never writes a key twice. The record's own
// attributes win over With's.
type uniqueKeys struct {
	inner slog.Handler // without the attributes in attrs
	attrs []slog.Attr
}

func (h *uniqueKeys) Enabled(ctx context.Context, l slog.Level) bool { return h.inner.Enabled(ctx, l) }

func (h *uniqueKeys) Handle(ctx context.Context, r slog.Record) error {
	if len(h.attrs) == 0 {
		return h.inner.Handle(ctx, r)
	}
	own := make(map[string]bool, r.NumAttrs())
	r.Attrs(func(a slog.Attr) bool { own[a.Key] = true; return true })
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	for _, a := range h.attrs {
		if !own[a.Key] {
			out.AddAttrs(a)
		}
	}
	r.Attrs(func(a slog.Attr) bool { out.AddAttrs(a); return true })
	return h.inner.Handle(ctx, out)
}

func (h *uniqueKeys) WithAttrs(as []slog.Attr) slog.Handler {
	attrs := append([]slog.Attr(nil), h.attrs...)
next:
	for _, a := range as {
		for i := range attrs {
			if attrs[i].Key == a.Key {
				attrs[i] = a
				continue next
			}
		}
		attrs = append(attrs, a)
	}
	return &uniqueKeys{inner: h.inner, attrs: attrs}
}

// WithGroup hands the attributes so far to the inner handler: those after
// the group are nested under it and cannot collide with them.
func (h *uniqueKeys) WithGroup(name string) slog.Handler {
	return &uniqueKeys{inner: h.inner.WithAttrs(h.attrs).WithGroup(name)}
}

// NewRegistry returns a registry with the Go runtime and process collectors,
// for one process. Components register their own metrics on it.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Check reports whether one dependency is ready; nil means ready.
type Check func(ctx context.Context) error

// Health collects readiness checks from the components of a process.
type Health struct {
	mu     sync.Mutex
	checks map[string]Check
}

// NewHealth returns an empty Health.
func NewHealth() *Health { return &Health{checks: map[string]Check{}} }

// Add registers a named readiness check, replacing one of the same name.
func (h *Health) Add(name string, c Check) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.checks[name] = c
}

// Ready runs every check and returns the failures by name.
func (h *Health) Ready(ctx context.Context) map[string]string {
	h.mu.Lock()
	names := make([]string, 0, len(h.checks))
	for n := range h.checks {
		names = append(names, n)
	}
	checks := make(map[string]Check, len(h.checks))
	for n, c := range h.checks {
		checks[n] = c
	}
	h.mu.Unlock()
	sort.Strings(names)
	failed := map[string]string{}
	for _, n := range names {
		if err := checks[n](ctx); err != nil {
			failed[n] = err.Error()
		}
	}
	return failed
}

// Mux returns a mux with /metrics for reg, /healthz (the process serves)
// and /readyz (every check passes; the body names failing checks).
func Mux(reg *prometheus.Registry, h *Health) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		failed := h.Ready(ctx)
		w.Header().Set("Content-Type", "application/json")
		if len(failed) > 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"ready": len(failed) == 0, "failed": failed})
	})
	return mux
}

// Serve serves Mux(reg, h) on addr in the background, for the stage
// binaries' --metrics-addr. The returned stop shuts the server down; it is
// best effort because it runs when the process is exiting anyway.
func Serve(addr string, reg *prometheus.Registry, h *Health, logger *slog.Logger) (stop func()) {
	srv := &http.Server{Addr: addr, Handler: Mux(reg, h), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("metrics server stopped", "addr", addr, "err", err)
		}
	}()
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}
}

// RegisterAll registers every collector on reg, or none: on the first
// failure it unregisters those already registered, so a component that
// fails to start can be created again on the same registry.
func RegisterAll(reg prometheus.Registerer, cs ...prometheus.Collector) error {
	for i, c := range cs {
		if err := reg.Register(c); err != nil {
			UnregisterAll(reg, cs[:i]...)
			return fmt.Errorf("register metrics: %w", err)
		}
	}
	return nil
}

// UnregisterAll unregisters cs from reg; a nil reg is a no-op.
func UnregisterAll(reg prometheus.Registerer, cs ...prometheus.Collector) {
	if reg == nil {
		return
	}
	for _, c := range cs {
		reg.Unregister(c)
	}
}
