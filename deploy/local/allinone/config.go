package allinone

import (
	"errors"
	"fmt"
	"net"

	"github.com/auditpipe/auditpipe/schemas"
)

// Config configures the all-in-one program. It is read from an optional
// YAML file (unknown keys are errors) and then from flags.
type Config struct {
	// DataDir holds the embedded broker's log and the local store.
	DataDir string `json:"dataDir"`
	// Policy is an audit.k8s.io/v1 Policy file. Empty means the TKE
	// default policy that ships with the processor.
	Policy string `json:"policy"`
	// Cluster is the cluster id of the webhook kubeconfig printed at start.
	Cluster string         `json:"cluster"`
	Kafka   KafkaConfig    `json:"kafka"`
	Webhook WebhookConfig  `json:"webhook"`
	API     APIConfig      `json:"api"`
	Topics  schemas.Topics `json:"topics"`
	Log     LogConfig      `json:"log"`
}

// KafkaConfig says which broker to use.
type KafkaConfig struct {
	// Listen is the embedded broker's address. Ignored with Brokers.
	Listen string `json:"listen"`
	// Brokers are the bootstrap addresses of an external Kafka cluster;
	// when set, no embedded broker is started.
	Brokers []string `json:"brokers"`
	// Partitions of the topics the program creates.
	Partitions int32 `json:"partitions"`
	// ReplicationFactor of the topics the program creates.
	ReplicationFactor int16 `json:"replicationFactor"`
	// TopicConfigs are Kafka topic configs for the topics the program
	// creates, e.g. min.insync.replicas: "2" on a 3-broker cluster.
	TopicConfigs map[string]string `json:"topicConfigs"`
}

// WebhookConfig configures the producer's webhook receiver.
type WebhookConfig struct {
	Listen       string `json:"listen"`
	MaxBodyBytes int64  `json:"maxBodyBytes"`
}

// APIConfig configures the query API, metrics and health endpoints.
type APIConfig struct {
	Listen string `json:"listen"`
}

// LogConfig configures structured logs.
type LogConfig struct {
	Level  string `json:"level"`
	Format string `json:"format"`
}

// DefaultConfig returns the defaults: everything on loopback, data in
// ./data.
func DefaultConfig() Config {
	return Config{
		DataDir: "data",
		Cluster: "local",
		Kafka:   KafkaConfig{Listen: "127.0.0.1:9092", Partitions: 4, ReplicationFactor: 1},
		Webhook: WebhookConfig{Listen: "127.0.0.1:8090", MaxBodyBytes: 64 << 20},
		API:     APIConfig{Listen: "127.0.0.1:8080"},
		Topics:  schemas.DefaultTopics(),
		Log:     LogConfig{Level: "info", Format: "text"},
	}
}

// Validate checks the configuration and names the first problem.
func (c Config) Validate() error {
	if c.DataDir == "" {
		return errors.New("dataDir: must not be empty")
	}
	if c.Cluster == "" {
		return errors.New("cluster: must not be empty")
	}
	if len(c.Kafka.Brokers) == 0 {
		if err := checkAddr("kafka.listen", c.Kafka.Listen); err != nil {
			return err
		}
	}
	if c.Kafka.Partitions < 1 {
		return errors.New("kafka.partitions: must be at least 1")
	}
	if c.Kafka.ReplicationFactor < 1 {
		return errors.New("kafka.replicationFactor: must be at least 1")
	}
	if err := checkAddr("webhook.listen", c.Webhook.Listen); err != nil {
		return err
	}
	if c.Webhook.MaxBodyBytes <= 0 {
		return errors.New("webhook.maxBodyBytes: must be positive")
	}
	if err := checkAddr("api.listen", c.API.Listen); err != nil {
		return err
	}
	if err := c.Topics.Validate(); err != nil {
		return err
	}
	return nil
}

func checkAddr(key, addr string) error {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return fmt.Errorf("%s: %q is not host:port: %w", key, addr, err)
	}
	return nil
}
