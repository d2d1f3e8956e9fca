package kafkatest

import (
	"fmt"
	"strings"

	"github.com/auditpipe/auditpipe/internal/kafka"
)

// KafkaYAML is the kafka: block of a stage's configuration file that
// connects as conn does, files (caFile, passwordFile) by name as an
// operator writes them: the stages' end-to-end tests over TLS and SASL
// load their Kafka settings the way production does.
func KafkaYAML(conn kafka.Connection) string {
	var b strings.Builder
	fmt.Fprintf(&b, "kafka:\n  brokers: [%s]\n", strings.Join(quoteAll(conn.Brokers), ", "))
	if conn.ClientID != "" {
		fmt.Fprintf(&b, "  clientID: %q\n", conn.ClientID)
	}
	if t := conn.TLS; t.Enabled {
		fmt.Fprintf(&b, "  tls:\n    enabled: true\n")
		for _, kv := range [][2]string{{"caFile", t.CAFile}, {"certFile", t.CertFile}, {"keyFile", t.KeyFile}, {"serverName", t.ServerName}} {
			if kv[1] != "" {
				fmt.Fprintf(&b, "    %s: %q\n", kv[0], kv[1])
			}
		}
	}
	if s := conn.SASL; s.Enabled() {
		fmt.Fprintf(&b, "  sasl:\n    mechanism: %s\n    username: %q\n", s.Mechanism, s.Username)
		if s.PasswordFile != "" {
			fmt.Fprintf(&b, "    passwordFile: %q\n", s.PasswordFile)
		} else {
			fmt.Fprintf(&b, "    password: %q\n", s.Password)
		}
	}
	return b.String()
}

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = fmt.Sprintf("%q", s)
	}
	return out
}
