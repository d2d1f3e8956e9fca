package allinone

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/auditpipe/auditpipe/consumer/alerts"
	consumerapp "github.com/auditpipe/auditpipe/consumer/app"
	"github.com/auditpipe/auditpipe/consumer/console"
	"github.com/auditpipe/auditpipe/consumer/search"
	"github.com/auditpipe/auditpipe/consumer/sink/eventstore"
	"github.com/auditpipe/auditpipe/internal/cli"
	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/kafka/embedded"
	"github.com/auditpipe/auditpipe/internal/kafka/kafkago"
	"github.com/auditpipe/auditpipe/internal/kafka/saramakafka"
	"github.com/auditpipe/auditpipe/internal/privatefs"
	"github.com/auditpipe/auditpipe/internal/telemetry"
	processorapp "github.com/auditpipe/auditpipe/processor/app"
	"github.com/auditpipe/auditpipe/processor/policies"
	producerapp "github.com/auditpipe/auditpipe/producer/app"
	"github.com/auditpipe/auditpipe/producer/webhook"
)

// Consumer group ids of the stages.
const (
	ProcessorGroup = "auditpipe-processor"
	ConsumerGroup  = "auditpipe-consumer"
	AlertsGroup    = "auditpipe-alerts"
)

// Pipeline is a running all-in-one pipeline.
type Pipeline struct {
	cfg    Config
	logger *slog.Logger

	broker      *embedded.Broker
	producer    *producerapp.App
	processor   *processorapp.App
	consumer    *consumerapp.App
	clsLocalURL string
	admin       kafka.Admin
	offsets     *kafkago.Reader // group checks (readiness, positioning new sink groups) and producer readiness
	// conn is how every Kafka client of the pipeline connects: the
	// embedded broker's address and user, or the external cluster's
	// kafka.brokers, kafka.tls and kafka.sasl.
	conn  kafka.Connection
	sasl  kafka.SASL // the embedded broker's user; zero with external brokers
	store eventstore.Store
	// reusedAlerts writes the alerts of rules on the store's reuse
	// marker (reused.go); nil without an alerts topic.
	reusedAlerts kafka.Producer
	groups       []kafka.GroupConsumer
	servers      []*http.Server
	webhookURL   string
	apiURL       string

	cancel   context.CancelFunc
	wg       sync.WaitGroup
	shutdown sync.Once
}

// Start starts every part and returns when the pipeline accepts events.
// On error, whatever was started is stopped again.
func Start(ctx context.Context, cfg Config, logger *slog.Logger) (_ *Pipeline, err error) {
	if err := Check(cfg); err != nil {
		return nil, err
	}
	var policyName string
	p := &Pipeline{cfg: cfg, logger: logger}
	defer func() {
		if err != nil {
			_ = p.Shutdown(context.Background())
		}
	}()
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	p.cancel = cancel

	// Everything under the data directory is private: the broker's log
	// and the spool hold unredacted events, and the broker password is
	// there (internal/privatefs says how this holds for every writer).
	if err := privatefs.MkdirAll(cfg.DataDir); err != nil {
		return nil, err
	}
	if err := privatefs.Tighten(cfg.DataDir); err != nil {
		return nil, err
	}
	reg := telemetry.NewRegistry()
	if err := cli.RegisterBuildInfo(reg, "auditpipe"); err != nil {
		return nil, err
	}
	health := telemetry.NewHealth()

	if err := p.startKafka(ctx); err != nil {
		return nil, err
	}
	admin, err := saramakafka.NewAdminWithConfig(withClientID(p.conn, "auditpipe-allinone").AdminConfig())
	if err != nil {
		return nil, fmt.Errorf("kafka admin for %v: %w", p.conn.Brokers, err)
	}
	p.admin = admin
	if err := admin.EnsureTopics(ctx, p.topicSpecs()...); err != nil {
		return nil, fmt.Errorf("create topics: %w", err)
	}
	// One admin client for the stages' group checks: readiness (has the
	// group joined?) and the consumer's positioning of new sink groups.
	if p.offsets, err = kafkago.NewReader(withClientID(p.conn, ConsumerGroup+"-offsets").ReaderConfig()); err != nil {
		return nil, fmt.Errorf("kafka client for %v: %w", p.conn.Brokers, err)
	}

	health.Add("kafka", func(ctx context.Context) error {
		_, err := admin.CommittedOffsets(ctx, ConsumerGroup, cfg.Topics.Events)
		return err
	})

	if err := privatefs.MkdirAll(filepath.Dir(StorePath(cfg.DataDir, cfg.Store.Engine))); err != nil {
		return nil, err
	}
	if cfg.Topics.Alerts != "" {
		if p.reusedAlerts, err = saramakafka.NewProducer(withClientID(p.conn, "auditpipe-allinone-alerts").ProducerConfig()); err != nil {
			return nil, fmt.Errorf("alerts producer: %w", err)
		}
	}

	// producer: webhook (and tailer) → raw topic, with the spool behind
	// it, exactly as the producer binary wires it.
	// Every Kafka client connects as p.conn says: the stages' configs
	// carry it.
	p.producer, err = producerapp.New(cfg.producerConfig(p.conn), producerapp.Deps{
		NewProducer: func(c kafka.ProducerConfig) (kafka.Producer, error) { return kafkago.NewProducer(c) },
		Metadata:    p.offsets,
		Registry:    reg, Health: health, Logger: logger.With("component", "producer"),
	})
	if err != nil {
		return nil, err
	}
	if err := p.producer.Start(ctx); err != nil {
		return nil, err
	}
	p.webhookURL = p.producer.WebhookURL()

	// processor: raw → events (+ dlq), on sarama, with the policy and
	// fleet files watched for changes.
	pcfg := cfg.processorConfig(p.conn)
	if pcfg.PolicyFile == "" {
		// No policy given: the shipped TKE default, written into the data
		// directory so that it can be read, edited and reloaded.
		if pcfg.PolicyFile, err = writeDefaultPolicy(cfg.DataDir); err != nil {
			return nil, err
		}
	}
	plog := logger.With("component", "processor")
	p.processor, err = processorapp.New(pcfg, processorapp.Deps{
		NewProducer:   func(c kafka.ProducerConfig) (kafka.Producer, error) { return saramakafka.NewProducer(c) },
		NewTransactor: func(c kafka.TransactorConfig) (kafka.Transactor, error) { return saramakafka.NewTransactor(c) },
		NewGroup:      func(c kafka.GroupConfig) (kafka.GroupConsumer, error) { return saramakafka.NewGroup(c) },
		Offsets:       p.offsets,
		Health:        health,
		Registerer:    reg,
		Logger:        plog,
	})
	if err != nil {
		return nil, err
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		if err := p.processor.Run(runCtx); err != nil {
			plog.Error("processor stopped", "err", err)
		}
	}()
	policyName = pcfg.PolicyFile

	// consumer: events → local store and CLS, on sarama, one consumer
	// group per sink (consumer/app), which opens the store and runs its
	// retention.
	clog := logger.With("component", "consumer")
	p.consumer, err = consumerapp.New(cfg.consumerConfig(p.conn), consumerapp.Deps{
		NewGroup: func(c kafka.GroupConfig) (kafka.GroupConsumer, error) { return saramakafka.NewGroup(c) },
		Offsets:  p.offsets,
		OnReused: p.raiseReusedAlerts,
		Health:   health, Registerer: reg, Logger: clog,
	})
	if err != nil {
		return nil, err
	}
	// The consumer owns the store (and its retention); the all-in-one
	// only serves queries from it.
	p.store = p.consumer.Store()
	if srv, url := p.consumer.CLSLocal(); srv != nil {
		logger.Info("local CLS server: what would be sent to CLS", "url", url+"/logs")
		p.clsLocalURL = url
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		if err := p.consumer.Run(runCtx); err != nil {
			clog.Error("consumer stopped", "err", err)
		}
	}()

	// alerts: audit.alerts → Alertmanager / webhook, when configured.
	var recentAlerts *alerts.Recent
	if cfg.Alerts.enabled() {
		var receivers []alerts.Receiver
		if cfg.Alerts.Alertmanager != "" {
			receivers = append(receivers, &alerts.Alertmanager{URL: cfg.Alerts.Alertmanager})
		}
		if cfg.Alerts.Webhook != "" {
			receivers = append(receivers, &alerts.Webhook{URL: cfg.Alerts.Webhook})
		}
		alog := logger.With("component", "alerts")
		metrics, err := alerts.NewMetrics(reg)
		if err != nil {
			return nil, err
		}
		h, err := alerts.New(cfg.alertsConfig(), receivers, metrics, alog, nil)
		if err != nil {
			return nil, err
		}
		recentAlerts = h.Recent()
		if err := p.startGroup(runCtx, AlertsGroup, cfg.Topics.Alerts, h, alog); err != nil {
			return nil, err
		}
	}

	// API, metrics, health.
	apiMux := telemetry.Mux(reg, health)
	apiLogger := logger.With("component", "api")
	apiRoutes := http.NewServeMux()
	apiRoutes.Handle("/api/", search.NewHandler(p.store, apiLogger))
	apiRoutes.Handle(search.ClustersPath, search.NewClustersHandler(p.store, cfg.Fleet, apiLogger))
	if recentAlerts != nil {
		apiRoutes.Handle(alerts.AlertsPath, alerts.APIHandler(recentAlerts))
	}
	api, err := search.ProtectAPI(cfg.API.Listen, cfg.API.Token, apiRoutes)
	if err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	apiMux.Handle("/api/", api)
	// The web console: public static files; its data comes from /api/,
	// with the API's token.
	consoleHandler, err := console.Handler()
	if err != nil {
		return nil, err
	}
	apiMux.Handle("/", consoleHandler)
	var apiTLS *tls.Config
	if cfg.API.TLS.Enabled() {
		if apiTLS, _, err = cfg.API.TLS.ServerConfig(); err != nil {
			return nil, fmt.Errorf("api: %w", err)
		}
	}
	apiAddr, err := p.serve(cfg.API.Listen, apiMux, apiTLS)
	if err != nil {
		return nil, fmt.Errorf("api listener: %w", err)
	}
	p.apiURL = "http://" + apiAddr
	if apiTLS != nil {
		p.apiURL = "https://" + apiAddr
	}
	logger.Info("auditpipe is ready",
		"webhook", p.webhookURL+webhook.PathPrefix+"{cluster}",
		"api", p.apiURL, "kafka", p.conn.Brokers, "data_dir", cfg.DataDir, "policy", policyName)
	return p, nil
}

// writeDefaultPolicy writes the shipped TKE default policy to
// <dataDir>/policies unless a file is already there (an operator may have
// edited it), and returns its path.
func writeDefaultPolicy(dataDir string) (string, error) {
	dir := filepath.Join(dataDir, "policies")
	path := filepath.Join(dir, policies.TKEDefaultName)
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	if err := privatefs.MkdirAll(dir); err != nil {
		return "", fmt.Errorf("write default policy: %w", err)
	}
	if err := os.WriteFile(path, policies.TKEDefault, privatefs.FileMode); err != nil {
		return "", fmt.Errorf("write default policy: %w", err)
	}
	return path, nil
}

func (p *Pipeline) startKafka(ctx context.Context) error {
	if len(p.cfg.Kafka.Brokers) > 0 {
		p.conn = p.cfg.Kafka.Connection()
		return nil
	}
	_, portStr, _ := net.SplitHostPort(p.cfg.Kafka.Listen)
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return fmt.Errorf("kafka.listen %q: port: %w", p.cfg.Kafka.Listen, err)
	}
	// The broker accepts only the all-in-one's own user: anyone else on
	// the host could otherwise read audit.raw or write events that never
	// passed the webhook's authentication.
	if p.sasl, err = kafkaCredentials(p.cfg.DataDir); err != nil {
		return err
	}
	bcfg := embedded.Config{
		SASL:              p.sasl,
		DataDir:           filepath.Join(p.cfg.DataDir, "kafka"),
		DefaultPartitions: p.cfg.Kafka.Partitions,
		// The broker is the only copy of acknowledged events until the
		// store has them: fsync before acknowledging.
		SyncWrites: true,
	}
	if port != 0 {
		bcfg.Ports = []int{port}
	}
	p.broker, err = embedded.Start(bcfg)
	if err != nil {
		return err
	}
	p.conn = kafka.Connection{Brokers: p.broker.Addrs(), SASL: p.sasl}
	return nil
}

func (p *Pipeline) topicSpecs() []kafka.TopicSpec {
	var specs []kafka.TopicSpec
	for _, name := range []string{p.cfg.Topics.Raw, p.cfg.Topics.Events, p.cfg.Topics.DLQ, p.cfg.Topics.Alerts} {
		if name == "" {
			continue // no alerts topic: detections are only stored
		}
		specs = append(specs, kafka.TopicSpec{Name: name, Partitions: p.cfg.Kafka.Partitions, ReplicationFactor: p.cfg.Kafka.ReplicationFactor, Configs: p.cfg.Kafka.TopicConfigs})
	}
	return specs
}

func (p *Pipeline) startGroup(ctx context.Context, id, topic string, h kafka.Handler, logger *slog.Logger) error {
	g, err := saramakafka.NewGroup(withClientID(p.conn, id).GroupConfig(id, topic))
	if err != nil {
		return fmt.Errorf("consumer group %s: %w", id, err)
	}
	p.groups = append(p.groups, g)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		kafka.Supervise(ctx, g, h, 10*time.Second, logger)
	}()
	return nil
}

// serve listens on addr (port 0 picks a free one) and serves h in the
// background, over TLS when tlsCfg is set; it returns the bound address.
func (p *Pipeline) serve(addr string, h http.Handler, tlsCfg *tls.Config) (string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", err
	}
	if tlsCfg != nil {
		ln = tls.NewListener(ln, tlsCfg)
	}
	srv := &http.Server{Handler: h, TLSConfig: tlsCfg, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(p.logger.Handler(), slog.LevelWarn)}
	p.servers = append(p.servers, srv)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			p.logger.Error("http server stopped", "addr", ln.Addr().String(), "err", err)
		}
	}()
	return ln.Addr().String(), nil
}

// WebhookURL is the receiver's base URL; events for cluster c go to
// WebhookURL()+"/v1/audit/"+c.
func (p *Pipeline) WebhookURL() string { return p.webhookURL }

// APIURL is the base URL of the query API, /metrics and health endpoints.
func (p *Pipeline) APIURL() string { return p.apiURL }

// CLSLocalURL is the base URL of the in-process CLS server with
// cls.mode cls-local ("" otherwise); GET <url>/logs shows what it received.
func (p *Pipeline) CLSLocalURL() string { return p.clsLocalURL }

// Brokers are the Kafka bootstrap addresses in use.
func (p *Pipeline) Brokers() []string { return p.conn.Brokers }

// KafkaSASL is what a Kafka client of the embedded broker authenticates
// with (also in <dataDir>/kafka-credentials.json); zero with external
// brokers.
func (p *Pipeline) KafkaSASL() kafka.SASL { return p.sasl }

// Kubeconfig returns the webhook kubeconfig for cluster.
func (p *Pipeline) Kubeconfig(cluster string) ([]byte, error) {
	return webhook.Kubeconfig(p.webhookURL, cluster)
}

// Shutdown stops accepting events, lets the stages finish their batches,
// and closes the store and broker. Safe to call twice.
func (p *Pipeline) Shutdown(ctx context.Context) error {
	var errs []error
	p.shutdown.Do(func() {
		// Webhook first: nothing new is accepted while the rest drains.
		if p.producer != nil {
			if err := p.producer.Shutdown(ctx); err != nil {
				errs = append(errs, fmt.Errorf("stop producer: %w", err))
			}
		}
		for _, s := range p.servers {
			if err := s.Shutdown(ctx); err != nil {
				errs = append(errs, fmt.Errorf("stop http server: %w", err))
			}
		}
		if p.cancel != nil {
			p.cancel()
		}
		done := make(chan struct{})
		go func() { p.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			errs = append(errs, fmt.Errorf("stages did not stop in time: %w", ctx.Err()))
		}
		for _, g := range p.groups {
			if err := g.Close(); err != nil {
				errs = append(errs, fmt.Errorf("leave consumer group: %w", err))
			}
		}
		if p.processor != nil {
			if err := p.processor.Close(); err != nil {
				errs = append(errs, fmt.Errorf("close processor: %w", err))
			}
		}
		if p.consumer != nil {
			if err := p.consumer.Close(); err != nil {
				errs = append(errs, fmt.Errorf("close consumer sinks: %w", err))
			}
		}
		if p.reusedAlerts != nil {
			if err := p.reusedAlerts.Close(); err != nil {
				errs = append(errs, fmt.Errorf("close alerts producer: %w", err))
			}
		}
		if p.admin != nil {
			_ = p.admin.Close()
		}
		if p.offsets != nil {
			_ = p.offsets.Close()
		}
		p.broker.Close()
		// Files the store and the broker created while running, in case
		// the process umask let them be readable (the directory kept them
		// private meanwhile).
		if err := privatefs.Tighten(p.cfg.DataDir); err != nil {
			errs = append(errs, err)
		}
	})
	return errors.Join(errs...)
}
