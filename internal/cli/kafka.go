package cli

import (
	"errors"
	"fmt"
	"os"
	"strings"

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
