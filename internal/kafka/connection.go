package kafka

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
)

// Connection is how a program reaches the Kafka cluster: the `kafka:`
// block of every stage's configuration file and the --kafka-* flags. It
// fills the configs of the adapters' clients (GroupConfig and the others),
// so that every client of a program connects the same way.
type Connection struct {
	Brokers  []string `json:"brokers"`
	ClientID string   `json:"clientID"`
	TLS      TLS      `json:"tls"`
	SASL     SASL     `json:"sasl"`
}

// Validate checks the connection settings and reads the files they name
// (CA, client certificate and key, password file), so that `validate`
// and the start of `run` report a missing or unreadable file, or an
// unknown SASL mechanism, naming the config key (kafka.tls.caFile …) and
// the file. Every problem is reported, not only the first.
func (c Connection) Validate() error {
	var errs []error
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("kafka.brokers: no brokers given"))
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
	} else if err := (SASL{Mechanism: c.SASL.Mechanism, Username: "x", Password: "x"}).Validate(); err != nil {
		errs = append(errs, fmt.Errorf("kafka.sasl.mechanism: %w", err))
	}
	return errors.Join(errs...)
}

// RegisterFlags binds the --kafka-* flags (and --brokers, the older name of
// --kafka-brokers) to c's fields, with c's current values as defaults: load
// the configuration file into c first, then parse, and the flags override
// the file.
func (c *Connection) RegisterFlags(fs *flag.FlagSet) {
	brokers := (*brokerList)(&c.Brokers)
	fs.Var(brokers, "kafka-brokers", "Kafka bootstrap brokers, comma-separated host:port")
	fs.Var(brokers, "brokers", "alias of --kafka-brokers")
	fs.StringVar(&c.ClientID, "kafka-client-id", c.ClientID, "Kafka client id")
	fs.BoolVar(&c.TLS.Enabled, "kafka-tls", c.TLS.Enabled, "connect to the brokers with TLS")
	fs.StringVar(&c.TLS.CAFile, "kafka-tls-ca-file", c.TLS.CAFile, "PEM CA bundle the brokers' certificates are verified against (system roots if empty)")
	fs.StringVar(&c.TLS.CertFile, "kafka-tls-cert-file", c.TLS.CertFile, "client certificate (PEM) for mutual TLS")
	fs.StringVar(&c.TLS.KeyFile, "kafka-tls-key-file", c.TLS.KeyFile, "client key (PEM) for mutual TLS")
	fs.StringVar(&c.TLS.ServerName, "kafka-tls-server-name", c.TLS.ServerName, "name the brokers' certificates must carry (default: the broker's host)")
	fs.StringVar(&c.SASL.Mechanism, "kafka-sasl-mechanism", c.SASL.Mechanism, "SASL mechanism: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, or empty for none")
	fs.StringVar(&c.SASL.Username, "kafka-sasl-username", c.SASL.Username, "SASL user")
	fs.Func("kafka-sasl-password-file", "file holding the SASL password (replaces sasl.password of the config file)", func(v string) error {
		// The flag overrides the file's password, whichever way the file
		// gave it.
		c.SASL.PasswordFile = v
		c.SASL.Password = ""
		return nil
	})
}

// brokerList is a comma-separated flag value.
type brokerList []string

func (b *brokerList) String() string {
	if b == nil {
		return ""
	}
	return strings.Join(*b, ",")
}

func (b *brokerList) Set(v string) error {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		return errors.New("no broker address")
	}
	*b = out
	return nil
}

// AdminConfig configures an Admin or a GroupOffsets client.
type AdminConfig struct {
	Brokers  []string
	ClientID string
	// TLS encrypts the connections; zero means plaintext.
	TLS TLS
	// SASL authenticates the client; zero means none.
	SASL SASL
}

// GroupConfig returns a GroupConfig for group on topics that connects as c
// does; the caller sets the rest.
func (c Connection) GroupConfig(group string, topics ...string) GroupConfig {
	return GroupConfig{Brokers: c.Brokers, ClientID: c.ClientID, TLS: c.TLS, SASL: c.SASL, Group: group, Topics: topics}
}

// ProducerConfig returns a ProducerConfig that connects as c does.
func (c Connection) ProducerConfig() ProducerConfig {
	return ProducerConfig{Brokers: c.Brokers, ClientID: c.ClientID, TLS: c.TLS, SASL: c.SASL}
}

// TransactorConfig returns a TransactorConfig for group that connects as c
// does.
func (c Connection) TransactorConfig(group, transactionalID string) TransactorConfig {
	return TransactorConfig{ProducerConfig: c.ProducerConfig(), Group: group, TransactionalID: transactionalID}
}

// ReaderConfig returns a ReaderConfig that connects as c does.
func (c Connection) ReaderConfig() ReaderConfig {
	return ReaderConfig{Brokers: c.Brokers, ClientID: c.ClientID, TLS: c.TLS, SASL: c.SASL}
}

// AdminConfig returns an AdminConfig that connects as c does.
// (the same fields: a field added to one and not the other stops this
// compiling, which is the point).
func (c Connection) AdminConfig() AdminConfig {
	return AdminConfig(c)
}
