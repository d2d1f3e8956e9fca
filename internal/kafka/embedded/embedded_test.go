package embedded_test

import (
	"context"
	"io/fs"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/kafka/embedded"
	"github.com/auditpipe/auditpipe/internal/kafka/kafkago"
	"github.com/auditpipe/auditpipe/internal/kafka/saramakafka"
)

const topic = "audit.raw"

// readAll reads topic from the start with credentials until it holds want
// records or 20s pass, and returns the values.
func readAll(t *testing.T, brokers []string, sasl kafka.SASL, want int) []string {
	t.Helper()
	r, err := kafkago.NewReader(kafka.ReaderConfig{Brokers: brokers, SASL: sasl})
	require.NoError(t, err)
	defer r.Close()
	var got []string
	deadline := time.Now().Add(20 * time.Second)
	for {
		got = got[:0]
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		bounds, err := r.Bounds(ctx, topic)
		require.NoError(t, err)
		for p, rng := range bounds {
			if rng.End <= rng.Start {
				continue
			}
			require.NoError(t, r.ReadRange(ctx, topic, p, rng, func(_ context.Context, b kafka.Batch) error {
				for _, rec := range b.Records {
					got = append(got, string(rec.Value))
				}
				return nil
			}))
		}
		cancel()
		if len(got) >= want || time.Now().After(deadline) {
			return got
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestSASLRefusesClientsWithoutCredentials starts the broker with a user
// and checks that a client without credentials (franz-go, not one of our
// adapters) can neither write to nor read audit.raw, that wrong
// credentials are refused by both adapters, and that both adapters work
// with the right ones over each mechanism.
func TestSASLRefusesClientsWithoutCredentials(t *testing.T) {
	user := kafka.SASL{Mechanism: kafka.SASLScramSHA256, Username: "auditpipe", Password: "s3cret-0123456789abcdef"}
	b, err := embedded.Start(embedded.Config{Topics: []string{topic}, DefaultPartitions: 2, SASL: user})
	require.NoError(t, err)
	t.Cleanup(b.Close)
	brokers := b.Addrs()

	// Authenticated writes through both adapters.
	kg, err := kafkago.NewProducer(kafka.ProducerConfig{Brokers: brokers, SASL: user})
	require.NoError(t, err)
	defer kg.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	require.NoError(t, kg.Produce(ctx, kafka.Record{Topic: topic, Key: []byte("k"), Value: []byte("by-kafka-go")}))
	sp, err := saramakafka.NewProducer(kafka.ProducerConfig{Brokers: brokers, SASL: user})
	require.NoError(t, err)
	defer sp.Close()
	require.NoError(t, sp.Produce(ctx, kafka.Record{Topic: topic, Key: []byte("k"), Value: []byte("by-sarama")}))

	// An unauthenticated client: its write fails and its read gets
	// nothing.
	anon, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.RequestRetries(1), kgo.ProduceRequestTimeout(2*time.Second))
	require.NoError(t, err)
	defer anon.Close()
	pctx, pcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer pcancel()
	require.Error(t, anon.ProduceSync(pctx, &kgo.Record{Topic: topic, Value: []byte("forged")}).FirstErr(), "an unauthenticated write")
	fctx, fcancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer fcancel()
	fetches := anon.PollFetches(fctx)
	require.Zero(t, fetches.NumRecords(), "an unauthenticated read gets no record")

	// Wrong password: both adapters are refused.
	wrong := user
	wrong.Password = "not-the-password"
	_, err = saramakafka.NewProducer(kafka.ProducerConfig{Brokers: brokers, SASL: wrong})
	require.Error(t, err, "sarama with a wrong password")
	kw, err := kafkago.NewProducer(kafka.ProducerConfig{Brokers: brokers, SASL: wrong})
	require.NoError(t, err) // kafka-go connects lazily
	defer kw.Close()
	wctx, wcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer wcancel()
	require.Error(t, kw.Produce(wctx, kafka.Record{Topic: topic, Value: []byte("wrong-password")}), "kafka-go with a wrong password")

	// What is on the topic, read with the credentials: exactly the two
	// authenticated records.
	require.ElementsMatch(t, []string{"by-kafka-go", "by-sarama"}, readAll(t, brokers, user, 2))

	// A sarama consumer group reads with the credentials too.
	g, err := saramakafka.NewGroup(kafka.GroupConfig{Brokers: brokers, Group: "g", Topics: []string{topic}, SASL: user, SessionTimeout: 2 * time.Second})
	require.NoError(t, err)
	defer g.Close()
	gctx, gcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer gcancel()
	n := 0
	require.NoError(t, g.Run(gctx, kafka.HandlerFunc(func(_ context.Context, b kafka.Batch) error {
		if n += len(b.Records); n >= 2 {
			gcancel()
		}
		return nil
	})))
	require.Equal(t, 2, n)
}

// TestSASLMechanisms checks PLAIN and SCRAM-SHA-512 with both adapters
// (SCRAM-SHA-256 is above).
func TestSASLMechanisms(t *testing.T) {
	for _, mech := range []string{kafka.SASLPlain, kafka.SASLScramSHA512} {
		t.Run(mech, func(t *testing.T) {
			user := kafka.SASL{Mechanism: mech, Username: "u", Password: "p-0123456789"}
			b, err := embedded.Start(embedded.Config{Topics: []string{topic}, DefaultPartitions: 1, SASL: user})
			require.NoError(t, err)
			t.Cleanup(b.Close)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			for name, newProducer := range map[string]func(kafka.ProducerConfig) (kafka.Producer, error){
				"kafkago": func(c kafka.ProducerConfig) (kafka.Producer, error) { return kafkago.NewProducer(c) },
				"sarama":  func(c kafka.ProducerConfig) (kafka.Producer, error) { return saramakafka.NewProducer(c) },
			} {
				p, err := newProducer(kafka.ProducerConfig{Brokers: b.Addrs(), SASL: user})
				require.NoError(t, err, name)
				require.NoError(t, p.Produce(ctx, kafka.Record{Topic: topic, Value: []byte(name)}), name)
				require.NoError(t, p.Close())
			}
			require.ElementsMatch(t, []string{"kafkago", "sarama"}, readAll(t, b.Addrs(), user, 2))
		})
	}
}

// TestSASLSurvivesARestartOnADataDirectory restarts a persisted broker,
// first without SASL and then with it: the configured user is accepted
// (kfake's saved users do not replace it), and the log files are private
// after Close.
func TestSASLSurvivesARestartOnADataDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "kafka")
	b, err := embedded.Start(embedded.Config{DataDir: dir, Topics: []string{topic}, DefaultPartitions: 1})
	require.NoError(t, err)
	p, err := kafkago.NewProducer(kafka.ProducerConfig{Brokers: b.Addrs()})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	require.NoError(t, p.Produce(ctx, kafka.Record{Topic: topic, Value: []byte("before")}))
	require.NoError(t, p.Close())
	b.Close()

	user := kafka.SASL{Mechanism: kafka.SASLScramSHA256, Username: "auditpipe", Password: "pw-0123456789abcdef"}
	for range 2 {
		b, err = embedded.Start(embedded.Config{DataDir: dir, SASL: user})
		require.NoError(t, err)
		require.Equal(t, []string{"before"}, readAll(t, b.Addrs(), user, 1))
		b.Close()
	}

	require.NoError(t, filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		require.NoError(t, err)
		info, err := d.Info()
		require.NoError(t, err)
		if d.IsDir() {
			require.Equal(t, fs.FileMode(0o700), info.Mode().Perm(), path)
		} else {
			require.Equal(t, fs.FileMode(0o600), info.Mode().Perm(), path)
		}
		return nil
	}))
}
