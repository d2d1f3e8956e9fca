package app

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"time"

	"github.com/auditpipe/auditpipe/internal/cli"
	"github.com/auditpipe/auditpipe/internal/config"
	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/producer/auth"
	"github.com/auditpipe/auditpipe/producer/webhook"
	"github.com/auditpipe/auditpipe/schemas"
)

// Duration is a time.Duration written as "30s" in YAML.
type Duration = config.Duration

// Config configures the producer. Load it with Load (strict YAML over
// DefaultConfig).
type Config struct {
	// DataDir holds the spool and the tail checkpoint.
	DataDir string         `json:"dataDir"`
	Kafka   KafkaConfig    `json:"kafka"`
	Topics  schemas.Topics `json:"topics"`
	Webhook WebhookConfig  `json:"webhook"`
	Spool   SpoolConfig    `json:"spool"`
	Tail    TailConfig     `json:"tail"`
	// Common is log, metrics (metrics.listen serves /metrics, /healthz
	// and /readyz; it was admin.listen) and shutdownTimeout, used by the
	// command's scaffolding (internal/cli).
	cli.Common `json:",inline"`
}

// KafkaConfig says where the raw topic lives: the kafka: block every
// stage has (brokers, clientID, tls, sasl) and the producer's message
// size limit.
type KafkaConfig struct {
	kafka.Connection `json:",inline"`
	// MaxMessageBytes is the broker's message.max.bytes (1 MiB by
	// default); keep webhook.maxEventBytes below it.
	MaxMessageBytes int `json:"maxMessageBytes"`
}

// WebhookConfig configures the receiver and its server.
type WebhookConfig struct {
	// Listen is host:port; empty disables the receiver.
	Listen string `json:"listen"`
	// AllowInsecure permits plain HTTP, or requests without credentials,
	// on an address that is not loopback. Without it the producer refuses
	// to start in that case.
	AllowInsecure bool `json:"allowInsecure"`
	// TLS is the server certificate; with clientCAFile, client
	// certificates authenticate clusters (CN = cluster id).
	TLS auth.TLSFiles `json:"tls"`
	// TokensFile holds `token,cluster` lines (or sha256:<hex>,cluster).
	TokensFile     string   `json:"tokensFile"`
	MaxBodyBytes   int64    `json:"maxBodyBytes"`
	MaxEventBytes  int      `json:"maxEventBytes"`
	MaxConcurrent  int      `json:"maxConcurrent"`
	PublishTimeout Duration `json:"publishTimeout"`
	// MaxConcurrentPerCluster caps one cluster's requests in progress, so
	// that one cluster cannot take every one of maxConcurrent's slots.
	MaxConcurrentPerCluster int `json:"maxConcurrentPerCluster"`
	// MaxInflightBytes is the memory budget: decoded body bytes held by
	// all requests together. Requests over it get 503 + Retry-After.
	MaxInflightBytes int64 `json:"maxInflightBytes"`
	// BodyReadTimeout bounds reading one request body (408 after it).
	BodyReadTimeout Duration `json:"bodyReadTimeout"`
	// Server timeouts: a slow or stuck client cannot hold a connection
	// (and its memory) for longer than these.
	ReadHeaderTimeout Duration `json:"readHeaderTimeout"`
	ReadTimeout       Duration `json:"readTimeout"`
	WriteTimeout      Duration `json:"writeTimeout"`
	IdleTimeout       Duration `json:"idleTimeout"`
}

// SpoolConfig configures the on-disk spool behind the webhook.
type SpoolConfig struct {
	// Dir defaults to <dataDir>/spool.
	Dir          string `json:"dir"`
	MaxBytes     int64  `json:"maxBytes"`
	SegmentBytes int64  `json:"segmentBytes"`
	// KafkaTimeout bounds one attempt to reach Kafka before a batch is
	// spooled instead.
	KafkaTimeout Duration `json:"kafkaTimeout"`
}

// TailConfig configures the audit log tailer; an empty path disables it.
type TailConfig struct {
	// Path is the apiserver's --audit-log-path.
	Path string `json:"path"`
	// Cluster is the cluster id of the file's events.
	Cluster string `json:"cluster"`
	// CheckpointFile defaults to <dataDir>/tail.checkpoint.
	CheckpointFile string   `json:"checkpointFile"`
	PollInterval   Duration `json:"pollInterval"`
	MaxLineBytes   int      `json:"maxLineBytes"`
}

// DefaultMetricsListen is the producer's default metrics.listen.
const DefaultMetricsListen = ":9463"

// DefaultConfig returns the defaults: a webhook on loopback (plain HTTP,
// cluster from the path, for local use), a 1 GiB spool, no tailer.
func DefaultConfig() Config {
	return Config{
		DataDir: "data/producer",
		Kafka:   KafkaConfig{Connection: kafka.Connection{Brokers: []string{"127.0.0.1:9092"}, ClientID: "auditpipe-producer"}, MaxMessageBytes: 1 << 20},
		Topics:  schemas.DefaultTopics(),
		Webhook: WebhookConfig{
			Listen:         "127.0.0.1:8090",
			MaxBodyBytes:   64 << 20,
			MaxEventBytes:  900 << 10,
			MaxConcurrent:  64,
			PublishTimeout: Duration(20 * time.Second),
			// The receiver's defaults: see webhook.DefaultConfig.
			MaxConcurrentPerCluster: webhook.DefaultConfig().MaxConcurrentPerCluster,
			MaxInflightBytes:        webhook.DefaultConfig().MaxInflightBytes,
			BodyReadTimeout:         Duration(webhook.DefaultConfig().BodyReadTimeout),
			ReadHeaderTimeout:       Duration(10 * time.Second),
			ReadTimeout:             Duration(60 * time.Second),
			WriteTimeout:            Duration(60 * time.Second),
			IdleTimeout:             Duration(120 * time.Second),
		},
		Spool:  SpoolConfig{MaxBytes: 1 << 30, SegmentBytes: 64 << 20, KafkaTimeout: Duration(5 * time.Second)},
		Tail:   TailConfig{PollInterval: Duration(250 * time.Millisecond), MaxLineBytes: 64 << 20},
		Common: cli.DefaultCommon(DefaultMetricsListen),
	}
}

// Load reads a YAML file over the defaults as `producer run --config`
// does (cli.LoadConfig: unknown keys are errors that name them, ${ENV} is
// expanded) and validates it.
func Load(path string) (Config, error) {
	cfg := DefaultConfig()
	if err := cli.LoadConfig(path, &cfg); err != nil {
		return Config{}, err
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, fmt.Errorf("config %s: invalid: %w", path, err)
	}
	return cfg, nil
}

// hasCredentials reports whether the webhook authenticates callers.
func (w WebhookConfig) hasCredentials() bool {
	return w.TokensFile != "" || w.TLS.ClientCAFile != ""
}

// Validate checks the configuration and names the first problem.
func (c Config) Validate() error {
	if c.DataDir == "" {
		return errors.New("dataDir: must not be empty")
	}
	if err := c.Kafka.Connection.Validate(); err != nil {
		return err
	}
	if c.Kafka.MaxMessageBytes <= 0 {
		return errors.New("kafka.maxMessageBytes: must be positive")
	}
	if err := c.Topics.Validate(); err != nil {
		return fmt.Errorf("topics: %w", err)
	}
	if c.Webhook.Listen == "" && c.Tail.Path == "" {
		return errors.New("nothing to do: set webhook.listen, tail.path, or both")
	}
	if c.Webhook.Listen != "" {
		if err := c.Webhook.validate(); err != nil {
			return err
		}
		if c.Webhook.MaxEventBytes >= c.Kafka.MaxMessageBytes {
			return fmt.Errorf("webhook.maxEventBytes (%d) must be below kafka.maxMessageBytes (%d), leaving room for headers", c.Webhook.MaxEventBytes, c.Kafka.MaxMessageBytes)
		}
	}
	switch {
	case c.Spool.MaxBytes <= 0:
		return errors.New("spool.maxBytes: must be positive")
	case c.Spool.SegmentBytes <= 0 || c.Spool.SegmentBytes > c.Spool.MaxBytes:
		return errors.New("spool.segmentBytes: must be positive and at most spool.maxBytes")
	case c.Spool.KafkaTimeout <= 0:
		return errors.New("spool.kafkaTimeout: must be positive")
	case c.Spool.KafkaTimeout >= c.Webhook.PublishTimeout && c.Webhook.Listen != "":
		return errors.New("spool.kafkaTimeout: must be below webhook.publishTimeout, so a failed Kafka attempt leaves time to spool")
	}
	if c.Tail.Path != "" {
		if !webhook.ValidClusterID(c.Tail.Cluster) {
			return fmt.Errorf("tail.cluster: %q is not a valid cluster id (1-63 of a-z 0-9 . _ -)", c.Tail.Cluster)
		}
		if c.Tail.PollInterval <= 0 {
			return errors.New("tail.pollInterval: must be positive")
		}
		if c.Tail.MaxLineBytes < c.Webhook.MaxEventBytes {
			return errors.New("tail.maxLineBytes: must be at least webhook.maxEventBytes")
		}
	}
	return c.Common.Validate()
}

func (w WebhookConfig) validate() error {
	if _, _, err := net.SplitHostPort(w.Listen); err != nil {
		return fmt.Errorf("webhook.listen: %w", err)
	}
	if err := w.TLS.Validate(); err != nil {
		return fmt.Errorf("webhook.%w", err)
	}
	if !auth.IsLoopback(w.Listen) && !w.AllowInsecure {
		if !w.TLS.Enabled() {
			return fmt.Errorf("webhook.listen %q is not a loopback address and webhook.tls is not set: refusing to accept audit events over plain HTTP from the network. Set webhook.tls.certFile/keyFile (and clientCAFile or tokensFile), or set webhook.allowInsecure: true to accept the risk", w.Listen)
		}
		if !w.hasCredentials() {
			return fmt.Errorf("webhook.listen %q is not a loopback address and no credentials are configured: anyone could write into any cluster's audit trail. Set webhook.tls.clientCAFile or webhook.tokensFile, or set webhook.allowInsecure: true to accept the risk", w.Listen)
		}
	}
	switch {
	case w.MaxBodyBytes <= 0:
		return errors.New("webhook.maxBodyBytes: must be positive")
	case w.MaxEventBytes < 1024:
		return errors.New("webhook.maxEventBytes: must be at least 1024")
	case w.MaxConcurrent < 0:
		return errors.New("webhook.maxConcurrent: must not be negative")
	case w.MaxConcurrentPerCluster < 0:
		return errors.New("webhook.maxConcurrentPerCluster: must not be negative")
	case w.MaxInflightBytes <= w.MaxBodyBytes:
		return fmt.Errorf("webhook.maxInflightBytes (%d): must be larger than webhook.maxBodyBytes (%d), or the largest body could never be accepted", w.MaxInflightBytes, w.MaxBodyBytes)
	case w.BodyReadTimeout <= 0:
		return errors.New("webhook.bodyReadTimeout: must be positive")
	case w.PublishTimeout <= 0:
		return errors.New("webhook.publishTimeout: must be positive")
	case w.ReadHeaderTimeout <= 0 || w.ReadTimeout <= 0 || w.WriteTimeout <= 0 || w.IdleTimeout <= 0:
		return errors.New("webhook timeouts (readHeaderTimeout, readTimeout, writeTimeout, idleTimeout): must be positive")
	case w.WriteTimeout < w.PublishTimeout:
		return errors.New("webhook.writeTimeout: must be at least webhook.publishTimeout, or answers are cut off")
	}
	return nil
}

func (c Config) spoolDir() string {
	if c.Spool.Dir != "" {
		return c.Spool.Dir
	}
	return filepath.Join(c.DataDir, "spool")
}

func (c Config) checkpointFile() string {
	if c.Tail.CheckpointFile != "" {
		return c.Tail.CheckpointFile
	}
	return filepath.Join(c.DataDir, "tail.checkpoint")
}

// Check validates cfg and reads the files it names (the webhook's
// certificate, client CA and tokens) without side effects: it creates no
// directory and connects to nothing. `producer validate` runs it, and
// `producer run` before it starts.
func Check(cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("producer config: %w", err)
	}
	if cfg.Webhook.Listen == "" {
		return nil
	}
	if cfg.Webhook.TLS.Enabled() {
		if _, _, err := cfg.Webhook.TLS.ServerConfig(); err != nil {
			return fmt.Errorf("webhook.%w", err)
		}
	}
	if cfg.Webhook.TokensFile != "" {
		if _, err := auth.LoadTokens(cfg.Webhook.TokensFile, webhook.ValidClusterID); err != nil {
			return fmt.Errorf("webhook.tokensFile: %w", err)
		}
	}
	return nil
}
