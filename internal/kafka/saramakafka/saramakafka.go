// Package saramakafka implements the kafka port with github.com/IBM/sarama.
// It is the adapter for the places where sarama is strongest: an idempotent
// producer with acks=all, cooperative-sticky consumer groups that read only
// committed transactional data, and topic administration. Offsets are
// marked explicitly, one batch at a time, only after the handler succeeded
// and only while the partition is still owned, and one committer per
// session commits every marked offset at once; a claim ends only once its
// last mark is committed. Delivery is at-least-once, a revoked partition
// is never committed by its old owner, and its next owner starts after the
// last batch the old owner handled.
package saramakafka

import (
	"errors"

	"github.com/IBM/sarama"

	"github.com/auditpipe/auditpipe/internal/kafka"
)

// newConfig returns a sarama config with the settings every client of this
// package shares, encrypting with t and authenticating with s (none when
// zero). It reads the files t and s name (CA, client certificate, password
// file), so a client built later picks up rotated ones.
func newConfig(clientID string, t kafka.TLS, s kafka.SASL) (*sarama.Config, error) {
	c := sarama.NewConfig()
	c.ClientID = clientID
	// Every connection goes through kafka.Dialer, TLS included, so that a
	// failed handshake names the broker (sarama's own TLS does not).
	d, err := kafka.NewDialer(t, c.Net.DialTimeout)
	if err != nil {
		return nil, err
	}
	c.Net.Proxy.Enable = true
	c.Net.Proxy.Dialer = d
	if s, err = s.Resolved(); err != nil {
		return nil, err
	}
	applySASL(c, s)
	// The protocol version sarama assumes for the cluster. 3.6 is new
	// enough for idempotent production, read-committed fetches and
	// cooperative rebalancing, and every request version it picks is still
	// accepted by Apache Kafka 3.9 and 4.x (which dropped the oldest
	// versions) and by the kfake test broker.
	c.Version = sarama.V3_6_0_0
	return c, nil
}

// describe adds to err what an authentication failure needs to be
// understood: the brokers, the mechanism and the user. Other errors are
// returned as they are (a failed TLS handshake already names the broker,
// see kafka.Dialer).
func describe(err error, brokers []string, s kafka.SASL) error {
	if err != nil && errors.Is(err, sarama.ErrSASLAuthenticationFailed) {
		return kafka.AuthFailed(err, brokers, s)
	}
	return err
}
