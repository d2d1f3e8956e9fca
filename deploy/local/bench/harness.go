package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime/metrics"
	"runtime/pprof"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/auditpipe/auditpipe/consumer/sink/eventstore"
)

// Stages and variants.
const (
	StageProducer  = "producer"
	StageProcessor = "processor"
	StageConsumer  = "consumer"
	// StageCLS is the consumer with the CLS sink, sending to the local
	// CLS server.
	StageCLS = "consumer-cls"
	StageE2E = "e2e"
	// StageFranz is no stage of ours: a plain franz-go consume → produce
	// pass-through, the fastest client's cost of moving the same records
	// on the same broker. Every other unit is reported against it too.
	StageFranz = "franz"

	// VariantStage runs the real stage.
	VariantStage = "stage"
	// VariantBaseline moves the same records through the same client and
	// broker with no processing.
	VariantBaseline = "baseline"
	// VariantPaced runs the end-to-end pipeline at a fixed offered rate,
	// below saturation, for latency.
	VariantPaced = "paced"

	// BrokerEmbedded is the in-process kfake broker; BrokerKafka an
	// external cluster (Apache Kafka).
	BrokerEmbedded = "embedded"
	BrokerKafka    = "kafka"
)

// AllStages lists the stages in report order.
var AllStages = []string{StageFranz, StageProducer, StageProcessor, StageConsumer, StageCLS, StageE2E}

// Options configure a benchmark run.
type Options struct {
	// Events per round and unit.
	Events int `json:"events"`
	// Warmup rounds run first and are not reported.
	Warmup int `json:"warmup"`
	// Rounds are measured.
	Rounds int `json:"rounds"`
	// BatchSize is the events of one webhook POST (the apiserver's
	// --audit-webhook-batch-max-size default is 400) and of one baseline
	// Produce call.
	BatchSize int `json:"batchSize"`
	// Concurrency is the number of concurrent webhook clients.
	Concurrency int `json:"concurrency"`
	// GroupBatch is the consumer groups' MaxBatch (records per Handle).
	GroupBatch int `json:"groupBatch"`
	// Partitions of every topic the harness creates.
	Partitions int32 `json:"partitions"`
	// PacedRate is the offered rate (events/s) of the paced end-to-end
	// variant; 0 skips it.
	PacedRate int `json:"pacedRate"`
	Mix       Mix `json:"mix"`
	// Fixtures is testdata/public-audit.
	Fixtures string `json:"fixtures"`
	// Stages to run, in AllStages order.
	Stages []string `json:"stages"`
	// KafkaBrokers, when set, adds an external cluster next to the
	// embedded broker.
	KafkaBrokers []string `json:"kafkaBrokers,omitempty"`
	// StoreEngine is the local store's engine in the consumer and e2e
	// stages: vlogs (the default, as make run's) or sqlite (consumer
	// local.engine, decision 0026).
	StoreEngine string `json:"storeEngine"`
	// SyncWrites makes the embedded broker fsync before acknowledging, as
	// `make run` does.
	SyncWrites bool `json:"syncWrites"`
	// RoundTimeout bounds one round.
	RoundTimeout time.Duration `json:"roundTimeout"`
	// TempDir holds broker logs and stores; empty means the system's.
	TempDir string `json:"-"`
	// CPUProfileDir, when set, receives a CPU profile of each unit's
	// measured rounds (<broker>-<stage>-<variant>.prof): where a stage's
	// own work goes is the question every figure here raises next.
	CPUProfileDir string `json:"-"`
	// MemProfileDir, when set, receives a heap profile of each unit
	// (<broker>-<stage>-<variant>.heap.prof) taken when the live heap
	// was largest during the measured rounds: what holds the memory
	// behind the peak RSS.
	MemProfileDir string `json:"-"`
}

// DefaultOptions are sized so that `make bench` on the embedded broker
// finishes in a few minutes on a 2-core machine.
func DefaultOptions() Options {
	return Options{
		Events:       4000,
		Warmup:       1,
		Rounds:       3,
		BatchSize:    100,
		Concurrency:  4,
		GroupBatch:   500,
		Partitions:   4,
		PacedRate:    500,
		Mix:          DefaultMix(),
		Stages:       slices.Clone(AllStages),
		SyncWrites:   true,
		StoreEngine:  eventstore.EngineVictoriaLogs,
		RoundTimeout: 2 * time.Minute,
	}
}

// Validate names the first unusable setting.
func (o Options) Validate() error {
	switch {
	case o.Events < 1:
		return errors.New("events: must be at least 1")
	case o.Warmup < 0:
		return errors.New("warmup: must not be negative")
	case o.Rounds < 1:
		return errors.New("rounds: must be at least 1")
	case o.BatchSize < 1:
		return errors.New("batch: must be at least 1")
	case o.Concurrency < 1:
		return errors.New("concurrency: must be at least 1")
	case o.GroupBatch < 1:
		return errors.New("group-batch: must be at least 1")
	case o.StoreEngine != eventstore.EngineSQLite && o.StoreEngine != eventstore.EngineVictoriaLogs:
		return fmt.Errorf("store-engine: %q, want %s or %s", o.StoreEngine, eventstore.EngineSQLite, eventstore.EngineVictoriaLogs)
	case o.Partitions < 1:
		return errors.New("partitions: must be at least 1")
	case o.PacedRate < 0:
		return errors.New("paced-rate: must not be negative")
	case o.RoundTimeout <= 0:
		return errors.New("round-timeout: must be positive")
	case len(o.Stages) == 0:
		return errors.New("stages: none selected")
	}
	for _, s := range o.Stages {
		if !slices.Contains(AllStages, s) {
			return fmt.Errorf("stages: unknown stage %q (want %v)", s, AllStages)
		}
	}
	return o.Mix.Validate()
}

// Unit is one measured configuration.
type Unit struct {
	Broker  string   `json:"broker"`
	Brokers []string `json:"brokers,omitempty"`
	Stage   string   `json:"stage"`
	Variant string   `json:"variant"`
}

func (u Unit) String() string { return u.Broker + "/" + u.Stage + "/" + u.Variant }

// Units lists the units of a run in report order: per broker, per stage,
// the baseline first.
func Units(o Options) []Unit {
	brokers := []Unit{{Broker: BrokerEmbedded}}
	if len(o.KafkaBrokers) > 0 {
		brokers = append(brokers, Unit{Broker: BrokerKafka, Brokers: o.KafkaBrokers})
	}
	var out []Unit
	for _, b := range brokers {
		for _, s := range AllStages {
			if !slices.Contains(o.Stages, s) {
				continue
			}
			variants := []string{VariantBaseline, VariantStage}
			if s == StageFranz {
				variants = []string{VariantBaseline}
			}
			if s == StageE2E && o.PacedRate > 0 {
				variants = append(variants, VariantPaced)
			}
			for _, v := range variants {
				out = append(out, Unit{Broker: b.Broker, Brokers: b.Brokers, Stage: s, Variant: v})
			}
		}
	}
	return out
}

// Round is the measurement of one round.
type Round struct {
	Events     int     `json:"events"`
	Bytes      int64   `json:"bytes"`
	Seconds    float64 `json:"seconds"`
	CPUSeconds float64 `json:"cpuSeconds"`
	P50Ms      float64 `json:"p50Ms"`
	P99Ms      float64 `json:"p99Ms"`
}

// leg runs the rounds of one unit. Each round uses fresh topics and groups.
type leg interface {
	round(ctx context.Context, r int) (Round, error)
	close() error
}

// env is what a leg gets: the broker, the event generator, a directory.
type env struct {
	opts    Options
	unit    Unit
	brokers []string
	nonce   string
	gen     *Generator
	dir     string
	logger  *slog.Logger
}

// RunUnit runs one unit in this process: warm-up rounds, then measured
// rounds. PeakRSSBytes is left to the caller, who knows the scope.
func RunUnit(ctx context.Context, o Options, u Unit, logger *slog.Logger) (Result, error) {
	return runUnit(ctx, o, u, nil, logger)
}

// runUnit is RunUnit with templates already loaded (nil loads them).
func runUnit(ctx context.Context, o Options, u Unit, tpl *Templates, logger *slog.Logger) (Result, error) {
	res := Result{Unit: u, LatencyOf: latencyOf(u)}
	if err := o.Validate(); err != nil {
		return res, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	setupStart := time.Now()
	if tpl == nil {
		var err error
		if tpl, err = LoadTemplates(o.Fixtures); err != nil {
			return res, err
		}
	}
	nonce := newNonce()
	gen, err := tpl.Generator(o.Mix, nonce)
	if err != nil {
		return res, err
	}
	dir, err := os.MkdirTemp(o.TempDir, "auditbench-")
	if err != nil {
		return res, fmt.Errorf("temp dir: %w", err)
	}
	defer os.RemoveAll(dir)
	e := &env{opts: o, unit: u, brokers: u.Brokers, nonce: nonce, gen: gen, dir: dir, logger: logger.With("unit", u.String())}

	var l leg
	switch u.Stage {
	case StageProducer:
		l, err = newProducerLeg(ctx, e)
	case StageProcessor:
		l, err = newProcessorLeg(ctx, e)
	case StageConsumer:
		l, err = newConsumerLeg(ctx, e)
	case StageCLS:
		l, err = newCLSLeg(ctx, e)
	case StageE2E:
		l, err = newE2ELeg(ctx, e)
	case StageFranz:
		l, err = newFranzLeg(ctx, e)
	default:
		err = fmt.Errorf("unknown stage %q", u.Stage)
	}
	if err != nil {
		return res, fmt.Errorf("%s: set up: %w", u, err)
	}
	e.logger.Info("unit ready", "setup_seconds", time.Since(setupStart).Seconds())
	defer func() {
		if cerr := l.close(); cerr != nil {
			e.logger.Warn("close leg", "err", cerr)
		}
	}()
	stopProfile, stopHeapProfile := func() {}, func() error { return nil }
	defer func() { stopProfile() }()
	defer func() {
		if err := stopHeapProfile(); err != nil {
			e.logger.Warn("heap profile", "err", err)
		}
	}()
	for r := range o.Warmup + o.Rounds {
		if r == o.Warmup && o.CPUProfileDir != "" {
			if stopProfile, err = startCPUProfile(o.CPUProfileDir, u); err != nil {
				return res, err
			}
		}
		if r == o.Warmup && o.MemProfileDir != "" {
			stopHeapProfile = startHeapProfile(o.MemProfileDir, u)
		}
		rctx, cancel := context.WithTimeout(ctx, o.RoundTimeout)
		rd, err := l.round(rctx, r)
		cancel()
		if err != nil {
			return res, fmt.Errorf("%s: round %d: %w", u, r, err)
		}
		e.logger.Info("round done", "round", r, "warmup", r < o.Warmup, "events", rd.Events, "seconds", rd.Seconds)
		if r >= o.Warmup {
			res.Rounds = append(res.Rounds, rd)
		}
	}
	res.Summary = summarize(res.Rounds)
	return res, nil
}

func newNonce() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func latencyOf(u Unit) string {
	switch {
	case u.Stage == StageFranz:
		return "one produce (acks=all) and commit of one fetched batch"
	case u.Stage == StageProducer && u.Variant == VariantStage:
		return "webhook POST of one batch until answered 200 (Kafka acknowledged)"
	case u.Stage == StageProducer:
		return "one Produce call of one batch until acknowledged"
	case u.Stage == StageE2E && u.Variant == VariantBaseline:
		return "per event: produce until consumed after two Kafka hops"
	case u.Stage == StageE2E:
		return "per event: webhook POST until queryable through the API"
	default:
		return "one Handle call of one consumed batch"
	}
}

// meter measures one round: wall time, process CPU time, events, bytes
// and latency samples. It is safe for concurrent use.
type meter struct {
	mu       sync.Mutex
	started  bool
	start    time.Time
	startCPU float64
	end      time.Time
	endCPU   float64
	events   int
	bytes    int64
	lat      []time.Duration
}

// begin starts the clock once; later calls do nothing.
func (m *meter) begin() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.started {
		m.started, m.start, m.startCPU = true, time.Now(), cpuSeconds()
	}
}

func (m *meter) add(events int, bytes int64, lat ...time.Duration) {
	m.mu.Lock()
	m.events += events
	m.bytes += bytes
	m.lat = append(m.lat, lat...)
	m.mu.Unlock()
}

func (m *meter) finish() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.end, m.endCPU = time.Now(), cpuSeconds()
}

func (m *meter) round() Round {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := Round{Events: m.events, Bytes: m.bytes, Seconds: m.end.Sub(m.start).Seconds(), CPUSeconds: m.endCPU - m.startCPU}
	r.P50Ms, r.P99Ms = percentileMs(m.lat, 0.50), percentileMs(m.lat, 0.99)
	return r
}

// percentileMs is the nearest-rank percentile in milliseconds, 0 without
// samples.
func percentileMs(samples []time.Duration, p float64) float64 {
	if len(samples) == 0 {
		return 0
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	i := int(math.Ceil(p*float64(len(s)))) - 1
	i = max(0, min(i, len(s)-1))
	return float64(s[i].Microseconds()) / 1000
}

// cpuSeconds is the process's user plus system CPU time so far.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return tvSeconds(ru.Utime) + tvSeconds(ru.Stime)
}

func tvSeconds(tv syscall.Timeval) float64 {
	return float64(tv.Sec) + float64(tv.Usec)/1e6
}

// SelfMaxRSS is this process's peak resident set size in bytes.
func SelfMaxRSS() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return maxRSSBytes(&ru)
}

// startHeapProfile samples the live heap (as of the last GC) every
// 100ms until the returned stop is called, keeps a heap profile of the
// largest one, and writes it to dir on stop.
func startHeapProfile(dir string, u Unit) (stop func() error) {
	done, finished := make(chan struct{}), make(chan struct{})
	var best bytes.Buffer
	go func() {
		defer close(finished)
		sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
		var peak uint64
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			metrics.Read(sample)
			if live := sample[0].Value.Uint64(); live > peak {
				peak = live
				best.Reset()
				_ = pprof.Lookup("heap").WriteTo(&best, 0)
			}
			select {
			case <-tick.C:
			case <-done:
				return
			}
		}
	}()
	return func() error {
		close(done)
		<-finished
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("heap profile dir: %w", err)
		}
		path := filepath.Join(dir, u.Broker+"-"+u.Stage+"-"+u.Variant+".heap.prof")
		if err := os.WriteFile(path, best.Bytes(), 0o644); err != nil {
			return fmt.Errorf("heap profile: %w", err)
		}
		return nil
	}
}

// startCPUProfile profiles this process until the returned stop is called.
func startCPUProfile(dir string, u Unit) (stop func(), err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("cpu profile dir: %w", err)
	}
	f, err := os.Create(filepath.Join(dir, u.Broker+"-"+u.Stage+"-"+u.Variant+".prof"))
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpu profile %s: %w", f.Name(), err)
	}
	return func() {
		pprof.StopCPUProfile()
		_ = f.Close()
	}, nil
}
