// Command consumer reads processed audit events from Kafka as a member of
// a consumer group per sink and writes them to the local store and/or
// Tencent Cloud CLS, each sink committing a partition's offset only past
// records it has durably. Run any number of replicas: they share the
// partitions. The wiring is in package app, the command scaffolding in
// internal/cli; this file names the commands and flags and picks the Kafka
// adapters.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/auditpipe/auditpipe/consumer/app"
	"github.com/auditpipe/auditpipe/internal/cli"
	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/kafka/kafkago"
	"github.com/auditpipe/auditpipe/internal/kafka/saramakafka"
)

const doc = `consumer: consumes the processed-events topic and writes every event to the sinks:
  local      the embedded store, VictoriaLogs or SQLite (local.engine; idempotent
             on cluster, auditID, stage and content hash), with its retention;
             "consumer store migrate" copies a SQLite store into a vlogs one
  cls        Tencent Cloud CLS, one topic per cluster from the fleet registry
  cls-local  an in-process CLS stand-in (GET <url>/logs shows what would be sent)
Each sink has its own consumer group (local: the group itself; CLS:
<group>.cls) and commits only what it has durably (decision 0018).
CLS credentials: cls.secretID/secretKey (use ${ENV}), cls.secretIDFile/
secretKeyFile, or AUDITPIPE_CLS_SECRET_ID/AUDITPIPE_CLS_SECRET_KEY.`

var stage = cli.Stage[app.Config, *app.Config]{
	Name:     "consumer",
	Usage:    doc + "\n\nUsage: consumer run|validate [--config FILE] [flags]",
	Defaults: defaults,
	Flags:    flags,
	Check:    check,
	New:      newApp,
}

func main() { program().Main() }

func program() *cli.Program {
	return &cli.Program{Name: "consumer", Doc: doc, Default: "run", Commands: append(stage.Commands(), tools()...)}
}

func defaults() app.Config {
	c := app.DefaultConfig()
	c.Kafka.Brokers = []string{"localhost:9092"}
	return c
}

func flags(fs *flag.FlagSet, cfg *app.Config) {
	cfg.Kafka.RegisterFlags(fs)
	fs.Func("sink", "comma-separated sinks: local, cls, cls-local (local.enabled, cls.mode)", func(v string) error {
		cfg.Local.Enabled, cfg.CLS.Mode = false, app.CLSOff
		for _, s := range cli.SplitList(v) {
			switch s {
			case "local":
				cfg.Local.Enabled = true
			case app.CLSCloud, app.CLSLocal:
				cfg.CLS.Mode = s
			default:
				return fmt.Errorf("unknown sink %q (want local, cls, cls-local)", s)
			}
		}
		return nil
	})
	fs.StringVar(&cfg.Local.Path, "store", cfg.Local.Path, "local store `path`: the VictoriaLogs directory, or the SQLite file (local.path)")
	fs.StringVar(&cfg.Local.Engine, "store-engine", cfg.Local.Engine, "local store `engine`: vlogs or sqlite (local.engine)")
	fs.StringVar(&cfg.FleetFile, "fleet", cfg.FleetFile, "fleet registry `file` mapping clusters to CLS topics (fleet)")
	fs.StringVar(&cfg.Group, "group", cfg.Group, "consumer group `id` (group)")
	fs.DurationVar((*time.Duration)(&cfg.SessionTimeout), "session-timeout", time.Duration(cfg.SessionTimeout), "how long the group waits for a silent (crashed) member; 0 is 10s (sessionTimeout)")
	fs.IntVar(&cfg.MaxBatch, "max-batch", cfg.MaxBatch, "most records of a partition handed to the sinks at once (maxBatch)")
	fs.StringVar(&cfg.API.Listen, "api-listen", cfg.API.Listen, "`address` of the search API over the local store; beyond loopback it needs api.token and api.tls (or api.allowInsecure); empty serves none (api.listen)")
}

func check(cfg *app.Config) error {
	if v := os.Getenv("AUDITPIPE_CLS_SECRET_ID"); v != "" && cfg.CLS.SecretID == "" && cfg.CLS.SecretIDFile == "" {
		cfg.CLS.SecretID = v
	}
	if v := os.Getenv("AUDITPIPE_CLS_SECRET_KEY"); v != "" && cfg.CLS.SecretKey == "" && cfg.CLS.SecretKeyFile == "" {
		cfg.CLS.SecretKey = v
	}
	return app.Check(cfg)
}

// consumer is the app with the Kafka client of its group checks and its
// search API.
type consumer struct {
	*app.App
	offsets *kafkago.Reader
	api     *app.APIServer
}

// Reload re-reads the fleet registry (the CLS sink's routing) and the
// search API's token file and certificate (SIGHUP); each part that fails
// keeps its previous state.
func (c consumer) Reload() error { return errors.Join(c.App.Reload(), c.api.Reload()) }

// Close stops the search API before the app closes the store under it.
func (c consumer) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return errors.Join(c.api.Shutdown(ctx), c.App.Close(), c.offsets.Close())
}

func newApp(ctx context.Context, cfg *app.Config, env cli.Env) (cli.App, error) {
	// Offsets positions a sink's new group at the first start (0018) and
	// tells readiness whether the groups have joined.
	rc := cfg.Kafka.ReaderConfig()
	rc.ClientID += "-offsets"
	offsets, err := kafkago.NewReader(rc)
	if err != nil {
		return nil, fmt.Errorf("kafka client for %v: %w", cfg.Kafka.Brokers, err)
	}
	// The sinks' groups connect when created: wait for Kafka (unready,
	// logging why) instead of exiting into a crash loop.
	if err := cli.AwaitKafka(ctx, env, cfg.Kafka.Brokers, func(ctx context.Context) error {
		_, err := offsets.DescribeGroup(ctx, cfg.Group)
		return err
	}); err != nil {
		return nil, errors.Join(err, offsets.Close())
	}
	a, err := app.New(*cfg, app.Deps{
		NewGroup: func(c kafka.GroupConfig) (kafka.GroupConsumer, error) { return saramakafka.NewGroup(c) },
		Offsets:  offsets, Health: env.Health, Registerer: env.Registry, Logger: env.Logger,
	})
	if err != nil {
		return nil, errors.Join(err, offsets.Close())
	}
	api, err := a.StartAPI()
	if err != nil {
		return nil, errors.Join(err, a.Close(), offsets.Close())
	}
	env.Logger.Info("consumer configured", "brokers", cfg.Kafka.Brokers, "group", cfg.Group, "topic", cfg.Topic,
		"local", cfg.Local.Enabled, "cls", cfg.CLS.Mode)
	return consumer{App: a, offsets: offsets, api: api}, nil
}
