// Package app wires the processor together: it loads the policy, creates
// the Kafka producer and consumer group through injected constructors,
// and runs the pipeline as the group's handler. The command in
// cmd/processor and the all-in-one program in deploy/local both build the
// processor through New, so they cannot drift apart.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/auditpipe/auditpipe/internal/cli"
	"github.com/auditpipe/auditpipe/internal/config"
	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/telemetry"
	"github.com/auditpipe/auditpipe/processor/pipeline"
	"github.com/auditpipe/auditpipe/schemas"
	"github.com/prometheus/client_golang/prometheus"
)

// DefaultGroup is the default consumer group of the processor.
const DefaultGroup = "auditpipe-processor"

// Delivery modes.
const (
	DeliveryAtLeastOnce = "at-least-once"
	DeliveryExactlyOnce = "exactly-once"
)

// Config configures the processor: the YAML of `processor run --config`
// (strict: unknown keys are errors) and what the all-in-one fills in.
type Config struct {
	// Common is log, metrics and shutdownTimeout, used by the command's
	// scaffolding (internal/cli).
	cli.Common `json:",inline"`
	Kafka      kafka.Connection `json:"kafka"`
	// Group is the consumer group on the raw topic.
	Group  string         `json:"group"`
	Topics schemas.Topics `json:"topics"`
	// PolicyFile is an audit.k8s.io/v1 Policy, e.g. policies/tke-default.yaml:
	// the fleet default unless the fleet registry names one.
	PolicyFile string `json:"policy"`
	// FleetFile is the fleet registry (see internal/fleet): cluster
	// metadata for enrichment, the fleet default policy and per-cluster
	// overrides. Optional.
	FleetFile string `json:"fleet"`
	// MaxBatch caps the records of one batch (one transaction in
	// exactly-once mode); 0 means the group's default.
	MaxBatch int `json:"maxBatch"`
	// SessionTimeout is the group session timeout: how soon a crashed
	// member's partitions move; 0 means the group's default.
	SessionTimeout config.Duration `json:"sessionTimeout"`
	// Delivery is DeliveryAtLeastOnce (default; any broker, any reader)
	// or DeliveryExactlyOnce (Kafka transactions: each batch's output and
	// input offsets are committed together; readers of the events topic
	// must read committed data only).
	Delivery string `json:"delivery"`
	// TransactionalID prefixes the transactional ids in exactly-once
	// mode; the same for every replica, unique to the group.
	TransactionalID string `json:"transactionalID"`
	// ReloadInterval is how often the policy and registry files are
	// checked for changes; a negative value disables reloading (SIGHUP
	// still reloads). Default DefaultReloadInterval.
	ReloadInterval config.Duration `json:"reloadInterval"`
	// MaxEventBytes caps a processed event; see pipeline.Config.
	MaxEventBytes int `json:"maxEventBytes"`
	// RulesFile is the user's detection rules file, added to the shipped
	// rules; the fleet registry's defaults.rules takes precedence.
	// Optional.
	RulesFile string `json:"rules"`
	// NoDetections switches detection rules off altogether.
	NoDetections bool `json:"noDetections"`
}

// DefaultMetricsListen is the processor's default metrics.listen.
const DefaultMetricsListen = ":9464"

// DefaultConfig returns a Config with defaults for everything but
// Brokers and PolicyFile.
func DefaultConfig() Config {
	return Config{
		Common:          cli.DefaultCommon(DefaultMetricsListen),
		Kafka:           kafka.Connection{ClientID: "auditpipe-processor"},
		Group:           DefaultGroup,
		Topics:          schemas.DefaultTopics(),
		MaxEventBytes:   pipeline.DefaultMaxEventBytes,
		ReloadInterval:  config.Duration(DefaultReloadInterval),
		Delivery:        DeliveryAtLeastOnce,
		TransactionalID: DefaultGroup,
	}
}

// Validate reports missing or unusable settings.
func (c Config) Validate() error {
	var errs []error
	if err := c.Kafka.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.Group == "" {
		errs = append(errs, errors.New("group: must not be empty"))
	}
	if c.PolicyFile == "" && c.FleetFile == "" {
		errs = append(errs, errors.New("policy: no policy file (or fleet registry) given"))
	}
	switch c.Delivery {
	case DeliveryAtLeastOnce:
	case DeliveryExactlyOnce:
		if c.TransactionalID == "" {
			errs = append(errs, errors.New("transactional id: must not be empty in exactly-once mode"))
		}
	default:
		errs = append(errs, fmt.Errorf("delivery: %q is neither %s nor %s", c.Delivery, DeliveryAtLeastOnce, DeliveryExactlyOnce))
	}
	if err := c.pipelineConfig().Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("processor config: %w", err)
	}
	return nil
}

// GroupConfig is the consumer group configuration for the raw topic.
func (c Config) GroupConfig() kafka.GroupConfig {
	g := c.Kafka.GroupConfig(c.Group, c.Topics.Raw)
	g.MaxBatch, g.SessionTimeout = c.MaxBatch, time.Duration(c.SessionTimeout)
	return g.WithDefaults()
}

// ProducerConfig is the configuration of the producer for the events and
// DLQ topics. MaxMessageBytes stays at Kafka's default message.max.bytes
// (1 MiB): sarama also caps a whole per-partition batch with it, so a
// larger value makes a real broker reject batches as MESSAGE_TOO_LARGE
// under backlog (kfake does not check, Apache Kafka does). MaxEventBytes
// (900 KiB by default) keeps every processed event below it.
func (c Config) ProducerConfig() kafka.ProducerConfig {
	return c.Kafka.ProducerConfig().WithDefaults()
}

// TransactorConfig is the configuration of the transactions in
// exactly-once mode.
func (c Config) TransactorConfig() kafka.TransactorConfig {
	t := c.Kafka.TransactorConfig(c.Group, c.TransactionalID)
	t.ProducerConfig = c.ProducerConfig()
	return t
}

func (c Config) pipelineConfig() pipeline.Config {
	return pipeline.Config{Topics: c.Topics, MaxEventBytes: c.MaxEventBytes}
}

// Deps are the processor's outside world. The constructors are injected
// so that this package imports no Kafka client: the command passes the
// sarama adapter, tests and deploy/local whatever suits them.
type Deps struct {
	// NewProducer creates the producer. Required in at-least-once mode.
	NewProducer func(kafka.ProducerConfig) (kafka.Producer, error)
	// NewTransactor creates the transactions of exactly-once mode.
	// Required in that mode.
	NewTransactor func(kafka.TransactorConfig) (kafka.Transactor, error)
	// NewGroup creates the consumer group member. When nil, the App only
	// provides its Handler and Run fails.
	NewGroup func(kafka.GroupConfig) (kafka.GroupConsumer, error)
	// Offsets, when set, tells the readiness check whether the group has
	// joined. The caller closes it.
	Offsets kafka.GroupOffsets
	// Health, when set, gets the processor's readiness check.
	Health *telemetry.Health
	// Registerer receives the metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// Logger defaults to discarding logs.
	Logger *slog.Logger
	// Now defaults to time.Now.
	Now func() time.Time
}

// App is a configured processor.
type App struct {
	cfg       Config
	log       *slog.Logger
	producer  kafka.Producer
	txn       kafka.Transactor
	group     kafka.GroupConsumer
	pipeline  *pipeline.Pipeline
	reloads   *prometheus.CounterVec
	reloadMu  sync.Mutex
	watched   []string // files the policies were read from
	offsets   kafka.GroupOffsets
	member    atomic.Bool // a group member is running
	closeOnce sync.Once
	closeErr  error
}

// New loads the policy and creates the producer, the pipeline and (when
// Deps.NewGroup is set) the group member. Nothing is started.
func New(cfg Config, d Deps) (*App, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	exactlyOnce := cfg.Delivery == DeliveryExactlyOnce
	if !exactlyOnce && d.NewProducer == nil {
		return nil, errors.New("processor: no producer constructor")
	}
	if exactlyOnce && d.NewTransactor == nil {
		return nil, errors.New("processor: exactly-once delivery needs a transactor constructor")
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	l, err := loadFleet(cfg)
	if err != nil {
		return nil, fmt.Errorf("processor: %w", err)
	}
	metrics, err := pipeline.NewMetrics(d.Registerer)
	if err != nil {
		return nil, fmt.Errorf("processor: %w", err)
	}
	reloads, err := newReloadMetrics(d.Registerer)
	if err != nil {
		return nil, fmt.Errorf("processor: %w", err)
	}
	detections, err := pipeline.NewDetectionMetrics(d.Registerer)
	if err != nil {
		return nil, fmt.Errorf("processor: %w", err)
	}
	a := &App{cfg: cfg, log: d.Logger, reloads: reloads, watched: l.files, offsets: d.Offsets}
	if d.Health != nil {
		d.Health.Add("processor-group", a.ready)
	}
	opts := []pipeline.Option{pipeline.WithClock(d.Now), pipeline.WithDetectionMetrics(detections)}
	if exactlyOnce {
		if a.txn, err = d.NewTransactor(cfg.TransactorConfig()); err != nil {
			return nil, fmt.Errorf("processor: create transactor: %w", err)
		}
		opts = append(opts, pipeline.WithTransactions(a.txn))
	} else if a.producer, err = d.NewProducer(cfg.ProducerConfig()); err != nil {
		return nil, fmt.Errorf("processor: create producer: %w", err)
	}
	a.pipeline, err = pipeline.New(cfg.pipelineConfig(), l.fleet.Default, a.producer, metrics, d.Logger, opts...)
	if err != nil {
		return nil, errors.Join(err, a.Close())
	}
	if err := a.pipeline.SetFleet(l.fleet); err != nil {
		return nil, errors.Join(err, a.Close())
	}
	if d.NewGroup != nil {
		a.group, err = d.NewGroup(cfg.GroupConfig())
		if err != nil {
			return nil, errors.Join(fmt.Errorf("processor: create group %s: %w", cfg.Group, err), a.Close())
		}
	}
	d.Logger.Info("processor configured", "policy", l.defaultFile, "overrides", len(l.fleet.Clusters), "fleet", cfg.FleetFile,
		"group", cfg.Group, "delivery", cfg.Delivery, "raw", cfg.Topics.Raw, "events", cfg.Topics.Events, "dlq", cfg.Topics.DLQ,
		"alerts", cfg.Topics.Alerts, "rules", l.rulesFile, "detections", len(l.fleet.Detections.For("").Enabled()))
	return a, nil
}

// Handler returns the pipeline, the kafka.Handler for the raw topic.
func (a *App) Handler() kafka.Handler { return a.pipeline }

// Pipeline returns the pipeline, e.g. to replace its policy.
func (a *App) Pipeline() *pipeline.Pipeline { return a.pipeline }

// ReloadPolicy reads the policy and fleet registry files again and uses
// them for the next batches; batches in flight finish with the policies
// they started with. On error the current policies stay in force. Run
// calls it by itself when the files change.
func (a *App) ReloadPolicy() error { return a.reload() }

// Reload reads the policy, fleet registry and rules files again (SIGHUP);
// see ReloadPolicy.
func (a *App) Reload() error { return a.reload() }

// Run consumes the raw topic until ctx is canceled, then returns nil
// after the batches in flight finished. A failure of the group member (a
// broker outage, a produce error) is logged and the member rejoins with
// backoff: the records since the last commit are processed again, none is
// lost. Only a missing group is an error.
func (a *App) Run(ctx context.Context) error {
	if a.group == nil {
		return errors.New("processor: run: no consumer group (Deps.NewGroup was nil)")
	}
	if a.cfg.ReloadInterval > 0 {
		wctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); a.watch(wctx, time.Duration(a.cfg.ReloadInterval)) }()
		defer func() { cancel(); <-done }()
	}
	kafka.SuperviseFunc(ctx, func(ctx context.Context) error {
		a.member.Store(true)
		defer a.member.Store(false)
		if err := a.group.Run(ctx, a.pipeline); err != nil {
			return fmt.Errorf("processor: consume %s: %w", a.cfg.Topics.Raw, err)
		}
		return nil
	}, 10*time.Second, a.log)
	return nil
}

// ready is the readiness check: the member is running and the group has
// joined (it is stable with a member of the processor's client id), when
// Deps.Offsets can tell.
func (a *App) ready(ctx context.Context) error {
	if !a.member.Load() {
		return errors.New("consumer group member not running")
	}
	if a.offsets == nil {
		return nil
	}
	return kafka.GroupJoined(ctx, a.offsets, a.cfg.Group, a.cfg.Kafka.ClientID)
}

// Close leaves the group, then flushes and closes the producer. It is
// safe to call twice.
func (a *App) Close() error {
	a.closeOnce.Do(func() {
		var errs []error
		if a.group != nil {
			if err := a.group.Close(); err != nil {
				errs = append(errs, fmt.Errorf("close group: %w", err))
			}
		}
		if a.producer != nil {
			if err := a.producer.Close(); err != nil {
				errs = append(errs, fmt.Errorf("close producer: %w", err))
			}
		}
		if a.txn != nil {
			if err := a.txn.Close(); err != nil {
				errs = append(errs, fmt.Errorf("close transactor: %w", err))
			}
		}
		a.closeErr = errors.Join(errs...)
	})
	return a.closeErr
}

// Check validates cfg and reads everything it names (the policies, the
// fleet registry, the rules) without connecting to anything: `processor
// validate`, and `processor run` before it starts.
func Check(cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	if _, err := loadFleet(cfg); err != nil {
		return fmt.Errorf("policies: %w", err)
	}
	return nil
}

// Duration is a time.Duration written as "30s" in YAML.
type Duration = config.Duration
