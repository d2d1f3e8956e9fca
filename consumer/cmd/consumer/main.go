// Command consumer reads processed audit events from Kafka as a member of
// a consumer group per sink and writes them to the local store and/or
// Tencent Cloud CLS, each sink committing a partition's offset only past
// records it has durably. Run any number of replicas: they share the
// partitions. All wiring is in package app; this file parses flags and
// serves metrics.
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

	"github.com/auditpipe/auditpipe/consumer/app"
	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/kafka/kafkago"
	"github.com/auditpipe/auditpipe/internal/kafka/saramakafka"
	"github.com/auditpipe/auditpipe/internal/telemetry"
)

const usage = `Usage: consumer [flags]

Consumes the processed-events topic and writes every event to the sinks:
  local      the embedded SQLite store (idempotent on cluster, auditID, stage
             and content hash; a reused auditID is kept and marked)
  cls        Tencent Cloud CLS, one topic per cluster from the fleet registry
  cls-local  an in-process CLS stand-in (GET <url>/logs shows what would be sent)
Each sink has its own consumer group (local: --group itself; CLS:
<group>.cls) and commits only what it has durably, so a crash delays events
but never loses them (duplicates are possible and share cluster, auditID,
stage and auditpipe.contentHash with the original), and a CLS outage never
holds back the local store. See docs/decisions/0018-independent-sinks.md.

Settings come from --config (strict YAML; unknown keys are errors), then
flags override. CLS credentials may come from AUDITPIPE_CLS_SECRET_ID and
AUDITPIPE_CLS_SECRET_KEY instead of the file.

Flags:
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(os.Args) > 1 && tools[os.Args[1]] != nil {
		if err := tools[os.Args[1]](ctx, os.Args[2:], os.Stdout, os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, "consumer:", err)
			os.Exit(2)
		}
		return
	}
	if err := run(ctx, os.Args[1:], os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "consumer:", err)
		os.Exit(2)
	}
}

func run(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("consumer", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	configFile := fs.String("config", "", "YAML config `file` (see consumer/app.Config); flags override it")
	brokers := fs.String("brokers", "", "comma-separated Kafka bootstrap `addresses` (default from config, else localhost:9092)")
	sinks := fs.String("sink", "", "comma-separated sinks: local, cls, cls-local (default from config, else local)")
	storePath := fs.String("store", "", "local store `file` (default from config)")
	fleetFile := fs.String("fleet", "", "fleet registry `file` mapping clusters to CLS topics")
	groupID := fs.String("group", "", "consumer group `id` (default "+app.DefaultGroup+")")
	sessionTimeout := fs.Duration("session-timeout", 0, "how long the group waits for a silent (crashed) member (default from config, else 10s)")
	maxBatch := fs.Int("max-batch", 0, "most records of a partition handed to the sinks at once (default from config, else 500)")
	metricsAddr := fs.String("metrics-addr", ":9465", "`address` for /metrics; empty disables")
	apiListen := fs.String("api-listen", "", "`address` of the search API served over the local store (default from config, else "+app.DefaultAPIListen+"; beyond loopback it needs api.token and api.tls); empty in the config disables")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q (see --help)", fs.Args())
	}
	cfg := app.DefaultConfig()
	cfg.Brokers = []string{"localhost:9092"}
	if *configFile != "" {
		var err error
		if cfg, err = app.Load(*configFile); err != nil {
			return err
		}
	}
	if *brokers != "" {
		cfg.Brokers = splitList(*brokers)
	}
	if *sinks != "" {
		cfg.Local.Enabled, cfg.CLS.Mode = false, app.CLSOff
		for _, s := range splitList(*sinks) {
			switch s {
			case "local":
				cfg.Local.Enabled = true
			case app.CLSCloud, app.CLSLocal:
				cfg.CLS.Mode = s
			default:
				return fmt.Errorf("--sink: unknown sink %q (want local, cls, cls-local)", s)
			}
		}
	}
	if *storePath != "" {
		cfg.Local.Path = *storePath
	}
	if *fleetFile != "" {
		cfg.FleetFile = *fleetFile
	}
	if *sessionTimeout > 0 {
		cfg.SessionTimeout = app.Duration(*sessionTimeout)
	}
	if *maxBatch > 0 {
		cfg.MaxBatch = *maxBatch
	}
	if *groupID != "" {
		cfg.Group = *groupID
	}
	if *apiListen != "" {
		cfg.API.Listen = *apiListen
	}
	if v := os.Getenv("AUDITPIPE_CLS_SECRET_ID"); v != "" && cfg.CLS.SecretID == "" {
		cfg.CLS.SecretID = v
	}
	if v := os.Getenv("AUDITPIPE_CLS_SECRET_KEY"); v != "" && cfg.CLS.SecretKey == "" {
		cfg.CLS.SecretKey = v
	}
	logger, err := telemetry.NewLogger(stderr, *logLevel, "json")
	if err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}

	reg := telemetry.NewRegistry()
	// Offsets positions a sink's new group at the first start (0018).
	offsets, err := kafkago.NewReader(kafka.ReaderConfig{Brokers: cfg.Brokers, ClientID: cfg.ClientID + "-offsets"})
	if err != nil {
		return fmt.Errorf("kafka client for %v: %w", cfg.Brokers, err)
	}
	defer offsets.Close()
	a, err := app.New(cfg, app.Deps{
		NewGroup:   func(c kafka.GroupConfig) (kafka.GroupConsumer, error) { return saramakafka.NewGroup(c) },
		Offsets:    offsets,
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
	api, err := a.StartAPI()
	if err != nil {
		return err
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := api.Shutdown(ctx); err != nil {
			logger.Error("search API shutdown", "err", err)
		}
	}()
	if _, url := a.CLSLocal(); url != "" {
		logger.Info("cls-local", "logs", url+"/logs")
	}
	logger.Info("consumer starting", "brokers", cfg.Brokers, "group", cfg.Group, "topic", cfg.Topic,
		"local", cfg.Local.Enabled, "cls", cfg.CLS.Mode)
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
