package cli

import (
	"flag"
)

// Kafka is a stage's kafka: section until kafka.Connection (internal/kafka,
// with TLS and SASL) replaces it; it has the same keys and flag names, so
// the switch changes no config file and no command line.
type Kafka struct {
	Brokers  []string `json:"brokers"`
	ClientID string   `json:"clientID"`
}

// RegisterFlags binds --kafka-brokers (alias --brokers) and
// --kafka-client-id to k.
func (k *Kafka) RegisterFlags(fs *flag.FlagSet) {
	brokers := NewListValue(&k.Brokers)
	fs.Var(brokers, "kafka-brokers", "comma-separated Kafka bootstrap `addresses` (kafka.brokers)")
	fs.Var(brokers, "brokers", "alias of --kafka-brokers")
	fs.StringVar(&k.ClientID, "kafka-client-id", k.ClientID, "Kafka client `id` (kafka.clientID)")
}
