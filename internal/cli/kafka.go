package cli

import "github.com/auditpipe/auditpipe/internal/kafka"

// Kafka is a stage's kafka: section: brokers, clientID, tls and sasl, with
// the --kafka-* flags (and --brokers, the older name of --kafka-brokers)
// bound by its RegisterFlags. It is kafka.Connection, so that every client
// of a stage connects the same way (GroupConfig, ProducerConfig,
// ReaderConfig and the others fill them in).
type Kafka = kafka.Connection
