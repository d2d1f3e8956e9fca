package app

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/auditpipe/auditpipe/consumer/sink/cls"
	"github.com/auditpipe/auditpipe/consumer/sink/eventstore"
	"github.com/auditpipe/auditpipe/internal/cli"
	"github.com/auditpipe/auditpipe/internal/config"
	"github.com/auditpipe/auditpipe/internal/fleet"
	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/schemas"
)

// DefaultGroup is the consumer group of the consumer stage.
const DefaultGroup = "auditpipe-consumer"

// Sink modes of CLSConfig.Mode.
const (
	CLSOff   = "off"       // no CLS sink
	CLSCloud = "cls"       // the real CLS endpoint
	CLSLocal = "cls-local" // an in-process clslocal server: see what would be sent
)

// Duration is a time.Duration written as "30s" in YAML.
type Duration = config.Duration

// Config configures the consumer. Load it with Load (strict YAML over
// DefaultConfig).
type Config struct {
	// Common is log, metrics and shutdownTimeout, used by the command's
	// scaffolding (internal/cli).
	cli.Common `json:",inline"`
	Kafka      kafka.Connection `json:"kafka"`
	Group      string           `json:"group"`
	Topic      string           `json:"topic"`
	// MaxBatch is the most records a partition hands the sinks at once.
	MaxBatch int `json:"maxBatch"`
	// SessionTimeout is how long the group waits for a silent member (a
	// killed replica) before giving its partitions to the others.
	// Default 10s.
	SessionTimeout Duration `json:"sessionTimeout"`
	// FleetFile is the fleet registry: each cluster's CLS topic.
	FleetFile string      `json:"fleet"`
	Local     LocalConfig `json:"local"`
	CLS       CLSConfig   `json:"cls"`
	// API is the search API served over the local store (api.go).
	API APIConfig `json:"api"`
}

// LocalConfig configures the local store sink.
type LocalConfig struct {
	Enabled bool `json:"enabled"`
	// Engine is the store's storage engine: vlogs (the default:
	// VictoriaLogs' storage, embedded: a directory) or sqlite (one file).
	// Decision 0026: vlogs took over as the default at its migration
	// plan's step 4; a store an earlier version kept with sqlite is
	// refused under vlogs (checkNoSQLiteStore), not silently replaced.
	Engine string `json:"engine"`
	// Path is the store: the VictoriaLogs directory, or the SQLite file.
	Path string `json:"path"`
	// Retention; zero values keep everything.
	MaxAge   Duration `json:"maxAge"`
	MaxBytes int64    `json:"maxBytes"`
	// RetentionInterval is the pause between retention rounds. Default 1m.
	RetentionInterval Duration `json:"retentionInterval"`
}

// CLSConfig configures the CLS sink.
type CLSConfig struct {
	// Mode is off, cls or cls-local.
	Mode     string `json:"mode"`
	Endpoint string `json:"endpoint"`
	// SecretID and SecretKey are the API key, inline (use ${ENV}) or
	// from the files SecretIDFile and SecretKeyFile (one of each pair).
	SecretID      string `json:"secretID"`
	SecretIDFile  string `json:"secretIDFile"`
	SecretKey     string `json:"secretKey"`
	SecretKeyFile string `json:"secretKeyFile"`
	Token         string `json:"token"`
	// Region enables creating missing logsets, topics and indexes through
	// the CLS management API (cls mode only) for fleet clusters given as
	// cls.logset + cls.topicName, at startup. Empty: such clusters are not
	// routed (logged and counted as unrouted).
	Region string `json:"region"`
	// APIEndpoint overrides the management API host
	// (cls.tencentcloudapi.com); an http:// prefix means plain HTTP (a
	// local stand-in).
	APIEndpoint string `json:"apiEndpoint"`
	// LocalAddr is where cls-local listens. Default 127.0.0.1:0.
	LocalAddr      string   `json:"localAddr"`
	Compression    string   `json:"compression"`
	Linger         Duration `json:"linger"`
	RetryBase      Duration `json:"retryBase"`
	RetryMax       Duration `json:"retryMax"`
	BlockedRetry   Duration `json:"blockedRetry"`
	DefaultTopicID string   `json:"defaultTopicID"`
	// RecentIdentities bounds the CLS sink's memory of sent events
	// (decision 0012); see cls.Config.
	RecentIdentities int `json:"recentIdentities"`
}

// DefaultMetricsListen is the consumer's default metrics.listen.
const DefaultMetricsListen = ":9465"

// DefaultConfig returns the defaults: local store on, CLS off.
func DefaultConfig() Config {
	return Config{
		Common:   cli.DefaultCommon(DefaultMetricsListen),
		Kafka:    kafka.Connection{ClientID: "auditpipe-consumer"},
		Group:    DefaultGroup,
		Topic:    schemas.DefaultTopics().Events,
		MaxBatch: 500,
		Local:    LocalConfig{Enabled: true, Engine: eventstore.EngineVictoriaLogs, Path: "auditpipe-events", RetentionInterval: Duration(time.Minute)},
		CLS:      CLSConfig{Mode: CLSOff, LocalAddr: "127.0.0.1:0"},
		API:      APIConfig{Listen: DefaultAPIListen},
	}
}

// Load reads a YAML file over the defaults as `consumer run --config`
// does (cli.LoadConfig: unknown keys are errors naming the key, ${ENV} is
// expanded). It does not Validate: flags may still complete the config.
func Load(path string) (Config, error) {
	cfg := DefaultConfig()
	if err := cli.LoadConfig(path, &cfg); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// Validate reports every unusable setting, naming it.
func (c Config) Validate() error {
	var errs []error
	if err := c.Kafka.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.Group == "" {
		errs = append(errs, errors.New("group: must not be empty"))
	}
	if c.Topic == "" {
		errs = append(errs, errors.New("topic: must not be empty"))
	}
	if c.MaxBatch <= 0 {
		errs = append(errs, fmt.Errorf("maxBatch: %d, want > 0", c.MaxBatch))
	}
	if !c.Local.Enabled && c.CLS.Mode == CLSOff {
		errs = append(errs, errors.New("local.enabled, cls.mode: no sink enabled"))
	}
	if c.Local.Enabled {
		if err := validateEngine(c.Local.Engine); err != nil {
			errs = append(errs, err)
		}
		if c.Local.Path == "" {
			errs = append(errs, errors.New("local.path: required when local.enabled"))
		}
		if err := c.Retention().Validate(); err != nil {
			errs = append(errs, fmt.Errorf("local.%w", err))
		}
	}
	if c.served() {
		if err := c.API.validate(); err != nil {
			errs = append(errs, err)
		}
	}
	switch c.CLS.Mode {
	case CLSOff:
	case CLSCloud, CLSLocal:
		if c.CLS.Mode == CLSCloud && c.FleetFile == "" && c.CLS.DefaultTopicID == "" {
			errs = append(errs, errors.New("fleet, cls.defaultTopicID: the CLS sink needs topics from the fleet registry or a default topic"))
		}
		// In cls-local mode the endpoint is the local server's, known
		// only once it listens.
		if err := c.CLSSinkConfig("http://cls-local").Validate(); err != nil {
			errs = append(errs, err)
		}
	default:
		errs = append(errs, fmt.Errorf("cls.mode: %q, want off, cls or cls-local", c.CLS.Mode))
	}
	return errors.Join(errs...)
}

// validateEngine accepts the engines New can open (OpenStore).
func validateEngine(engine string) error {
	switch engine {
	case eventstore.EngineSQLite, eventstore.EngineVictoriaLogs:
		return nil
	}
	return fmt.Errorf("local.engine: %q, want %s or %s", engine, eventstore.EngineSQLite, eventstore.EngineVictoriaLogs)
}

// Sink names, as in metrics and logs.
const (
	SinkLocal = "local"
	SinkCLS   = "cls"
)

// SinkGroupID is the consumer group of one sink: each sink commits its own
// offsets so that none holds another back. The local store keeps the
// configured id itself, the id every sink shared before 0018, so an
// upgrade neither re-reads the topic into the store nor changes what
// monitoring of that group shows; every other sink gets "<group>.<sink>".
func (c Config) SinkGroupID(sink string) string {
	if sink == SinkLocal {
		return c.Group
	}
	return c.Group + "." + sink
}

// GroupConfig is the configuration of the group member of sink.
func (c Config) GroupConfig(sink string) kafka.GroupConfig {
	g := c.Kafka.GroupConfig(c.SinkGroupID(sink), c.Topic)
	g.ClientID += "-" + sink
	g.MaxBatch, g.SessionTimeout = c.MaxBatch, time.Duration(c.SessionTimeout)
	return g.WithDefaults()
}

// Retention is the local store's retention policy.
func (c Config) Retention() eventstore.Retention {
	return eventstore.Retention{MaxAge: time.Duration(c.Local.MaxAge), MaxBytes: c.Local.MaxBytes,
		Interval: time.Duration(c.Local.RetentionInterval)}.WithDefaults()
}

// CLSSinkConfig is the CLS sink's configuration, sending to endpoint
// (cls.endpoint in cls mode, the local server's URL in cls-local mode).
func (c Config) CLSSinkConfig(endpoint string) cls.Config {
	id, key := c.CLS.SecretID, c.CLS.SecretKey
	if c.CLS.Mode == CLSLocal && id == "" && key == "" {
		id, key = localSecretID, localSecretKey
	}
	if c.CLS.Mode == CLSCloud {
		endpoint = c.CLS.Endpoint
	}
	return cls.Config{
		Endpoint: endpoint, SecretID: id, SecretKey: key, Token: c.CLS.Token,
		Compression: c.CLS.Compression, Linger: time.Duration(c.CLS.Linger),
		RetryBase: time.Duration(c.CLS.RetryBase), RetryMax: time.Duration(c.CLS.RetryMax),
		BlockedRetry: time.Duration(c.CLS.BlockedRetry), DefaultTopicID: c.CLS.DefaultTopicID,
		RecentIdentities: c.CLS.RecentIdentities,
	}.WithDefaults()
}

// The credentials of the cls-local server when none are configured: the
// signature is still computed and checked, with a key nobody needs to keep
// secret.
const (
	localSecretID  = "AKIDauditpipelocal"
	localSecretKey = "auditpipe-local"
)

// ResolveSecrets reads the CLS secrets given as files (cls.secretIDFile,
// cls.secretKeyFile) into SecretID and SecretKey; both forms of one
// secret is an error.
func (c *Config) ResolveSecrets() error {
	var err error
	if c.CLS.SecretID, err = cli.Secret("cls.secretID", c.CLS.SecretID, c.CLS.SecretIDFile); err != nil {
		return err
	}
	if c.CLS.SecretKey, err = cli.Secret("cls.secretKey", c.CLS.SecretKey, c.CLS.SecretKeyFile); err != nil {
		return err
	}
	c.CLS.SecretIDFile, c.CLS.SecretKeyFile = "", ""
	return nil
}

// Check resolves the secret files and validates cfg and what it names
// (the fleet registry, the store's directory, no old SQLite store where
// a vlogs one is expected) without side effects: it creates nothing and
// connects to nothing. `consumer validate` runs it, and `consumer run`
// before it starts.
func Check(cfg *Config) error {
	if err := cfg.ResolveSecrets(); err != nil {
		return fmt.Errorf("consumer config: %w", err)
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("consumer config: %w", err)
	}
	if err := cfg.checkAPIFiles(); err != nil {
		return fmt.Errorf("consumer config: %w", err)
	}
	if cfg.FleetFile != "" {
		reg, err := fleet.LoadFile(cfg.FleetFile)
		if err != nil {
			return err
		}
		if err := reg.Validate(); err != nil {
			return fmt.Errorf("fleet registry %s: %w", cfg.FleetFile, err)
		}
	}
	if cfg.Local.Enabled {
		dir := filepath.Dir(cfg.Local.Path)
		if st, err := os.Stat(dir); err != nil {
			return fmt.Errorf("local.path: directory of the store: %w", err)
		} else if !st.IsDir() {
			return fmt.Errorf("local.path: %s is not a directory", dir)
		}
		if err := checkNoSQLiteStore(cfg.Local); err != nil {
			return err
		}
	}
	return nil
}
