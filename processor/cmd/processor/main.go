// Command processor consumes raw Kubernetes audit events from Kafka,
// applies an audit.k8s.io/v1 policy and writes processed events (and
// poison records to the DLQ). All wiring is in package app; this file
// only parses flags, picks the sarama adapter and serves metrics.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/kafka/saramakafka"
	"github.com/auditpipe/auditpipe/internal/telemetry"
	"github.com/auditpipe/auditpipe/processor/app"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch {
	case len(os.Args) > 2 && os.Args[1] == "policy" && os.Args[2] == "test":
		err = runPolicyTest(os.Args[3:], os.Stdout, os.Stderr)
	case len(os.Args) > 2 && os.Args[1] == "rules" && os.Args[2] == "test":
		err = runRulesTest(os.Args[3:], os.Stdout, os.Stderr)
	case len(os.Args) > 1 && os.Args[1] == "replay":
		err = runReplay(ctx, os.Args[2:], os.Stdout, os.Stderr)
	default:
		err = run(ctx, os.Args[1:], os.Stderr)
	}
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "processor:", err)
		}
		os.Exit(2)
	}
}

func run(ctx context.Context, args []string, stderr io.Writer) error {
	cfg := app.DefaultConfig()
	fs := flag.NewFlagSet("processor", flag.ContinueOnError)
	fs.SetOutput(stderr)
	brokers := fs.String("brokers", "localhost:9092", "comma-separated Kafka bootstrap `addresses`")
	fs.StringVar(&cfg.Group, "group", cfg.Group, "consumer group `id` on the raw topic")
	fs.StringVar(&cfg.PolicyFile, "policy", "", "audit.k8s.io/v1 Policy `file` to apply, e.g. policies/tke-default.yaml: the fleet default unless --fleet names one (required without --fleet)")
	fs.StringVar(&cfg.FleetFile, "fleet", "", "fleet registry `file`: cluster metadata for enrichment, the fleet default policy (defaults.policy) and per-cluster policy overrides")
	fs.DurationVar(&cfg.ReloadInterval, "reload-interval", cfg.ReloadInterval, "how often to check the policy and fleet files for changes; a broken change is refused and logged, the previous policies stay; negative disables")
	fs.StringVar(&cfg.Topics.Raw, "topic-raw", cfg.Topics.Raw, "raw events `topic` to consume")
	fs.StringVar(&cfg.Topics.Events, "topic-events", cfg.Topics.Events, "processed events `topic`")
	fs.StringVar(&cfg.Topics.DLQ, "topic-dlq", cfg.Topics.DLQ, "dead-letter `topic`")
	fs.StringVar(&cfg.Topics.Alerts, "topic-alerts", cfg.Topics.Alerts, "alerts `topic`: one record per detection rule match; empty stores detections with the events only")
	fs.StringVar(&cfg.RulesFile, "rules", "", "detection rules `file` added to the shipped rules (a rule with a shipped id replaces it); the fleet registry's defaults.rules wins; reloaded like the policy")
	fs.BoolVar(&cfg.NoDetections, "no-detections", false, "run no detection rules at all")
	fs.IntVar(&cfg.MaxEventBytes, "max-event-bytes", cfg.MaxEventBytes, "largest processed event; larger ones lose their bodies, then go to the DLQ")
	fs.StringVar(&cfg.Delivery, "delivery", cfg.Delivery, "at-least-once (any broker and reader) or exactly-once (Kafka transactions: output and input offsets committed together; readers of the events topic must read committed data only)")
	fs.StringVar(&cfg.TransactionalID, "transactional-id", cfg.TransactionalID, "prefix of the Kafka transactional `ids` in exactly-once mode (one per input partition); the same for all replicas, unique to the group")
	fs.IntVar(&cfg.MaxBatch, "max-batch", 500, "most records per batch (per transaction in exactly-once mode)")
	fs.DurationVar(&cfg.SessionTimeout, "session-timeout", 10*time.Second, "consumer group session timeout: how soon a crashed replica's partitions move to another")
	metricsAddr := fs.String("metrics-addr", ":9464", "`address` for /metrics; empty disables")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg.Brokers = splitList(*brokers)
	if err := cfg.Validate(); err != nil {
		return err
	}
	logger, err := telemetry.NewLogger(stderr, *logLevel, "json")
	if err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}

	reg := telemetry.NewRegistry()
	a, err := app.New(cfg, app.Deps{
		NewProducer: func(c kafka.ProducerConfig) (kafka.Producer, error) { return saramakafka.NewProducer(c) },
		NewGroup:    func(c kafka.GroupConfig) (kafka.GroupConsumer, error) { return saramakafka.NewGroup(c) },
		NewTransactor: func(c kafka.TransactorConfig) (kafka.Transactor, error) {
			return saramakafka.NewTransactor(c)
		},
		Registerer: reg,
		Logger:     logger,
	})
	if err != nil {
		return err
	}
	defer func() {
		if err := a.Close(); err != nil {
			logger.Error("close", "err", err)
		}
	}()

	if *metricsAddr != "" {
		defer telemetry.Serve(*metricsAddr, reg, telemetry.NewHealth(), logger)()
	}

	logger.Info("processor starting", "brokers", cfg.Brokers, "metrics", *metricsAddr)
	return a.Run(ctx)
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
