package allinone

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"time"

	"github.com/auditpipe/auditpipe/consumer/alerts"
	consumerapp "github.com/auditpipe/auditpipe/consumer/app"
	"github.com/auditpipe/auditpipe/consumer/search"
	"github.com/auditpipe/auditpipe/consumer/sink/eventstore"
	"github.com/auditpipe/auditpipe/internal/config"
	"github.com/auditpipe/auditpipe/internal/kafka"
	processorapp "github.com/auditpipe/auditpipe/processor/app"
	producerapp "github.com/auditpipe/auditpipe/producer/app"
	"github.com/auditpipe/auditpipe/producer/auth"
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
	Cluster string      `json:"cluster"`
	Kafka   KafkaConfig `json:"kafka"`
	// Webhook, Spool and Tail are the producer's settings (see
	// producer/app): receiver limits and credentials, the on-disk spool
	// that keeps accepting while Kafka is down, and the audit-log tailer.
	Webhook producerapp.WebhookConfig `json:"webhook"`
	Spool   producerapp.SpoolConfig   `json:"spool"`
	Tail    producerapp.TailConfig    `json:"tail"`
	API     APIConfig                 `json:"api"`
	// CLS is the consumer's CLS sink (see consumer/app): mode off, cls
	// (Tencent Cloud) or cls-local (an in-process CLS server that shows
	// what would be sent, at <its URL>/logs).
	CLS consumerapp.CLSConfig `json:"cls"`
	// Store is the local store's engine.
	Store StoreConfig `json:"store"`
	// Retention bounds the local store by age and size.
	Retention RetentionConfig `json:"retention"`
	// Processor configures how the processor delivers: delivery is
	// at-least-once (default) or exactly-once (Kafka transactions).
	Processor ProcessorConfig `json:"processor"`
	// Fleet is the fleet registry file: cluster metadata, per-cluster
	// policy and CLS topic. Optional.
	Fleet  string         `json:"fleet"`
	Topics schemas.Topics `json:"topics"`
	// Alerts delivers the alerts topic to Alertmanager and/or a
	// Slack-compatible webhook; off when neither URL is set.
	Alerts AlertsConfig `json:"alerts"`
	Log    LogConfig    `json:"log"`
	// MemoryLimitBytes is the soft limit of the Go runtime's memory for
	// the whole process (runtime/debug.SetMemoryLimit; see
	// ApplyMemoryLimit): near it the garbage collector runs more often
	// instead of letting the heap grow to twice what is live. It bounds
	// the Go heap of every stage, the broker and the webhook's bodies, not
	// SQLite's page cache or the kernel's. Default 384 MiB; 0 leaves the
	// runtime's own setting (GOMEMLIMIT, else none). Decision 0027.
	MemoryLimitBytes int64 `json:"memoryLimitBytes"`
}

// DefaultMemoryLimitBytes is memoryLimitBytes' default: with the
// webhook's body budget (DefaultMaxInflightBytes) and the non-Go memory
// (SQLite, stacks, the binary) the process stays under 512 MiB.
const DefaultMemoryLimitBytes = 384 << 20

// DefaultMaxInflightBytes is the all-in-one's webhook.maxInflightBytes:
// two bodies of the largest size, or some hundred of an apiserver's usual
// batches (more than webhook.maxConcurrent lets in at once). The producer
// binary's 256 MiB would be two thirds of the memory limit by itself.
const DefaultMaxInflightBytes = 128 << 20

// minMemoryLimitBytes is the smallest memoryLimitBytes accepted: below it
// the pipeline's working set alone keeps the collector running.
const minMemoryLimitBytes = 128 << 20

// StoreConfig chooses the local store's engine.
type StoreConfig struct {
	// Engine is vlogs (the default: VictoriaLogs' storage, embedded;
	// <dataDir>/store/vlogs) or sqlite (<dataDir>/store/events.db).
	// Decision 0026. Check refuses vlogs over an earlier version's SQLite
	// store.
	Engine string `json:"engine"`
}

// StorePath is where the consumer opens the local store of engine under
// dataDir.
func StorePath(dataDir, engine string) string {
	if engine == eventstore.EngineVictoriaLogs {
		return filepath.Join(dataDir, "store", "vlogs")
	}
	return filepath.Join(dataDir, "store", "events.db")
}

// RetentionConfig bounds the local store (see consumer/sink/local): zero
// values keep everything.
type RetentionConfig struct {
	// MaxAge deletes events older than this ("168h").
	MaxAge config.Duration `json:"maxAge"`
	// MaxBytes deletes the oldest events while the store's pages in use
	// exceed it (at least 1 MiB).
	MaxBytes int64 `json:"maxBytes"`
	// Interval is the pause between retention rounds ("1m", the default);
	// each round also refreshes auditpipe_localstore_used_bytes.
	Interval config.Duration `json:"interval"`
}

// AlertsConfig configures alert delivery (see consumer/alerts).
type AlertsConfig struct {
	// Alertmanager is an Alertmanager's base URL (its v2 API).
	Alertmanager string `json:"alertmanager"`
	// Webhook is a Slack-compatible incoming webhook URL.
	Webhook string `json:"webhook"`
	// DedupWindow drops repeats of an incident within it ("10m").
	DedupWindow config.Duration `json:"dedupWindow"`
	// RatePerRule caps each rule's alerts per minute.
	RatePerRule int `json:"ratePerRule"`
}

func (a AlertsConfig) enabled() bool { return a.Alertmanager != "" || a.Webhook != "" }

// KafkaConfig says which broker to use.
type KafkaConfig struct {
	// Listen is the embedded broker's address. Ignored with Brokers.
	Listen string `json:"listen"`
	// Brokers are the bootstrap addresses of an external Kafka cluster;
	// when set, no embedded broker is started.
	Brokers []string `json:"brokers"`
	// TLS and SASL are how every stage connects to the external cluster,
	// as the stage binaries' kafka.tls and kafka.sasl. Only with Brokers:
	// the embedded broker has its own user (CredentialsFile).
	TLS  kafka.TLS  `json:"tls"`
	SASL kafka.SASL `json:"sasl"`
	// Partitions of the topics the program creates.
	Partitions int32 `json:"partitions"`
	// ReplicationFactor of the topics the program creates.
	ReplicationFactor int16 `json:"replicationFactor"`
	// TopicConfigs are Kafka topic configs for the topics the program
	// creates, e.g. min.insync.replicas: "2" on a 3-broker cluster.
	TopicConfigs map[string]string `json:"topicConfigs"`
}

// APIConfig configures the query API, metrics and health endpoints.
type APIConfig struct {
	Listen string `json:"listen"`
	// Token is the bearer token the query API requires; it must be set
	// when Listen is beyond loopback. /metrics and the health endpoints
	// stay open for Prometheus and probes.
	Token string `json:"token"`
	// TLS is the API's server certificate (certFile, keyFile). Beyond
	// loopback the API refuses to start without it, as the token and the
	// audit events would cross the network in clear.
	TLS auth.TLSFiles `json:"tls"`
	// AllowInsecure permits plain HTTP beyond loopback (behind a TLS
	// proxy on the same host, say). The token is still required.
	AllowInsecure bool `json:"allowInsecure"`
}

// ProcessorConfig configures the processor stage.
type ProcessorConfig struct {
	// Delivery is at-least-once or exactly-once.
	Delivery string `json:"delivery"`
	// ReloadInterval is how often the policy and fleet files are checked
	// for changes ("5s"); "-1s" disables reloading.
	ReloadInterval config.Duration `json:"reloadInterval"`
	// Rules is a detection rules file added to the shipped rules;
	// reloaded like the policy. Optional.
	Rules string `json:"rules"`
}

// LogConfig configures structured logs.
type LogConfig struct {
	Level  string `json:"level"`
	Format string `json:"format"`
}

// DefaultConfig returns the defaults: everything on loopback, data in
// ./data.
func DefaultConfig() Config {
	producer := producerapp.DefaultConfig()
	producer.Webhook.MaxInflightBytes = DefaultMaxInflightBytes
	return Config{
		DataDir: "data",
		Cluster: "local",
		Kafka:   KafkaConfig{Listen: "127.0.0.1:9092", Partitions: 4, ReplicationFactor: 1},
		Webhook: producer.Webhook,
		Spool:   producer.Spool,
		Tail:    producer.Tail,
		API:     APIConfig{Listen: "127.0.0.1:8080"},
		CLS:     consumerapp.DefaultConfig().CLS,
		Store:   StoreConfig{Engine: eventstore.EngineVictoriaLogs},
		Processor: ProcessorConfig{
			Delivery:       processorapp.DeliveryAtLeastOnce,
			ReloadInterval: config.Duration(processorapp.DefaultReloadInterval),
		},
		Topics: schemas.DefaultTopics(),
		Alerts: AlertsConfig{DedupWindow: config.Duration(alerts.DefaultConfig().DedupWindow), RatePerRule: alerts.DefaultConfig().RatePerRule},
		Log:    LogConfig{Level: "info", Format: "text"},

		MemoryLimitBytes: DefaultMemoryLimitBytes,
	}
}

// alertsConfig is the alert delivery part of the all-in-one.
func (c Config) alertsConfig() alerts.Config {
	ac := alerts.DefaultConfig()
	ac.DedupWindow = time.Duration(c.Alerts.DedupWindow)
	ac.RatePerRule = c.Alerts.RatePerRule
	return ac
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
		if c.Kafka.TLS != (kafka.TLS{}) || c.Kafka.SASL != (kafka.SASL{}) {
			return errors.New("kafka.tls, kafka.sasl: only with kafka.brokers (an external cluster); the embedded broker has its own user")
		}
	} else if err := c.Kafka.Connection().Validate(); err != nil {
		return err
	}
	if c.MemoryLimitBytes != 0 {
		if c.MemoryLimitBytes < minMemoryLimitBytes {
			return fmt.Errorf("memoryLimitBytes: %d is below %d (128 MiB); 0 leaves the Go runtime's default", c.MemoryLimitBytes, minMemoryLimitBytes)
		}
		// The received bodies are copied on their way to Kafka: a limit
		// they could fill on their own would keep the collector running
		// without freeing anything.
		if c.MemoryLimitBytes < 2*c.Webhook.MaxInflightBytes {
			return fmt.Errorf("memoryLimitBytes (%d): must be at least twice webhook.maxInflightBytes (%d)", c.MemoryLimitBytes, c.Webhook.MaxInflightBytes)
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
	if err := c.producerConfig(c.checkConnection()).Validate(); err != nil {
		return err
	}
	switch c.Store.Engine {
	case eventstore.EngineSQLite, eventstore.EngineVictoriaLogs:
	default:
		return fmt.Errorf("store.engine: %q, want %s or %s", c.Store.Engine, eventstore.EngineSQLite, eventstore.EngineVictoriaLogs)
	}
	if err := c.consumerConfig(c.checkConnection()).Retention().Validate(); err != nil {
		return err // named as this file's retention.* keys
	}
	if err := c.consumerConfig(c.checkConnection()).Validate(); err != nil {
		return err
	}
	pc := c.processorConfig(c.checkConnection())
	if pc.PolicyFile == "" {
		pc.PolicyFile = "built-in"
	}
	if err := pc.Validate(); err != nil {
		return err
	}
	if err := checkAddr("api.listen", c.API.Listen); err != nil {
		return err
	}
	if need, err := search.TokenRequired(c.API.Listen); err != nil {
		return fmt.Errorf("api.listen: %w", err)
	} else if need && c.API.Token == "" {
		return fmt.Errorf("api.token: the query API listens beyond loopback (%s) and needs a token", c.API.Listen)
	} else if need && !c.API.TLS.Enabled() && !c.API.AllowInsecure {
		return fmt.Errorf("api.tls: the query API listens beyond loopback (%s) over plain HTTP: the token and the audit events would cross the network in clear. Set api.tls.certFile and api.tls.keyFile, listen on 127.0.0.1, or set api.allowInsecure: true to accept the risk", c.API.Listen)
	}
	if err := c.API.TLS.Validate(); err != nil {
		return fmt.Errorf("api.%w", err)
	}
	if c.API.TLS.ClientCAFile != "" {
		return errors.New("api.tls.clientCAFile: not supported; the query API authenticates with api.token")
	}
	if err := c.Topics.Validate(); err != nil {
		return err
	}
	if c.Alerts.enabled() {
		if c.Topics.Alerts == "" {
			return errors.New("alerts: delivery configured but topics.alerts is empty")
		}
		if err := c.alertsConfig().Validate(); err != nil {
			return err
		}
	}
	return nil
}

func checkAddr(key, addr string) error {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return fmt.Errorf("%s: %q is not host:port: %w", key, addr, err)
	}
	return nil
}

// Connection is how the stages connect to the external cluster of
// kafka.brokers; Start uses the embedded broker's address and user when
// there is none.
func (k KafkaConfig) Connection() kafka.Connection {
	return kafka.Connection{Brokers: k.Brokers, TLS: k.TLS, SASL: k.SASL}
}

// checkConnection is the Connection the stages' configs are checked
// with: the external cluster's, or a stand-in address for the embedded
// broker, whose address is known only once it runs.
func (c Config) checkConnection() kafka.Connection {
	conn := c.Kafka.Connection()
	if len(conn.Brokers) == 0 {
		conn.Brokers = []string{"validate:9092"}
	}
	return conn
}

// withClientID is conn with the client id id.
func withClientID(conn kafka.Connection, id string) kafka.Connection {
	conn.ClientID = id
	return conn
}

// producerConfig is the producer part of the all-in-one: its own data
// directory, the pipeline's brokers and topics, and no admin server (the
// all-in-one serves /metrics and /readyz for every stage).
func (c Config) producerConfig(conn kafka.Connection) producerapp.Config {
	pc := producerapp.DefaultConfig()
	pc.DataDir = filepath.Join(c.DataDir, "producer")
	pc.Kafka.Connection = withClientID(conn, pc.Kafka.ClientID)
	pc.Topics = c.Topics
	pc.Webhook = c.Webhook
	pc.Spool = c.Spool
	pc.Tail = c.Tail
	pc.Metrics.Listen = "" // the all-in-one serves /metrics itself
	pc.Log.Level, pc.Log.Format = c.Log.Level, c.Log.Format
	return pc
}

// consumerConfig is the consumer part of the all-in-one: the local store
// (opened by the all-in-one, which also serves queries from it) and the
// optional CLS sink.
func (c Config) consumerConfig(conn kafka.Connection) consumerapp.Config {
	cc := consumerapp.DefaultConfig()
	cc.Kafka = withClientID(conn, ConsumerGroup)
	cc.Group = ConsumerGroup
	cc.Topic = c.Topics.Events
	cc.FleetFile = c.Fleet
	cc.Local.Engine = c.Store.Engine
	cc.Local.Path = StorePath(c.DataDir, c.Store.Engine)
	cc.Local.MaxAge = c.Retention.MaxAge
	cc.Local.MaxBytes = c.Retention.MaxBytes
	if c.Retention.Interval > 0 {
		cc.Local.RetentionInterval = c.Retention.Interval
	}
	cc.CLS = c.CLS
	cc.API.Listen = "" // the all-in-one serves the API itself (api.*)
	return cc
}

// processorConfig is the processor part of the all-in-one. PolicyFile is
// the configured policy; Start substitutes the shipped default.
func (c Config) processorConfig(conn kafka.Connection) processorapp.Config {
	pc := processorapp.DefaultConfig()
	pc.Kafka = withClientID(conn, ProcessorGroup)
	pc.Group = ProcessorGroup
	pc.TransactionalID = ProcessorGroup
	pc.Topics = c.Topics
	pc.PolicyFile = c.Policy
	pc.FleetFile = c.Fleet
	pc.Delivery = c.Processor.Delivery
	pc.ReloadInterval = c.Processor.ReloadInterval
	pc.RulesFile = c.Processor.Rules
	return pc
}
