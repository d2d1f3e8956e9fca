package saramakafka

import (
	"github.com/IBM/sarama"
	"github.com/xdg-go/scram"

	"github.com/auditpipe/auditpipe/internal/kafka"
)

// applySASL configures c to authenticate with s; zero s leaves it alone.
func applySASL(c *sarama.Config, s kafka.SASL) {
	if !s.Enabled() {
		return
	}
	c.Net.SASL.Enable = true
	c.Net.SASL.Handshake = true
	c.Net.SASL.User = s.Username
	c.Net.SASL.Password = s.Password
	switch s.Mechanism {
	case kafka.SASLPlain:
		c.Net.SASL.Mechanism = sarama.SASLTypePlaintext
	case kafka.SASLScramSHA256:
		c.Net.SASL.Mechanism = sarama.SASLTypeSCRAMSHA256
		c.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &scramClient{hash: scram.SHA256} }
	case kafka.SASLScramSHA512:
		c.Net.SASL.Mechanism = sarama.SASLTypeSCRAMSHA512
		c.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &scramClient{hash: scram.SHA512} }
	default:
		// sarama's config validation names the unknown mechanism.
		c.Net.SASL.Mechanism = sarama.SASLMechanism(s.Mechanism)
	}
}

// scramClient is sarama's SCRAM conversation on github.com/xdg-go/scram
// (sarama ships the interface, not an implementation).
type scramClient struct {
	hash scram.HashGeneratorFcn
	conv *scram.ClientConversation
}

func (c *scramClient) Begin(user, password, authzID string) error {
	client, err := c.hash.NewClient(user, password, authzID)
	if err != nil {
		return err
	}
	c.conv = client.NewConversation()
	return nil
}

func (c *scramClient) Step(challenge string) (string, error) { return c.conv.Step(challenge) }

func (c *scramClient) Done() bool { return c.conv.Done() }
