// Command processor consumes raw Kubernetes audit events from Kafka,
// applies an audit.k8s.io/v1 policy and writes processed events (and
// poison records to the DLQ). The wiring is in package app, the command
// scaffolding in internal/cli; this file names the commands and flags and
// picks the Kafka adapters.
package main

import (
	"context"
	"errors"
	"flag"
	"time"

	"github.com/auditpipe/auditpipe/internal/cli"
	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/kafka/kafkago"
	"github.com/auditpipe/auditpipe/internal/kafka/saramakafka"
	"github.com/auditpipe/auditpipe/processor/app"
)

const doc = `processor: consumes raw audit events from Kafka, applies the audit policy
(per cluster from the fleet registry), enriches, redacts and runs detection
rules, and writes processed events, alerts and dead letters back to Kafka.`

var stage = cli.Stage[app.Config, *app.Config]{
	Name:     "processor",
	Usage:    doc + "\n\nUsage: processor run|validate [--config FILE] [flags]",
	Defaults: defaults,
	Flags:    flags,
	Check:    func(c *app.Config) error { return app.Check(*c) },
	New:      newApp,
}

func main() { program().Main() }

func program() *cli.Program {
	return &cli.Program{Name: "processor", Doc: doc, Default: "run", Commands: append(stage.Commands(),
		cli.Command{Name: "policy", Summary: "policy tools", Sub: []cli.Command{{Name: "test", Summary: "price a policy on recorded events", Run: runPolicyTest}}},
		cli.Command{Name: "rules", Summary: "detection rule tools", Sub: []cli.Command{{Name: "test", Summary: "run detection rules over recorded events", Run: runRulesTest}}},
		cli.Command{Name: "replay", Summary: "re-process raw history through a policy into Kafka, a store or CLS", Run: runReplay},
	)}
}

func defaults() app.Config {
	c := app.DefaultConfig()
	c.Kafka.Brokers = []string{"localhost:9092"}
	return c
}

func flags(fs *flag.FlagSet, cfg *app.Config) {
	cfg.Kafka.RegisterFlags(fs)
	fs.StringVar(&cfg.Group, "group", cfg.Group, "consumer group `id` on the raw topic (group)")
	fs.StringVar(&cfg.PolicyFile, "policy", cfg.PolicyFile, "audit.k8s.io/v1 Policy `file`: the fleet default unless --fleet names one (policy)")
	fs.StringVar(&cfg.FleetFile, "fleet", cfg.FleetFile, "fleet registry `file`: cluster metadata, default policy and per-cluster overrides (fleet)")
	fs.StringVar(&cfg.RulesFile, "rules", cfg.RulesFile, "detection rules `file` added to the shipped rules (rules)")
	fs.BoolVar(&cfg.NoDetections, "no-detections", cfg.NoDetections, "run no detection rules at all (noDetections)")
	fs.DurationVar((*time.Duration)(&cfg.ReloadInterval), "reload-interval", time.Duration(cfg.ReloadInterval), "how often to look for changed policy, fleet and rules files; negative disables; SIGHUP reloads at once (reloadInterval)")
	fs.StringVar(&cfg.Topics.Raw, "topic-raw", cfg.Topics.Raw, "raw events `topic` (topics.raw)")
	fs.StringVar(&cfg.Topics.Events, "topic-events", cfg.Topics.Events, "processed events `topic` (topics.events)")
	fs.StringVar(&cfg.Topics.DLQ, "topic-dlq", cfg.Topics.DLQ, "dead-letter `topic` (topics.dlq)")
	fs.StringVar(&cfg.Topics.Alerts, "topic-alerts", cfg.Topics.Alerts, "alerts `topic`; empty stores detections with the events only (topics.alerts)")
	fs.IntVar(&cfg.MaxEventBytes, "max-event-bytes", cfg.MaxEventBytes, "largest processed event; larger ones lose their bodies, then go to the DLQ (maxEventBytes)")
	fs.StringVar(&cfg.Delivery, "delivery", cfg.Delivery, "at-least-once or exactly-once (Kafka transactions) (delivery)")
	fs.StringVar(&cfg.TransactionalID, "transactional-id", cfg.TransactionalID, "prefix of the transactional `ids` in exactly-once mode (transactionalID)")
	fs.IntVar(&cfg.MaxBatch, "max-batch", cfg.MaxBatch, "most records per batch; 0 is the default 500 (maxBatch)")
	fs.DurationVar((*time.Duration)(&cfg.SessionTimeout), "session-timeout", time.Duration(cfg.SessionTimeout), "how soon a crashed replica's partitions move; 0 is the default 10s (sessionTimeout)")
}

// processor is the app with the Kafka client of its readiness check.
type processor struct {
	*app.App
	offsets *kafkago.Reader
}

func (p processor) Close() error { return errors.Join(p.App.Close(), p.offsets.Close()) }

func newApp(ctx context.Context, cfg *app.Config, env cli.Env) (cli.App, error) {
	rc := cfg.Kafka.ReaderConfig()
	rc.ClientID += "-admin"
	offsets, err := kafkago.NewReader(rc)
	if err != nil {
		return nil, err
	}
	// The producer and the group connect when created: wait for Kafka
	// (unready, logging why) instead of exiting into a crash loop.
	if err := cli.AwaitKafka(ctx, env, cfg.Kafka.Brokers, func(ctx context.Context) error {
		_, err := offsets.DescribeGroup(ctx, cfg.Group)
		return err
	}); err != nil {
		return nil, errors.Join(err, offsets.Close())
	}
	a, err := app.New(*cfg, app.Deps{
		NewProducer:   func(c kafka.ProducerConfig) (kafka.Producer, error) { return saramakafka.NewProducer(c) },
		NewGroup:      func(c kafka.GroupConfig) (kafka.GroupConsumer, error) { return saramakafka.NewGroup(c) },
		NewTransactor: func(c kafka.TransactorConfig) (kafka.Transactor, error) { return saramakafka.NewTransactor(c) },
		Offsets:       offsets, Health: env.Health, Registerer: env.Registry, Logger: env.Logger,
	})
	if err != nil {
		return nil, errors.Join(err, offsets.Close())
	}
	return processor{App: a, offsets: offsets}, nil
}
