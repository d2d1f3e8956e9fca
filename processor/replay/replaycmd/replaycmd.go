// Package replaycmd is the replay command ("processor replay", and
// "auditpipe replay" in the all-in-one): the flags, the targets (a Kafka
// topic, a local store, CLS) and the summary around package replay.
package replaycmd

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/auditpipe/auditpipe/consumer/group"
	"github.com/auditpipe/auditpipe/consumer/sink/cls"
	"github.com/auditpipe/auditpipe/consumer/sink/eventstore"
	"github.com/auditpipe/auditpipe/consumer/sink/local"
	"github.com/auditpipe/auditpipe/consumer/sink/vlstore"
	"github.com/auditpipe/auditpipe/internal/cli"
	"github.com/auditpipe/auditpipe/internal/fleet"
	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/kafka/kafkago"
	"github.com/auditpipe/auditpipe/internal/telemetry"
	"github.com/auditpipe/auditpipe/processor/detect"
	"github.com/auditpipe/auditpipe/processor/policies"
	"github.com/auditpipe/auditpipe/processor/policy"
	"github.com/auditpipe/auditpipe/processor/replay"
	"github.com/auditpipe/auditpipe/schemas"
)

const usage = `Usage: %[1]s [flags]

Re-reads the raw topic (the bytes as the apiservers sent them) for a time
window or offset range, optionally for chosen clusters, through an audit
policy, into a target: a Kafka topic, a local store, or CLS. The
detection rules run as in the processor (the shipped set plus --rules):
replayed events carry auditpipe.detections and the summary counts matches
per rule; alerts are written only with --alerts-topic.

  # what would lean.yaml keep of last week's history, per rule and cluster?
  %[1]s --dry-run --from 168h --policy lean.yaml

  # re-run yesterday through the new policy into a new topic
  %[1]s --from 2026-11-26T00:00:00Z --to 2026-11-27T00:00:00Z \
      --policy new.yaml --target kafka --target-topic audit.events.replay \
      --checkpoint replay-2026-11-26.json

  # re-ship the hours of a CLS outage to each cluster's CLS topic
  %[1]s --from 2026-11-26T08:00:00Z --to 2026-11-26T11:00:00Z \
      --target cls --fleet fleet.yaml --cls-endpoint ap-guangzhou.cls.tencentcs.com \
      --cls-secret-id-file id --cls-secret-key-file key --checkpoint cls-outage.json

--target cls sends to the topic the live CLS sink uses for the event's
cluster: clusters.<id>.cls.topicID of the fleet registry, else
--cls-default-topic-id; a cluster with neither stops the replay (nothing
is dropped silently). Credentials: --cls-secret-id-file and
--cls-secret-key-file, or AUDITPIPE_CLS_SECRET_ID and
AUDITPIPE_CLS_SECRET_KEY.

It reads partitions directly and never uses or moves a consumer group's
offsets. The end of every partition's range is fixed when the replay
starts (events arriving later are not included). Ctrl-C finishes the batch
in flight and stops; running the same command again resumes from the
checkpoint file without gaps or duplicates. A crash (kill -9) may repeat
the last batch, which the local store, CLS searches and the live sinks
de-duplicate on (cluster, auditID, stage, auditpipe.contentHash). The
output is deterministic: processedAt is the raw record's timestamp.

--target local writes a local store of the engine --store-engine names:
vlogs (the default, a directory such as data/store/vlogs) or sqlite (one
file such as data/store/events.db), as the consumer's local.engine and
auditpipe run --store-engine. The store allows one writing process: stop
the consumer writing it first, or replay into another --store.

Flags:
`

// Command is the replay command.
type Command struct {
	// Name is the command as typed, for help: "processor replay".
	Name string
	// Kafka registers the connection flags; nil: group.DefaultKafkaFlags.
	Kafka group.KafkaFlags
}

// Run runs a replay with args (after "replay"). Help goes to stdout and
// returns nil; errors are returned, not printed. The summary goes to
// stdout, progress to stderr.
func (c Command) Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	name := c.Name
	if name == "" {
		name = "replay"
	}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	kafkaFlags := c.Kafka
	if kafkaFlags == nil {
		kafkaFlags = group.DefaultKafkaFlags
	}
	conn, err := kafkaFlags(fs, args)
	if err != nil {
		return err
	}
	topic := fs.String("topic", schemas.DefaultRawTopic, "raw `topic` to read")
	from := fs.String("from", "", "start of the window: RFC 3339 `time`, or a duration ago such as 24h (default: the oldest retained record)")
	to := fs.String("to", "", "end of the window, exclusive: RFC 3339 `time` or a duration ago (default: now, fixed at start)")
	offsets := fs.String("offsets", "", "exact offset `ranges` instead of a window: PARTITION:START-END[,...], END exclusive")
	clusters := fs.String("cluster", "", "comma-separated cluster `ids` to replay (default: all)")
	policyPath := fs.String("policy", "", "audit.k8s.io/v1 Policy `file` (default: the TKE default policy)")
	rulesPath := fs.String("rules", "", "detection rules `file` evaluated with the shipped set, as the processor's --rules")
	alertsTopic := fs.String("alerts-topic", "", "`topic` for the alerts of detection rule matches (default: counted, not written: replaying history pages no one)")
	dryRun := fs.Bool("dry-run", false, "evaluate and count per policy rule, cluster and detection rule; write nothing")
	target := fs.String("target", "kafka", "where processed events go: kafka (--target-topic), local (--store) or cls (--fleet, --cls-*)")
	targetTopic := fs.String("target-topic", "", "`topic` for --target kafka (must exist)")
	dlqTopic := fs.String("dlq-topic", "", "`topic` for records the processor cannot handle (default: counted, not written)")
	store := fs.String("store", "", "local store `path` for --target local: a directory for vlogs, e.g. data/store/vlogs; a file for sqlite, e.g. data/store/events.db")
	storeEngine := fs.String("store-engine", eventstore.EngineVictoriaLogs, "local store `engine` for --target local: vlogs (VictoriaLogs' storage, a directory) or sqlite (one file)")
	fleetFile := fs.String("fleet", "", "fleet registry `file` for --target cls: each cluster's CLS topic, as the consumer's")
	clsEndpoint := fs.String("cls-endpoint", "", "CLS upload `host` for --target cls, e.g. ap-guangzhou.cls.tencentcs.com (http://host:port for a local server)")
	clsIDFile := fs.String("cls-secret-id-file", "", "`file` holding the CLS SecretId (default $AUDITPIPE_CLS_SECRET_ID)")
	clsKeyFile := fs.String("cls-secret-key-file", "", "`file` holding the CLS SecretKey (default $AUDITPIPE_CLS_SECRET_KEY)")
	clsDefaultTopic := fs.String("cls-default-topic-id", "", "CLS `topic` id for clusters the fleet registry gives none, as the consumer's cls.defaultTopicID")
	checkpoint := fs.String("checkpoint", "", "checkpoint `file`; required unless --dry-run; an existing one is resumed")
	maxEventBytes := fs.Int("max-event-bytes", 0, "size limit of a processed event in `bytes` (default 1 MiB, as the processor)")
	batchSize := fs.Int("batch-size", 500, "records per `batch`: one target write and one checkpoint update each")
	parallelism := fs.Int("parallelism", 0, "`partitions` processed at once (default: number of CPUs)")
	progress := fs.Duration("progress", 0, "progress update `interval` on stderr (default 500ms on a terminal, 10s otherwise)")
	logLevel := fs.String("log-level", "warn", "log `level`: debug, info, warn, error")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(stdout, usage, name)
			fs.SetOutput(stdout)
			fs.PrintDefaults()
			return nil
		}
		return fmt.Errorf("%w (see %s --help)", err, name)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q (see %s --help)", fs.Args(), name)
	}
	if err := validateStoreEngine(*storeEngine); err != nil {
		return err
	}
	logger, err := telemetry.NewLogger(stderr, *logLevel, "text")
	if err != nil {
		return err
	}

	now := time.Now()
	cfg := replay.Config{
		Topic:         *topic,
		Checkpoint:    *checkpoint,
		DryRun:        *dryRun,
		MaxEventBytes: *maxEventBytes,
		Parallelism:   *parallelism,
		Clusters:      cli.SplitList(*clusters),
	}
	if cfg.From, err = group.ParseWhen(*from, now); err != nil {
		return fmt.Errorf("--from: %w", err)
	}
	if cfg.To, err = group.ParseWhen(*to, now); err != nil {
		return fmt.Errorf("--to: %w", err)
	}
	if cfg.Offsets, err = parseOffsets(*offsets); err != nil {
		return fmt.Errorf("--offsets: %w", err)
	}
	pol, policyID, err := loadPolicy(*policyPath)
	if err != nil {
		return err
	}
	cfg.PolicyID = policyID
	rules, rulesID, err := loadRules(*rulesPath)
	if err != nil {
		return err
	}
	cfg.RulesID = rulesID

	rc, err := conn()
	if err != nil {
		return err
	}
	rc.ClientID = "auditpipe-replay"
	rc.MaxBatch = *batchSize
	reader, err := kafkago.NewReader(rc)
	if err != nil {
		return err
	}
	defer reader.Close()
	deps := replay.Deps{Reader: reader, Policy: pol, Detections: &detect.Fleet{Default: rules}, Logger: logger}

	if !*dryRun {
		var producer kafka.Producer
		newProducer := func() (kafka.Producer, error) {
			if producer == nil {
				if producer, err = kafkago.NewProducer(producerConfig(rc)); err != nil {
					return nil, err
				}
			}
			return producer, nil
		}
		defer func() {
			if producer != nil {
				_ = producer.Close()
			}
		}()
		switch *target {
		case "kafka":
			if *targetTopic == "" {
				return errors.New("--target kafka needs --target-topic")
			}
			if *targetTopic == *topic {
				return fmt.Errorf("--target-topic %s is the raw topic being replayed", *targetTopic)
			}
			p, err := newProducer()
			if err != nil {
				return err
			}
			deps.Target = replay.KafkaTarget{Producer: p, Topic: *targetTopic}
		case "local":
			if *store == "" {
				return errors.New("--target local needs --store")
			}
			s, err := openStore(*storeEngine, *store, logger)
			if err != nil {
				return err
			}
			defer s.Close()
			deps.Target = StoreTarget{Store: s}
		case "cls":
			t, err := newCLSTarget(clsFlags{endpoint: *clsEndpoint, idFile: *clsIDFile, keyFile: *clsKeyFile,
				fleet: *fleetFile, defaultTopic: *clsDefaultTopic}, logger)
			if err != nil {
				return err
			}
			defer func() {
				if err := t.Sink.Close(30 * time.Second); err != nil {
					logger.Error("cls target: close", "err", err)
				}
			}()
			deps.Target = t
		default:
			return fmt.Errorf("--target %q: want kafka, local or cls", *target)
		}
		if *dlqTopic != "" {
			p, err := newProducer()
			if err != nil {
				return err
			}
			deps.DLQ = replay.KafkaTarget{Producer: p, Topic: *dlqTopic}
		}
		if *alertsTopic != "" {
			p, err := newProducer()
			if err != nil {
				return err
			}
			deps.Alerts = replay.KafkaTarget{Producer: p, Topic: *alertsTopic}
		}
	}

	r, err := replay.New(cfg, deps)
	if err != nil {
		return err
	}
	progressCtx, stopProgress := context.WithCancel(context.WithoutCancel(ctx))
	printed := make(chan struct{})
	go func() {
		defer close(printed)
		replay.ProgressPrinter{W: stderr, TTY: replay.IsTerminal(stderr), Interval: *progress}.Run(progressCtx, r.Progress)
	}()
	sum, runErr := r.Run(ctx)
	stopProgress()
	<-printed

	printSummary(stdout, cfg, sum)
	return runErr
}

func printSummary(w io.Writer, cfg replay.Config, sum replay.Summary) {
	switch {
	case cfg.DryRun:
		fmt.Fprintf(w, "Dry run of %s with policy %s (nothing written):\n", cfg.Topic, cfg.PolicyID)
	case sum.Complete:
		fmt.Fprintf(w, "Replay of %s with policy %s complete:\n", cfg.Topic, cfg.PolicyID)
	default:
		fmt.Fprintf(w, "Replay of %s with policy %s stopped before the end; run the same command again to resume from %s:\n", cfg.Topic, cfg.PolicyID, cfg.Checkpoint)
	}
	var parts []string
	for _, p := range slices.Sorted(maps.Keys(sum.Ranges)) {
		rg := sum.Ranges[p]
		parts = append(parts, fmt.Sprintf("%d:%d-%d", p, rg.Start, rg.End))
	}
	fmt.Fprintf(w, "offsets %s (this run %s)\n", strings.Join(parts, ","), sum.Duration.Round(time.Millisecond))
	_ = sum.WriteTable(w)
}

// StoreTarget writes replayed events to the local store. The store is
// idempotent on (cluster, auditID, stage, content hash) and a Write is
// durable when it returns (SQLite's always; vlogs' because openStore opens
// it without DeferSync, so no Sync is needed), so a repeated batch changes
// nothing. The hash is of the raw event, so replaying history through
// another policy into a store that holds it adds nothing (and marks
// nothing as a reused auditID); decision 0012.
type StoreTarget struct{ Store eventstore.Writer }

// Write stores the records' values.
func (t StoreTarget) Write(ctx context.Context, records []kafka.Record) error {
	values := make([][]byte, len(records))
	for i, r := range records {
		values[i] = r.Value
	}
	res, err := t.Store.Write(ctx, values)
	if err != nil {
		return err
	}
	if res.Invalid > 0 {
		// The pipeline only writes valid processed events; an invalid one
		// is a bug to surface, not to skip silently.
		return fmt.Errorf("local store refused %d of %d replayed events as invalid", res.Invalid, len(values))
	}
	return nil
}

// validateStoreEngine checks --store-engine, whatever the target: a
// mistyped engine is refused before anything connects.
func validateStoreEngine(engine string) error {
	switch engine {
	case eventstore.EngineVictoriaLogs, eventstore.EngineSQLite:
		return nil
	}
	return fmt.Errorf("--store-engine %q: want %s or %s", engine, eventstore.EngineVictoriaLogs, eventstore.EngineSQLite)
}

// openStore opens the --target local store at path with engine, durable
// on each Write's return. Not consumer/app.OpenStore: that opens vlogs
// with DeferSync for the consumer, whose local sink syncs before each
// offset commit; the replay's checkpoint file moves after each Write, so
// the Write itself must be durable (one VictoriaLogs checkpoint per
// batch, the zero vlstore.Config).
func openStore(engine, path string, logger *slog.Logger) (eventstore.Store, error) {
	if engine == eventstore.EngineSQLite {
		s, err := local.Open(path, local.Options{Logger: logger})
		if err != nil {
			return nil, err // not s: a nil *local.Store in the interface is not nil
		}
		return s, nil
	}
	// vlogs keeps a directory. A file at path is most likely a SQLite
	// store (the default engine before vlogs); refuse it rather than let
	// the storage fail on it.
	if st, err := os.Stat(path); err == nil && st.Mode().IsRegular() {
		return nil, fmt.Errorf("--store %s is a file, probably a SQLite store, but the vlogs engine keeps its store in a directory: "+
			"give --store-engine %s to replay into it, or a directory as --store", path, eventstore.EngineSQLite)
	}
	s, err := vlstore.Open(path, eventstore.Options{Logger: logger}, vlstore.Config{})
	if err != nil {
		return nil, err // not s: a nil *vlstore.Store in the interface is not nil
	}
	return s, nil
}

// loadPolicy loads the policy and names it by file and content, so
// that a checkpoint is resumed only with the same policy.
func loadPolicy(path string) (*policy.Policy, string, error) {
	name, data := policies.TKEDefaultName, policies.TKEDefault
	if path != "" {
		var err error
		if data, err = os.ReadFile(path); err != nil {
			return nil, "", fmt.Errorf("load policy: %w", err)
		}
		name = filepath.Base(path)
	}
	pol, err := policy.Load(name, data)
	if err != nil {
		return nil, "", err
	}
	sum := sha256.Sum256(data)
	return pol, name + "@sha256:" + hex.EncodeToString(sum[:6]), nil
}

// loadRules loads the shipped detection rules and the user's file
// (the processor's set, without per-cluster overrides) and names them by
// content, so that a checkpoint is resumed only with the same rules.
func loadRules(path string) (*detect.Set, string, error) {
	set, err := detect.LoadDefault(path)
	if err != nil {
		return nil, "", fmt.Errorf("load detection rules: %w", err)
	}
	h := sha256.New()
	h.Write(detect.DefaultRules())
	name := "default"
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, "", fmt.Errorf("load detection rules: %w", err)
		}
		h.Write(data)
		name += "+" + filepath.Base(path)
	}
	return set, name + "@sha256:" + hex.EncodeToString(h.Sum(nil)[:6]), nil
}

// parseOffsets reads PARTITION:START-END[,...].
func parseOffsets(s string) (map[int32]kafka.OffsetRange, error) {
	if s == "" {
		return nil, nil
	}
	out := map[int32]kafka.OffsetRange{}
	for _, item := range cli.SplitList(s) {
		ps, rs, ok1 := strings.Cut(item, ":")
		ss, es, ok2 := strings.Cut(rs, "-")
		p, err1 := strconv.ParseInt(ps, 10, 32)
		start, err2 := strconv.ParseInt(ss, 10, 64)
		end, err3 := strconv.ParseInt(es, 10, 64)
		if !ok1 || !ok2 || err1 != nil || err2 != nil || err3 != nil || p < 0 {
			return nil, fmt.Errorf("%q: want PARTITION:START-END, e.g. 0:100-200", item)
		}
		if _, dup := out[int32(p)]; dup {
			return nil, fmt.Errorf("partition %d given twice", p)
		}
		out[int32(p)] = kafka.OffsetRange{Start: start, End: end}
	}
	return out, nil
}

// producerConfig connects the replay's producer the way its reader
// connects (every security setting of the reader's config).
func producerConfig(rc kafka.ReaderConfig) kafka.ProducerConfig {
	return kafka.Connection{Brokers: rc.Brokers, ClientID: rc.ClientID, TLS: rc.TLS, SASL: rc.SASL}.ProducerConfig()
}

// clsFlags are the --target cls settings.
type clsFlags struct {
	endpoint, idFile, keyFile, fleet, defaultTopic string
}

// CLSTarget sends replayed events through the CLS sink of the consumer
// (the real CLS SDK), to the topic the live sink would use for the event's
// cluster. The sink's Write returns only once CLS acknowledged every
// record, so the checkpoint never moves past an event CLS does not have.
type CLSTarget struct {
	Sink *cls.Sink
	// Topics and DefaultTopicID are the sink's routing, checked before a
	// batch is sent: the live sink skips (and counts) an event it cannot
	// route, which for a replay would be a silent loss.
	Topics         cls.Topics
	DefaultTopicID string
}

// Write sends records to CLS, or refuses the batch when one of its
// clusters has no topic.
func (t CLSTarget) Write(ctx context.Context, records []kafka.Record) error {
	if t.DefaultTopicID == "" {
		for _, r := range records {
			c := string(r.HeaderValue(schemas.HeaderCluster))
			if _, ok := t.Topics(c); !ok {
				return fmt.Errorf("cluster %q has no CLS topic: give it clusters.%s.cls.topicID in the fleet registry (--fleet), or give --cls-default-topic-id", c, c)
			}
		}
	}
	return t.Sink.Write(ctx, records)
}

func newCLSTarget(f clsFlags, logger *slog.Logger) (CLSTarget, error) {
	if f.endpoint == "" {
		return CLSTarget{}, errors.New("--target cls needs --cls-endpoint")
	}
	if f.fleet == "" && f.defaultTopic == "" {
		return CLSTarget{}, errors.New("--target cls needs --fleet (each cluster's topic) or --cls-default-topic-id")
	}
	id, err := secret(f.idFile, "--cls-secret-id-file", "AUDITPIPE_CLS_SECRET_ID")
	if err != nil {
		return CLSTarget{}, err
	}
	key, err := secret(f.keyFile, "--cls-secret-key-file", "AUDITPIPE_CLS_SECRET_KEY")
	if err != nil {
		return CLSTarget{}, err
	}
	topics := cls.Topics(func(string) (string, bool) { return "", false })
	if f.fleet != "" {
		reg, err := fleet.LoadFile(f.fleet)
		if err != nil {
			return CLSTarget{}, err
		}
		topics = cls.FleetTopics(reg)
	}
	// A private registry: the replay serves no metrics.
	s, err := cls.New(cls.Config{Endpoint: f.endpoint, SecretID: id, SecretKey: key, DefaultTopicID: f.defaultTopic},
		topics, prometheus.NewRegistry(), logger)
	if err != nil {
		return CLSTarget{}, err
	}
	return CLSTarget{Sink: s, Topics: topics, DefaultTopicID: f.defaultTopic}, nil
}

// secret reads a credential from file, else from the environment.
func secret(file, flagName, env string) (string, error) {
	if file == "" {
		if v := os.Getenv(env); v != "" {
			return v, nil
		}
		return "", fmt.Errorf("--target cls needs %s or $%s", flagName, env)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("%s: %w", flagName, err)
	}
	v := strings.TrimSpace(string(data))
	if v == "" {
		return "", fmt.Errorf("%s: %s is empty", flagName, file)
	}
	return v, nil
}
