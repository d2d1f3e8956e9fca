// Command auditpipe is the all-in-one auditpipe: the whole pipeline on an
// embedded Kafka broker and local store (`auditpipe run`, behind
// `make run`), plus the query and setup commands that go with it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	consumerapp "github.com/auditpipe/auditpipe/consumer/app"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/auditpipe/auditpipe/consumer/alerts"
	"github.com/auditpipe/auditpipe/consumer/group"
	"github.com/auditpipe/auditpipe/consumer/search"
	"github.com/auditpipe/auditpipe/deploy/local/allinone"
	"github.com/auditpipe/auditpipe/internal/cli"
	"github.com/auditpipe/auditpipe/internal/telemetry"
	"github.com/auditpipe/auditpipe/processor/replay/replaycmd"
	"github.com/auditpipe/auditpipe/producer/webhook"
)

const usage = `auditpipe: Kubernetes audit events from a fleet of clusters, through Kafka,
into a searchable store.

Usage:
  auditpipe run [flags]         run the whole pipeline in one process (make run)
  auditpipe validate [flags]    check the config, policy, fleet registry and files, then exit
  auditpipe version             print the version
  auditpipe events [flags]      list stored events with simple filters
  auditpipe search [flags] Q    search with the CLS query language (key:value AND ... | SQL)
  auditpipe alerts [flags]      list the detection alerts delivered last
  auditpipe kubeconfig [flags]  print the webhook config for kube-apiserver
  auditpipe replay [flags]      re-process history from the raw topic through a policy into Kafka, a store or CLS (or --dry-run)
  auditpipe groups list|describe|reset [flags]  list consumer groups, show or reset one's offsets
  auditpipe store migrate [flags]  copy the SQLite store of an earlier version into a VictoriaLogs one (vlogs, the default engine)
  auditpipe help                this text

Run "auditpipe <command> --help" for the flags of a command.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "auditpipe:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no command given")
	}
	switch args[0] {
	case "run":
		return runPipeline(ctx, args[1:], stdout, stderr)
	case "validate":
		return runValidate(ctx, args[1:], stdout, stderr)
	case "version":
		return cli.VersionCommand("auditpipe").Run(ctx, args[1:], stdout, stderr)
	case "events":
		return search.RunEventsCommand(ctx, args[1:], stdout, stderr)
	case "search":
		return search.RunSearchCommand(ctx, args[1:], stdout, stderr)
	case "alerts":
		return alerts.RunCommand(ctx, args[1:], stdout, stderr)
	case "kubeconfig":
		return printKubeconfig(args[1:], stdout, stderr)
	case "replay":
		return replaycmd.Command{Name: "auditpipe replay", Kafka: kafkaFlags}.Run(ctx, args[1:], stdout, stderr)
	case "groups":
		return group.GroupsCommand{Name: "auditpipe groups", Stdin: os.Stdin, Kafka: kafkaFlags}.Run(ctx, args[1:], stdout, stderr)
	case "store":
		if len(args) < 2 || args[1] != "migrate" {
			return errors.New("store: want \"store migrate\" (see auditpipe store migrate --help)")
		}
		return consumerapp.MigrateCommand{Name: "auditpipe store migrate", Layout: allinone.StorePath, DataDir: allinone.DefaultConfig().DataDir}.Run(ctx, args[2:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	return fmt.Errorf("unknown command %q (see auditpipe help)", args[0])
}

// runConfig parses the flags of run (and validate): the defaults, then
// the --config file, then the flags given.
// runOptions are run's flags that are not config keys.
type runOptions struct {
	demoDir    string
	cpuProfile string
}

func runConfig(command string, args []string, stdout io.Writer) (cfg allinone.Config, opts runOptions, err error) {
	cfg = allinone.DefaultConfig()
	fs := cli.NewFlagSet("auditpipe "+command, `Usage: auditpipe run|validate [flags]

Runs the whole pipeline in one process: an embedded Kafka broker, the webhook
receiver (producer), the processor with an audit policy, the consumer with the
local store, and the query API with /metrics, /healthz and /readyz. Data lives
under --data-dir and survives restarts. Ctrl-C stops it cleanly.

Point a kube-apiserver at it with the kubeconfig printed at start:
  kube-apiserver --audit-webhook-config-file=auditpipe.kubeconfig --audit-policy-file=...

auditpipe validate checks the config and the files it names (policy,
fleet registry, rules, certificates, secrets) and exits: it creates no
directory and starts nothing.

A --config file is read first; flags given on the command line win.`, stdout)
	configPath := fs.String("config", "", "YAML config `file` (keys: dataDir, policy, cluster, kafka, webhook, spool, tail, api, cls, store, retention, processor, fleet, topics, alerts, log, memoryLimitBytes); unknown keys are errors")
	dataDir := fs.String("data-dir", cfg.DataDir, "`directory` for the embedded broker's log and the local store")
	policyPath := fs.String("policy", "", "audit.k8s.io/v1 Policy `file` the processor applies (default: the TKE default policy)")
	cluster := fs.String("cluster", cfg.Cluster, "cluster `id` of the webhook kubeconfig printed at start")
	kafkaListen := fs.String("kafka-listen", cfg.Kafka.Listen, "`address` of the embedded Kafka broker")
	brokers := fs.String("brokers", "", "comma-separated bootstrap `addresses` of an external Kafka cluster (no embedded broker then)")
	webhookListen := fs.String("webhook-listen", cfg.Webhook.Listen, "`address` of the webhook receiver")
	apiListen := fs.String("api-listen", cfg.API.Listen, "`address` of the query API, /metrics, /healthz and /readyz")
	logLevel := fs.String("log-level", cfg.Log.Level, "log `level`: debug, info, warn, error")
	logFormat := fs.String("log-format", cfg.Log.Format, "log `format`: text or json")
	sink := fs.String("sink", "local", "where the consumer writes: `local` (the local store), cls-local (also an in-process CLS server that shows what would be sent to CLS) or cls (also Tencent Cloud CLS; credentials in --config under cls)")
	rules := fs.String("rules", "", "detection rules `file` added to the shipped rules (processor --rules)")
	alertmanager := fs.String("alertmanager", "", "deliver detection alerts to the Alertmanager at `URL` (its v2 API)")
	alertWebhook := fs.String("alert-webhook", "", "deliver detection alerts to a Slack-compatible incoming webhook `URL`")
	storeEngine := fs.String("store-engine", cfg.Store.Engine, "local store `engine` (key store.engine): vlogs (VictoriaLogs' storage, <data-dir>/store/vlogs) or sqlite (one file, <data-dir>/store/events.db)")
	memoryLimit := fs.Int64("memory-limit-bytes", cfg.MemoryLimitBytes, "soft limit of the process's Go memory in `bytes` (key memoryLimitBytes): the garbage collector works harder near it; 0 leaves GOMEMLIMIT or no limit")
	demo := fs.String("demo", "", "after start, post the audit events under `directory` (e.g. testdata/public-audit) as cluster \"demo\"")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to `file` when it stops (go tool pprof; for diagnosing a slow pipeline)")
	if err := cli.Parse(fs, args, false); err != nil {
		return cfg, runOptions{}, err
	}
	if *configPath != "" {
		if err := cli.LoadConfig(*configPath, &cfg); err != nil {
			return cfg, runOptions{}, err
		}
	}
	// Flags given explicitly override the file.
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "data-dir":
			cfg.DataDir = *dataDir
		case "policy":
			cfg.Policy = *policyPath
		case "cluster":
			cfg.Cluster = *cluster
		case "kafka-listen":
			cfg.Kafka.Listen = *kafkaListen
		case "brokers":
			cfg.Kafka.Brokers = cli.SplitList(*brokers)
		case "webhook-listen":
			cfg.Webhook.Listen = *webhookListen
		case "api-listen":
			cfg.API.Listen = *apiListen
		case "log-level":
			cfg.Log.Level = *logLevel
		case "log-format":
			cfg.Log.Format = *logFormat
		case "rules":
			cfg.Processor.Rules = *rules
		case "alertmanager":
			cfg.Alerts.Alertmanager = *alertmanager
		case "alert-webhook":
			cfg.Alerts.Webhook = *alertWebhook
		case "memory-limit-bytes":
			cfg.MemoryLimitBytes = *memoryLimit
		case "store-engine":
			cfg.Store.Engine = *storeEngine
		case "sink":
			if *sink == "local" {
				cfg.CLS.Mode = "off"
			} else {
				cfg.CLS.Mode = *sink
			}
		}
	})
	return cfg, runOptions{demoDir: *demo, cpuProfile: *cpuProfile}, nil
}

// runValidate is `auditpipe validate`.
func runValidate(_ context.Context, args []string, stdout, _ io.Writer) error {
	cfg, _, err := runConfig("validate", args, stdout)
	if err != nil {
		return err
	}
	if err := allinone.Check(cfg); err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, "auditpipe: config is valid")
	return err
}

func runPipeline(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, opts, err := runConfig("run", args, stdout)
	if err != nil {
		return err
	}
	demo := &opts.demoDir
	if opts.cpuProfile != "" {
		stopProfile, err := startCPUProfile(opts.cpuProfile)
		if err != nil {
			return err
		}
		defer stopProfile()
	}
	logger, err := telemetry.NewLogger(stderr, cfg.Log.Level, cfg.Log.Format)
	if err != nil {
		return err
	}

	defer privateUmask()()
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	defer allinone.ApplyMemoryLimit(cfg, logger)()
	started := time.Now()
	p, err := allinone.Start(ctx, cfg, logger)
	if err != nil {
		return err
	}
	kc, err := p.Kubeconfig(cfg.Cluster)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "auditpipe is ready in %s.\n\n", time.Since(started).Round(time.Millisecond))
	kafkaAuth := ""
	if s := p.KafkaSASL(); s.Enabled() {
		kafkaAuth = fmt.Sprintf("   (SASL %s; credentials in %s)", s, filepath.Join(cfg.DataDir, allinone.CredentialsFile))
	}
	fmt.Fprintf(stdout, "  webhook:  %s/v1/audit/{cluster}\n  api:      %s/api/v1/events   (metrics %s/metrics)\n  kafka:    %s%s\n\n",
		p.WebhookURL(), p.APIURL(), p.APIURL(), strings.Join(p.Brokers(), ","), kafkaAuth)
	fmt.Fprintf(stdout, "Save this as auditpipe.kubeconfig and start kube-apiserver with\n--audit-webhook-config-file=auditpipe.kubeconfig (and an --audit-policy-file):\n\n%s\n", kc)
	fmt.Fprintf(stdout, "Query:  auditpipe events --server %s --verb delete\n\n", p.APIURL())
	if u := p.CLSLocalURL(); u != "" {
		fmt.Fprintf(stdout, "CLS (local server): what would be sent to CLS is at %s/logs?topic_id=local-<cluster>\n\n", u)
	}

	if *demo != "" {
		res, err := allinone.PostDemo(ctx, p.WebhookURL(), "demo", *demo)
		if err != nil {
			logger.Error("demo events not loaded", "dir", *demo, "err", err)
		} else {
			fmt.Fprintf(stdout, "Demo: posted %d events from %d files as cluster \"demo\" (%d values skipped). Try:\n  auditpipe events --server %s --cluster demo --verb delete\n\n",
				res.Events, res.Files, res.Skipped, p.APIURL())
		}
	}

	<-ctx.Done()
	logger.Info("stopping")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	logger.Info("stopped cleanly")
	return nil
}

func printKubeconfig(args []string, stdout, _ io.Writer) error {
	fs := cli.NewFlagSet("auditpipe kubeconfig", "Usage: auditpipe kubeconfig --cluster ID [--server URL]\n\nPrints the file kube-apiserver reads with --audit-webhook-config-file.", stdout)
	cluster := fs.String("cluster", "", "cluster `id` the apiserver's events belong to (required)")
	server := fs.String("server", "http://127.0.0.1:8090", "base `URL` of the webhook receiver")
	if err := cli.Parse(fs, args, false); err != nil {
		return err
	}
	if *cluster == "" {
		return errors.New("kubeconfig: --cluster is required (see auditpipe kubeconfig --help)")
	}
	kc, err := webhook.Kubeconfig(*server, *cluster)
	if err != nil {
		return err
	}
	_, err = stdout.Write(kc)
	return err
}

// startCPUProfile profiles the process into path until the returned
// function runs.
func startCPUProfile(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("--cpuprofile %s: %w", path, err)
	}
	return func() {
		pprof.StopCPUProfile()
		_ = f.Close()
	}, nil
}
