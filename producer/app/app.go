// Package app wires the producer: the webhook receiver behind
// authentication and the durable spool, the audit log tailer, the Kafka
// producer, metrics and health. cmd/producer is a thin main around it, and
// the all-in-one program embeds it through New, Start and Shutdown.
package app

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/kafka/kafkago"
	"github.com/auditpipe/auditpipe/internal/telemetry"
	"github.com/auditpipe/auditpipe/producer/auth"
	"github.com/auditpipe/auditpipe/producer/spool"
	"github.com/auditpipe/auditpipe/producer/tail"
	"github.com/auditpipe/auditpipe/producer/webhook"
)

// Deps are what the embedding program provides; zero fields get defaults.
type Deps struct {
	// NewProducer builds the Kafka producer. Default: the kafka-go adapter.
	NewProducer func(kafka.ProducerConfig) (kafka.Producer, error)
	// Registry gets the producer's metrics. Default: a new registry with
	// the Go and process collectors.
	Registry *prometheus.Registry
	// Health gets the producer's readiness checks. Default: a new one.
	Health *telemetry.Health
	// Logger default: discards.
	Logger *slog.Logger
	// Metadata tells readiness whether Kafka answered (the raw topic's
	// partitions). Default: a kafka-go reader the App owns; the caller
	// closes one it passes.
	Metadata kafka.PartitionReader
}

// App is a configured producer.
type App struct {
	cfg    Config
	deps   Deps
	logger *slog.Logger

	kafka   kafka.Producer
	durable *spool.Durable
	handler http.Handler // the webhook mux, nil without a receiver
	tlsCfg  *tls.Config
	cert    atomic.Pointer[tls.Certificate] // the webhook's, swapped by Reload
	authn   *auth.Authenticator
	tailer  *tail.Tailer

	metadata     kafka.PartitionReader
	ownsMetadata bool
	connected    atomic.Bool // Kafka answered once

	mu          sync.Mutex
	started     bool
	servers     []*http.Server
	webhookAddr string
	cancel      context.CancelFunc
	tailDone    chan error
	shutdown    bool
}

// New validates cfg and builds every component; nothing listens or runs
// until Start. It opens (and recovers) the spool.
func New(cfg Config, deps Deps) (*App, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("producer config: %w", err)
	}
	if deps.NewProducer == nil {
		deps.NewProducer = func(c kafka.ProducerConfig) (kafka.Producer, error) { return kafkago.NewProducer(c) }
	}
	if deps.Registry == nil {
		deps.Registry = telemetry.NewRegistry()
	}
	if deps.Health == nil {
		deps.Health = telemetry.NewHealth()
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	a := &App{cfg: cfg, deps: deps, logger: deps.Logger}
	ok := false
	defer func() {
		if !ok {
			_ = a.closeComponents()
		}
	}()

	var err error
	pc := cfg.Kafka.ProducerConfig()
	pc.MaxMessageBytes = cfg.Kafka.MaxMessageBytes
	a.kafka, err = deps.NewProducer(pc)
	if err != nil {
		return nil, fmt.Errorf("kafka producer: %w", err)
	}
	a.metadata = deps.Metadata
	if a.metadata == nil {
		rc := cfg.Kafka.ReaderConfig()
		rc.ClientID += "-metadata"
		if a.metadata, err = kafkago.NewReader(rc); err != nil {
			return nil, fmt.Errorf("kafka client: %w", err)
		}
		a.ownsMetadata = true
	}
	deps.Health.Add("producer-kafka", a.kafkaReady)

	if cfg.Webhook.Listen != "" {
		if err := a.buildWebhook(); err != nil {
			return nil, err
		}
	}
	if cfg.Tail.Path != "" {
		tcfg := tail.DefaultConfig()
		tcfg.Path, tcfg.Cluster, tcfg.CheckpointFile = cfg.Tail.Path, cfg.Tail.Cluster, cfg.checkpointFile()
		tcfg.PollInterval, tcfg.MaxLineBytes, tcfg.MaxEventBytes = time.Duration(cfg.Tail.PollInterval), cfg.Tail.MaxLineBytes, cfg.Webhook.MaxEventBytes
		tcfg.Topics = cfg.Topics
		if a.tailer, err = tail.New(tcfg, a.kafka, deps.Registry, a.logger.With("component", "tail")); err != nil {
			return nil, err
		}
	}
	ok = true
	return a, nil
}

func (a *App) buildWebhook() error {
	cfg := a.cfg
	sp, err := spool.Open(spool.Config{Dir: cfg.spoolDir(), MaxBytes: cfg.Spool.MaxBytes, SegmentBytes: cfg.Spool.SegmentBytes}, a.logger.With("component", "spool"))
	if err != nil {
		return err
	}
	dcfg := spool.DefaultDurableConfig()
	dcfg.KafkaTimeout = time.Duration(cfg.Spool.KafkaTimeout)
	a.durable, err = spool.NewDurable(dcfg, a.kafka, sp, a.deps.Registry, a.logger.With("component", "spool"))
	if err != nil {
		_ = sp.Close()
		return err
	}
	a.deps.Health.Add("producer-spool", a.durable.Ready)

	wcfg := webhook.DefaultConfig()
	wcfg.Topics = cfg.Topics
	wcfg.MaxBodyBytes, wcfg.MaxEventBytes, wcfg.MaxConcurrent = cfg.Webhook.MaxBodyBytes, cfg.Webhook.MaxEventBytes, cfg.Webhook.MaxConcurrent
	wcfg.PublishTimeout = time.Duration(cfg.Webhook.PublishTimeout)
	wcfg.MaxConcurrentPerCluster, wcfg.MaxInflightBytes = cfg.Webhook.MaxConcurrentPerCluster, cfg.Webhook.MaxInflightBytes
	wcfg.BodyReadTimeout = time.Duration(cfg.Webhook.BodyReadTimeout)
	metrics, err := webhook.NewMetrics(a.deps.Registry)
	if err != nil {
		return fmt.Errorf("producer: %w", err)
	}
	rc, err := webhook.New(wcfg, a.durable, metrics, a.logger.With("component", "webhook"))
	if err != nil {
		return err
	}

	var cas *x509.CertPool
	if cfg.Webhook.TLS.Enabled() {
		if a.tlsCfg, cas, err = cfg.Webhook.TLS.ServerConfig(); err != nil {
			return err
		}
		// The certificate comes from a.cert, so that Reload can swap it
		// for a renewed one without a restart.
		a.cert.Store(&a.tlsCfg.Certificates[0])
		a.tlsCfg.Certificates = nil
		a.tlsCfg.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return a.cert.Load(), nil }
	}
	mode := auth.ModePath
	opts := auth.Options{Logger: a.logger.With("component", "auth"), Registerer: a.deps.Registry}
	if cfg.Webhook.hasCredentials() {
		mode = auth.ModeCredential
		if cfg.Webhook.TokensFile != "" {
			if opts.Tokens, err = auth.LoadTokens(cfg.Webhook.TokensFile, webhook.ValidClusterID); err != nil {
				return err
			}
		}
		opts.ClientCAs = cas
	} else {
		a.logger.Warn("webhook has no credentials configured: the cluster id is taken from the URL path; fine on loopback, unsafe elsewhere", "listen", cfg.Webhook.Listen)
	}
	opts.Mode = mode
	authn, err := auth.New(opts)
	if err != nil {
		return err
	}
	a.authn = authn
	mux := http.NewServeMux()
	mux.Handle(webhook.Pattern, authn.Wrap(rc))
	a.handler = mux
	return nil
}

// Registry returns the registry the producer's metrics are on.
func (a *App) Registry() *prometheus.Registry { return a.deps.Registry }

// Health returns the readiness checks.
func (a *App) Health() *telemetry.Health { return a.deps.Health }

// Start binds the listeners and starts the spool drainer and the tailer.
// It returns once the listeners accept connections.
func (a *App) Start(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.started || a.shutdown {
		return errors.New("producer: Start called twice or after Shutdown")
	}
	a.started = true
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	a.cancel = cancel
	if a.handler != nil {
		w := a.cfg.Webhook
		srv := &http.Server{Handler: a.handler, TLSConfig: a.tlsCfg, ErrorLog: slog.NewLogLogger(a.logger.Handler(), slog.LevelWarn),
			ReadHeaderTimeout: time.Duration(w.ReadHeaderTimeout), ReadTimeout: time.Duration(w.ReadTimeout),
			WriteTimeout: time.Duration(w.WriteTimeout), IdleTimeout: time.Duration(w.IdleTimeout)}
		addr, err := a.serve(srv, w.Listen, a.tlsCfg != nil)
		if err != nil {
			return fmt.Errorf("webhook listener: %w", err)
		}
		a.webhookAddr = addr
		a.durable.Start()
	}
	if a.tailer != nil {
		a.tailDone = make(chan error, 1)
		go func() { a.tailDone <- a.tailer.Run(runCtx) }()
	}
	a.logger.Info("producer started", "webhook", a.webhookURLLocked(), "tail", a.cfg.Tail.Path, "kafka", a.cfg.Kafka.Brokers)
	return nil
}

func (a *App) serve(srv *http.Server, addr string, useTLS bool) (string, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return "", err
	}
	if useTLS {
		l = tls.NewListener(l, srv.TLSConfig)
	}
	a.servers = append(a.servers, srv)
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.logger.Error("server stopped", "addr", addr, "err", err)
		}
	}()
	return l.Addr().String(), nil
}

// WebhookAddr is the bound host:port of the receiver (after Start).
func (a *App) WebhookAddr() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.webhookAddr
}

// WebhookURL is the receiver's base URL (after Start), e.g.
// https://127.0.0.1:8443; clusters post to <url>/v1/audit/<cluster>.
func (a *App) WebhookURL() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.webhookURLLocked()
}

// webhookURLLocked is WebhookURL for callers holding the lock.
func (a *App) webhookURLLocked() string {
	if a.webhookAddr == "" {
		return ""
	}
	if a.tlsCfg != nil {
		return "https://" + a.webhookAddr
	}
	return "http://" + a.webhookAddr
}

// Shutdown stops accepting requests and lets the ones in flight finish
// (bounded by ctx), stops the tailer at its last checkpoint and the spool
// drainer (spooled batches wait for the next start), and closes the Kafka
// producer. Safe to call twice and without Start.
func (a *App) Shutdown(ctx context.Context) error {
	a.mu.Lock()
	if a.shutdown {
		a.mu.Unlock()
		return nil
	}
	a.shutdown = true
	servers := a.servers
	a.mu.Unlock()
	var errs []error
	for _, srv := range servers {
		if err := srv.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stop server: %w", err))
		}
	}
	if a.cancel != nil {
		a.cancel()
	}
	if a.tailDone != nil {
		if err := <-a.tailDone; err != nil {
			errs = append(errs, fmt.Errorf("tailer: %w", err))
		}
	}
	errs = append(errs, a.closeComponents())
	return errors.Join(errs...)
}

func (a *App) closeComponents() error {
	var errs []error
	if a.durable != nil {
		if err := a.durable.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close spool: %w", err))
		}
	}
	if a.kafka != nil {
		if err := a.kafka.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close kafka producer: %w", err))
		}
	}
	if a.ownsMetadata {
		if err := a.metadata.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close kafka client: %w", err))
		}
	}
	return errors.Join(errs...)
}

// Run starts the app, waits for ctx and shuts down, giving the requests
// in flight at most shutdownTimeout.
func (a *App) Run(ctx context.Context) error {
	if err := a.Start(ctx); err != nil {
		_ = a.Shutdown(context.Background())
		return err
	}
	var tailErr <-chan error
	if a.tailDone != nil {
		tailErr = a.tailDone
	}
	select {
	case <-ctx.Done():
	case err := <-tailErr:
		// The tailer only returns early on an error it cannot continue
		// after; stop the process so that it is seen and restarted.
		a.tailDone = nil
		_ = a.Shutdown(context.Background())
		return fmt.Errorf("tailer stopped: %w", err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), time.Duration(a.cfg.ShutdownTimeout))
	defer cancel()
	return a.Shutdown(sctx)
}

// Close shuts the app down if Run did not (cli.App).
func (a *App) Close() error { return a.Shutdown(context.Background()) }

// kafkaReady is the readiness check "the Kafka producer has connected":
// false until Kafka answered once. After that a Kafka outage does not make
// the producer unready: the spool keeps acknowledging safely, and
// producer-spool reports when it fills up.
func (a *App) kafkaReady(ctx context.Context) error {
	if a.connected.Load() {
		return nil
	}
	if _, err := a.metadata.Partitions(ctx, a.cfg.Topics.Raw); err != nil {
		return fmt.Errorf("kafka not reached yet (%v): %w", a.cfg.Kafka.Brokers, err)
	}
	a.connected.Store(true)
	return nil
}

// Reload reads the webhook's tokens file, client CA and server certificate
// again (SIGHUP), so that rotated credentials and a renewed certificate
// apply without a restart. On error nothing changes.
func (a *App) Reload() error {
	w := a.cfg.Webhook
	if a.authn == nil {
		return nil // no webhook
	}
	var cas *x509.CertPool
	var cert *tls.Certificate
	if w.TLS.Enabled() {
		cfg, pool, err := w.TLS.ServerConfig()
		if err != nil {
			return fmt.Errorf("reload: %w", err)
		}
		cert, cas = &cfg.Certificates[0], pool
	}
	var tokens *auth.Tokens
	if w.TokensFile != "" {
		var err error
		if tokens, err = auth.LoadTokens(w.TokensFile, webhook.ValidClusterID); err != nil {
			return fmt.Errorf("reload: %w", err)
		}
	}
	if w.hasCredentials() {
		if err := a.authn.SetCredentials(tokens, cas); err != nil {
			return fmt.Errorf("reload: %w", err)
		}
	}
	if cert != nil {
		a.cert.Store(cert)
	}
	a.logger.Info("reloaded webhook credentials", "tokens_file", w.TokensFile, "client_ca", w.TLS.ClientCAFile, "cert", w.TLS.CertFile)
	return nil
}
