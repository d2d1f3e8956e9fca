// Package saramakafka implements the kafka port with github.com/IBM/sarama.
// It is the adapter for the places where sarama is strongest: an idempotent
// producer with acks=all, cooperative-sticky consumer groups that read only
// committed transactional data, and topic administration. Offsets are
// committed explicitly, one batch at a time, only after the handler
// succeeded and only while the partition is still owned, so delivery is
// at-least-once and a revoked partition is never committed by its old
// owner.
package saramakafka

import (
	"github.com/IBM/sarama"

	"github.com/auditpipe/auditpipe/internal/kafka"
)

// newConfig returns a sarama config with the settings every client of this
// package shares, authenticating with sasl (none when zero). A mechanism
// sarama does not know fails in sarama's own config validation when the
// client connects.
func newConfig(clientID string, sasl kafka.SASL) *sarama.Config {
	c := sarama.NewConfig()
	c.ClientID = clientID
	applySASL(c, sasl)
	// The protocol version sarama assumes for the cluster. 3.6 is new
	// enough for idempotent production, read-committed fetches and
	// cooperative rebalancing, and every request version it picks is still
	// accepted by Apache Kafka 3.9 and 4.x (which dropped the oldest
	// versions) and by the kfake test broker.
	c.Version = sarama.V3_6_0_0
	return c
}
