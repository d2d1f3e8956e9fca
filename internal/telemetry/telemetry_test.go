package telemetry

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
)

func TestReadyzReportsFailingChecks(t *testing.T) {
	h := NewHealth()
	h.Add("kafka", func(context.Context) error { return nil })
	srv := httptest.NewServer(Mux(NewRegistry(), h))
	defer srv.Close()

	get := func(path string) (int, string) {
		resp, err := http.Get(srv.URL + path)
		require.NoError(t, err)
		defer resp.Body.Close()
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		return resp.StatusCode, b.String()
	}
	code, _ := get("/readyz")
	require.Equal(t, http.StatusOK, code)

	h.Add("store", func(context.Context) error { return errors.New("disk full") })
	code, body := get("/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Contains(t, body, "disk full")

	code, _ = get("/healthz")
	require.Equal(t, http.StatusOK, code)
	code, body = get("/metrics")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, "go_goroutines")
}

func TestNewLoggerRejectsUnknownLevel(t *testing.T) {
	_, err := NewLogger(&bytes.Buffer{}, "loud", "text")
	require.Error(t, err)
	_, err = NewLogger(&bytes.Buffer{}, "info", "xml")
	require.Error(t, err)
	l, err := NewLogger(&bytes.Buffer{}, "debug", "json")
	require.NoError(t, err)
	require.NotNil(t, l)
}

func TestRegisterAllIsAllOrNothing(t *testing.T) {
	reg := NewRegistry()
	a := prometheus.NewCounter(prometheus.CounterOpts{Name: "auditpipe_test_a_total", Help: "a"})
	b := prometheus.NewCounter(prometheus.CounterOpts{Name: "auditpipe_test_b_total", Help: "b"})
	clash := prometheus.NewCounter(prometheus.CounterOpts{Name: "auditpipe_test_b_total", Help: "b"})
	require.NoError(t, RegisterAll(reg, b))
	require.Error(t, RegisterAll(reg, a, clash))
	// a was rolled back, so it registers again.
	require.NoError(t, RegisterAll(reg, a))
	UnregisterAll(reg, a, b)
	require.NoError(t, RegisterAll(reg, a, b))
	UnregisterAll(nil, a)
}

func TestLoggerWritesEachKeyOnce(t *testing.T) {
	var buf bytes.Buffer
	logger, err := NewLogger(&buf, "info", "text")
	if err != nil {
		t.Fatal(err)
	}
	logger.With("component", "producer", "a", 1).With("component", "webhook").Info("hello", "b", 2)
	line := buf.String()
	if n := strings.Count(line, "component="); n != 1 {
		t.Fatalf("component written %d times: %s", n, line)
	}
	for _, want := range []string{"component=webhook", "a=1", "b=2"} {
		if !strings.Contains(line, want) {
			t.Fatalf("missing %s: %s", want, line)
		}
	}
	buf.Reset()
	logger.With("k", "outer").Info("own wins", "k", "inner")
	if line := buf.String(); strings.Count(line, "k=") != 1 || !strings.Contains(line, "k=inner") {
		t.Fatalf("record attribute should replace With's: %s", line)
	}
}
