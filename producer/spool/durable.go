package spool

import (
	"context"
	"errors"
	"fmt"
	"github.com/auditpipe/auditpipe/internal/telemetry"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/auditpipe/auditpipe/internal/kafka"
)

// DurableConfig configures a Durable producer.
type DurableConfig struct {
	// KafkaTimeout bounds one attempt to have Kafka acknowledge a batch
	// before the batch is spooled instead. It must stay well under the
	// apiserver's request timeout (30s), since the spool write follows.
	KafkaTimeout time.Duration `json:"kafkaTimeout"`
	// DrainBatches caps the spooled batches sent to Kafka in one call.
	DrainBatches int `json:"drainBatches"`
	// DrainBytes caps the spooled bytes sent to Kafka in one call.
	DrainBytes int64 `json:"drainBytes"`
	// MaxBackoff caps the wait between failed drain attempts.
	MaxBackoff time.Duration `json:"maxBackoff"`
}

// DefaultDurableConfig returns a 5s Kafka timeout, drains of up to 64
// batches or 16 MiB, and backoff up to 5s.
func DefaultDurableConfig() DurableConfig {
	return DurableConfig{KafkaTimeout: 5 * time.Second, DrainBatches: 64, DrainBytes: 16 << 20, MaxBackoff: 5 * time.Second}
}

// Validate checks the configuration.
func (c DurableConfig) Validate() error {
	switch {
	case c.KafkaTimeout <= 0:
		return errors.New("spool: kafkaTimeout must be positive")
	case c.DrainBatches <= 0:
		return errors.New("spool: drainBatches must be positive")
	case c.DrainBytes <= 0:
		return errors.New("spool: drainBytes must be positive")
	case c.MaxBackoff <= 0:
		return errors.New("spool: maxBackoff must be positive")
	}
	return nil
}

// Durable is a kafka.Producer whose Produce returns nil once the records
// are durable: acknowledged by Kafka, or fsynced into the spool. It tries
// Kafka first (bounded by KafkaTimeout) and spools on failure; while the
// spool holds anything, new batches go behind it so the order in which
// batches were acknowledged is the order they reach Kafka. A drainer
// sends spooled batches in order and removes them only after Kafka
// acknowledged them.
type Durable struct {
	cfg     DurableConfig
	kafka   kafka.Producer
	spool   *Spool
	logger  *slog.Logger
	metrics *durableMetrics

	wake   chan struct{}
	cancel context.CancelFunc
	done   chan struct{}
	start  sync.Once
	stop   sync.Once

	mu        sync.Mutex
	kafkaErr  error // last Kafka failure, nil after a success
	kafkaDown time.Time
}

var _ kafka.Producer = (*Durable)(nil)

type durableMetrics struct {
	produceErrors prometheus.Counter
	spooled       prometheus.Counter
	drained       prometheus.Counter
	full          prometheus.Counter
}

// NewDurable returns a Durable writing to k and sp. reg gets the spool
// metrics: auditpipe_producer_spool_bytes, _spool_max_bytes,
// _spool_batches, _spool_oldest_age_seconds, _spool_torn_tails_total,
// _spool_written_batches_total, _spool_drained_batches_total,
// _spool_full_rejections_total and auditpipe_producer_kafka_produce_errors_total.
func NewDurable(cfg DurableConfig, k kafka.Producer, sp *Spool, reg prometheus.Registerer, logger *slog.Logger) (*Durable, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	d := &Durable{cfg: cfg, kafka: k, spool: sp, logger: logger, wake: make(chan struct{}, 1), done: make(chan struct{})}
	d.metrics = &durableMetrics{
		produceErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "auditpipe_producer_kafka_produce_errors_total", Help: "Kafka produce calls that failed (the batch was spooled or retried)."}),
		spooled:       prometheus.NewCounter(prometheus.CounterOpts{Name: "auditpipe_producer_spool_written_batches_total", Help: "Batches written to the spool instead of straight to Kafka."}),
		drained:       prometheus.NewCounter(prometheus.CounterOpts{Name: "auditpipe_producer_spool_drained_batches_total", Help: "Spooled batches Kafka acknowledged."}),
		full:          prometheus.NewCounter(prometheus.CounterOpts{Name: "auditpipe_producer_spool_full_rejections_total", Help: "Batches refused because the spool was full (the sender was told to retry)."}),
	}
	stat := func(f func(Stats) float64) func() float64 { return func() float64 { return f(sp.Stats()) } }
	collectors := []prometheus.Collector{
		d.metrics.produceErrors, d.metrics.spooled, d.metrics.drained, d.metrics.full,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "auditpipe_producer_spool_bytes", Help: "Bytes in the spool not yet acknowledged by Kafka."}, stat(func(s Stats) float64 { return float64(s.Bytes) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "auditpipe_producer_spool_max_bytes", Help: "Configured spool capacity."}, stat(func(s Stats) float64 { return float64(s.MaxBytes) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "auditpipe_producer_spool_batches", Help: "Batches in the spool not yet acknowledged by Kafka."}, stat(func(s Stats) float64 { return float64(s.Entries) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "auditpipe_producer_spool_oldest_age_seconds", Help: "Age of the oldest spooled batch; 0 when the spool is empty."}, stat(func(s Stats) float64 {
			if s.Oldest.IsZero() {
				return 0
			}
			return time.Since(s.Oldest).Seconds()
		})),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "auditpipe_producer_spool_torn_tails_total", Help: "Torn or corrupt segment tails cut off when the spool was opened."}, stat(func(s Stats) float64 { return float64(s.Truncated) })),
	}
	if reg != nil {
		if err := telemetry.RegisterAll(reg, collectors...); err != nil {
			return nil, fmt.Errorf("spool: %w", err)
		}
	}
	return d, nil
}

// Start starts the drainer. It returns at once.
func (d *Durable) Start() {
	d.start.Do(func() {
		ctx, cancel := context.WithCancel(context.Background())
		d.cancel = cancel
		go d.drain(ctx)
		d.kick()
	})
}

// Produce makes records durable; see Durable. An error means nothing may
// be assumed stored: spool.ErrFull when the spool has no room.
func (d *Durable) Produce(ctx context.Context, records ...kafka.Record) error {
	if len(records) == 0 {
		return nil
	}
	if d.spool.Len() == 0 {
		kctx, cancel := context.WithTimeout(ctx, d.cfg.KafkaTimeout)
		err := d.kafka.Produce(kctx, records...)
		cancel()
		if err == nil {
			d.setKafka(nil)
			return nil
		}
		d.metrics.produceErrors.Inc()
		d.setKafka(err)
		if ctx.Err() != nil {
			// The caller gave up (the apiserver closed the request): it
			// will not see a 2xx and will retry, so spooling would only
			// add a duplicate.
			return fmt.Errorf("produce: %w", err)
		}
		d.logger.Warn("kafka did not acknowledge a batch; spooling it", "records", len(records), "err", err)
	}
	if err := d.spool.Append(records); err != nil {
		if errors.Is(err, ErrFull) {
			d.metrics.full.Inc()
		}
		return err
	}
	d.metrics.spooled.Inc()
	d.kick()
	return nil
}

func (d *Durable) kick() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

func (d *Durable) setKafka(err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err != nil && d.kafkaErr == nil {
		d.kafkaDown = time.Now()
	}
	d.kafkaErr = err
}

// drain sends spooled batches to Kafka in order until ctx is done.
func (d *Durable) drain(ctx context.Context) {
	defer close(d.done)
	backoff := 100 * time.Millisecond
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		if d.spool.Len() == 0 {
			select {
			case <-ctx.Done():
				return
			case <-d.wake:
			case <-tick.C:
			}
			continue
		}
		err := d.drainOnce(ctx)
		if err == nil {
			backoff = 100 * time.Millisecond
			continue
		}
		if ctx.Err() != nil {
			return
		}
		d.metrics.produceErrors.Inc()
		d.setKafka(err)
		st := d.spool.Stats()
		d.logger.Warn("draining the spool to kafka failed; retrying", "err", err, "retry_in", backoff, "spool_bytes", st.Bytes, "spool_batches", st.Entries)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, d.cfg.MaxBackoff)
	}
}

func (d *Durable) drainOnce(ctx context.Context) error {
	batches, err := d.spool.Peek(d.cfg.DrainBatches, d.cfg.DrainBytes)
	if err != nil {
		return err
	}
	var records []kafka.Record
	for _, b := range batches {
		records = append(records, b.Records...)
	}
	kctx, cancel := context.WithTimeout(ctx, d.cfg.KafkaTimeout)
	defer cancel()
	if err := d.kafka.Produce(kctx, records...); err != nil {
		return fmt.Errorf("drain %d spooled batches: %w", len(batches), err)
	}
	d.setKafka(nil)
	if err := d.spool.Ack(len(batches)); err != nil {
		return err
	}
	d.metrics.drained.Add(float64(len(batches)))
	if d.spool.Len() == 0 {
		d.logger.Info("spool drained; batches go straight to kafka again")
	}
	return nil
}

// Ready reports whether batches can be made durable: an error when Kafka
// is failing and the spool is (nearly) full. Kafka failing with room in
// the spool is not an error — the producer still acknowledges safely —
// but the error of a full spool names the Kafka failure behind it.
func (d *Durable) Ready(context.Context) error {
	st := d.spool.Stats()
	d.mu.Lock()
	kerr, since := d.kafkaErr, d.kafkaDown
	d.mu.Unlock()
	if st.Bytes >= st.MaxBytes*9/10 {
		msg := fmt.Sprintf("spool is %d%% full (%d of %d bytes, oldest batch %s old)", st.Bytes*100/st.MaxBytes, st.Bytes, st.MaxBytes, time.Since(st.Oldest).Round(time.Second))
		if kerr != nil {
			msg += fmt.Sprintf("; kafka failing since %s: %v", since.Format(time.RFC3339), kerr)
		}
		return errors.New(msg)
	}
	return nil
}

// Close stops the drainer (spooled batches stay for the next start) and
// closes the spool. It does not close the Kafka producer, which the
// caller owns. Safe to call twice and without Start.
func (d *Durable) Close() error {
	var err error
	d.stop.Do(func() {
		if d.cancel != nil {
			d.cancel()
			<-d.done
		}
		err = d.spool.Close()
	})
	return err
}
