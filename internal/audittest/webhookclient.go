package audittest

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
	"k8s.io/apiserver/pkg/audit"
	"k8s.io/apiserver/plugin/pkg/audit/buffered"
	"k8s.io/apiserver/plugin/pkg/audit/webhook"
)

// Mode is the apiserver's --audit-webhook-mode.
type Mode string

// The webhook modes of kube-apiserver.
const (
	// ModeBlocking sends each ProcessEvents call synchronously.
	ModeBlocking Mode = "blocking"
	// ModeBatch buffers events and sends batches from a goroutine, as
	// kube-apiserver does by default.
	ModeBatch Mode = "batch"
)

// WebhookBackend returns kube-apiserver's webhook audit backend posting to
// url, configured through a kubeconfig file exactly as an apiserver is.
// In batch mode it is wrapped in the apiserver's buffered backend with
// small batches so tests exercise several requests. Shutdown (which
// flushes the batch buffer) is registered with tb.Cleanup; call it earlier
// to flush before asserting.
func WebhookBackend(tb testing.TB, url string, mode Mode) audit.Backend {
	tb.Helper()
	kubeconfig := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: auditpipe
  cluster:
    server: %s
contexts:
- name: auditpipe
  context: {cluster: auditpipe, user: apiserver}
current-context: auditpipe
users:
- name: apiserver
  user: {}
`, url)
	path := filepath.Join(tb.TempDir(), "audit-webhook.kubeconfig")
	if err := os.WriteFile(path, []byte(kubeconfig), 0o600); err != nil {
		tb.Fatal(err)
	}
	return WebhookBackendFromKubeconfig(tb, path, mode)
}

// WebhookBackendFromKubeconfig is WebhookBackend for a kubeconfig file
// written by the caller, e.g. one with TLS and a client certificate or a
// bearer token, exactly as kube-apiserver's --audit-webhook-config-file.
func WebhookBackendFromKubeconfig(tb testing.TB, path string, mode Mode) audit.Backend {
	tb.Helper()
	// The apiserver's default retry backoff starts at 10s; a shorter one
	// keeps retried requests inside a test's patience.
	backoff := wait.Backoff{Duration: 100 * time.Millisecond, Factor: 1.5, Jitter: 0.2, Steps: 5}
	b, err := webhook.NewBackend(path, auditv1.SchemeGroupVersion, backoff, nil)
	if err != nil {
		tb.Fatalf("apiserver webhook backend: %v", err)
	}
	if mode == ModeBatch {
		b = buffered.NewBackend(b, buffered.BatchConfig{
			BufferSize:    10000,
			MaxBatchSize:  50,
			MaxBatchWait:  50 * time.Millisecond,
			AsyncDelegate: true,
		})
	}
	stop := make(chan struct{})
	if err := b.Run(stop); err != nil {
		tb.Fatalf("run webhook backend: %v", err)
	}
	var stopped bool
	tb.Cleanup(func() {
		if !stopped {
			close(stop)
			b.Shutdown()
		}
	})
	return &stoppable{Backend: b, stop: func() {
		if !stopped {
			stopped = true
			close(stop)
			b.Shutdown()
		}
	}}
}

// stoppable lets Shutdown close the stop channel first, which is what makes
// the buffered backend flush and return.
type stoppable struct {
	audit.Backend
	stop func()
}

func (s *stoppable) Shutdown() { s.stop() }
