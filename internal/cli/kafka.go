package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/auditpipe/auditpipe/internal/kafka"
)

// ValidateKafka checks a stage's kafka: block (kafka.Connection) and reads
// the files it names, so that `validate` and the start of `run` report a
// missing or unreadable CA, certificate, key or password file, or an
// unknown SASL mechanism, naming the config key and the file.
func ValidateKafka(c kafka.Connection) error {
	var errs []error
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("kafka.brokers: none given"))
	}
	for _, b := range c.Brokers {
		if strings.TrimSpace(b) == "" {
			errs = append(errs, fmt.Errorf("kafka.brokers: empty address in %q", c.Brokers))
			break
		}
	}
	t := c.TLS
	files := []struct{ key, path string }{
		{"kafka.tls.caFile", t.CAFile}, {"kafka.tls.certFile", t.CertFile}, {"kafka.tls.keyFile", t.KeyFile},
		{"kafka.sasl.passwordFile", c.SASL.PasswordFile},
	}
	unreadable := false
	for _, f := range files {
		if f.path == "" {
			continue
		}
		if _, err := os.ReadFile(f.path); err != nil {
			errs = append(errs, fmt.Errorf("%s %s: %w", f.key, f.path, err))
			unreadable = true
		}
	}
	if !unreadable {
		// The files read; now their contents and the combinations.
		if err := t.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("kafka.%w", err))
		}
		if err := c.SASL.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("kafka.%w", err))
		}
	} else if err := (kafka.SASL{Mechanism: c.SASL.Mechanism, Username: "x", Password: "x"}).Validate(); err != nil {
		errs = append(errs, fmt.Errorf("kafka.sasl.mechanism: %w", err))
	}
	return errors.Join(errs...)
}

// AwaitKafka calls probe, a cheap request to the brokers, until it
// succeeds or ctx ends, backing off from 100ms to 10s and logging each
// failure (the adapters' errors name the broker). Until then the "kafka"
// readiness check reports the last failure. Stages call it before they
// build their clients, several of which connect when created: a wrong
// password or an unreachable cluster then leaves a running, unready
// process that says why, not a crash loop, and picks up a corrected
// password file (read at every attempt) by itself.
func AwaitKafka(ctx context.Context, env Env, brokers []string, probe func(context.Context) error) error {
	var mu sync.Mutex
	last := errors.New("not connected yet")
	env.Health.Add("kafka", func(context.Context) error {
		mu.Lock()
		defer mu.Unlock()
		return last
	})
	backoff := 100 * time.Millisecond
	for {
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := probe(pctx)
		cancel()
		mu.Lock()
		last = err
		mu.Unlock()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("kafka brokers %v: %w", brokers, ctx.Err())
		}
		env.Logger.Error("kafka not reachable; retrying", "brokers", brokers, "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return fmt.Errorf("kafka brokers %v: %w", brokers, ctx.Err())
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}
