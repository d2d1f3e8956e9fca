package saramakafka

import (
	"context"
	"maps"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/kafka/kafkatest"
)

func txnEnv(t *testing.T) (brokers []string, in, out, group string, admin *Admin) {
	t.Helper()
	brokers = kafkatest.Brokers(t)
	suffix := strconv.FormatInt(time.Now().UnixNano(), 36)
	in, out, group = "txn-in-"+suffix, "txn-out-"+suffix, "txn-group-"+suffix
	admin, err := NewAdmin(brokers, "txn-admin")
	require.NoError(t, err)
	t.Cleanup(func() { _ = admin.Close() })
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	require.NoError(t, admin.EnsureTopics(ctx, kafka.TopicSpec{Name: in, Partitions: 2, ReplicationFactor: 1},
		kafka.TopicSpec{Name: out, Partitions: 2, ReplicationFactor: 1}))
	return brokers, in, out, group, admin
}

// readCommitted reads topic with a fresh group (sarama's group reads
// committed data only) until want records arrived, then waits a little
// for more that must not be there.
func readCommitted(t *testing.T, brokers []string, topic string, want int) []kafka.Record {
	t.Helper()
	g, err := NewGroup(kafka.GroupConfig{Brokers: brokers, Group: "reader-" + topic + strconv.FormatInt(time.Now().UnixNano(), 36),
		Topics: []string{topic}, MaxWait: 10 * time.Millisecond}.WithDefaults())
	require.NoError(t, err)
	defer g.Close()
	var mu sync.Mutex
	var got []kafka.Record
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- g.Run(ctx, kafka.HandlerFunc(func(_ context.Context, b kafka.Batch) error {
			mu.Lock()
			defer mu.Unlock()
			got = append(got, b.Records...)
			return nil
		}))
	}()
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(got) >= want }, 30*time.Second, 10*time.Millisecond)
	time.Sleep(200 * time.Millisecond) // anything beyond want would be a duplicate or an aborted record
	cancel()
	require.NoError(t, <-done)
	mu.Lock()
	defer mu.Unlock()
	return got
}

func TestTransactorCommitsRecordsAndOffsetsTogether(t *testing.T) {
	brokers, in, out, group, admin := txnEnv(t)
	tx, err := NewTransactor(kafka.TransactorConfig{ProducerConfig: kafka.ProducerConfig{Brokers: brokers}, Group: group, TransactionalID: "test-" + group})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, tx.Close()) })

	ctx := t.Context()
	require.NoError(t, tx.Commit(ctx, kafka.InputOffset{Topic: in, Partition: 1, Next: 42},
		kafka.Record{Topic: out, Key: []byte("a"), Value: []byte("v1")}, kafka.Record{Topic: out, Key: []byte("b"), Value: []byte("v2")}))
	// A transaction with no output still moves the offset.
	require.NoError(t, tx.Commit(ctx, kafka.InputOffset{Topic: in, Partition: 0, Next: 7}))

	// Apache Kafka materialises transactional offset commits after
	// EndTxn returns (kfake at once), so wait for them.
	waitOffsets(t, admin, group, in, map[int32]int64{0: 7, 1: 42})
	got := readCommitted(t, brokers, out, 2)
	require.Len(t, got, 2)
}

// TestTransactorFencesPreviousOwner: a second transactor with the same
// transactional id (a restarted or new owner of the partition) fences the
// first; the first's open transaction is aborted and invisible.
func TestTransactorFencesPreviousOwner(t *testing.T) {
	brokers, in, out, group, admin := txnEnv(t)
	cfg := kafka.TransactorConfig{ProducerConfig: kafka.ProducerConfig{Brokers: brokers}, Group: group, TransactionalID: "fence-" + group}
	old, err := NewTransactor(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = old.Close() })
	ctx := t.Context()
	require.NoError(t, old.Commit(ctx, kafka.InputOffset{Topic: in, Partition: 0, Next: 1}, kafka.Record{Topic: out, Value: []byte("first")}))

	// The old owner starts a transaction and writes, but does not commit
	// before the new owner appears (as if it hung or was killed).
	p, err := old.partition(in, 0)
	require.NoError(t, err)
	require.NoError(t, p.sp.BeginTxn())
	_, _, err = p.sp.SendMessage(toMessage(kafka.Record{Topic: out, Value: []byte("zombie")}))
	require.NoError(t, err)

	next, err := NewTransactor(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, next.Close()) })
	require.NoError(t, next.Commit(ctx, kafka.InputOffset{Topic: in, Partition: 0, Next: 2}, kafka.Record{Topic: out, Value: []byte("second")}))

	require.Error(t, p.sp.CommitTxn(), "the fenced producer cannot commit")
	waitOffsets(t, admin, group, in, map[int32]int64{0: 2})
	var values []string
	for _, r := range readCommitted(t, brokers, out, 2) {
		values = append(values, string(r.Value))
	}
	require.ElementsMatch(t, []string{"first", "second"}, values)
}

// waitOffsets waits until the group's committed offsets on topic equal want.
func waitOffsets(t *testing.T, admin kafka.Admin, group, topic string, want map[int32]int64) {
	t.Helper()
	var got map[int32]int64
	require.Eventually(t, func() bool {
		offs, err := admin.CommittedOffsets(t.Context(), group, topic)
		if err != nil {
			return false
		}
		got = offs
		return maps.Equal(offs, want)
	}, 30*time.Second, 50*time.Millisecond, "committed offsets: want %v", want)
	require.Equal(t, want, got)
}

// TestGroupFencesOpenTransactionOnAssignment: a processor killed between
// TxnOffsetCommit and EndTxn leaves its group an open transactional offset
// commit. A read-committed member does not read that partition's offset
// until the transaction ends (KIP-447), so the member that takes the
// partition over must fence the dead producer on assignment, before the
// offset read, and not wait for the transaction timeout (a minute here).
func TestGroupFencesOpenTransactionOnAssignment(t *testing.T) {
	brokers, in, out, group, admin := txnEnv(t)
	prefix := "takeover-" + group
	const n = 20
	prod, err := NewProducer(kafka.ProducerConfig{Brokers: brokers})
	require.NoError(t, err)
	defer prod.Close()
	var recs []kafka.Record
	for i := range n {
		recs = append(recs, kafka.Record{Topic: in, Key: []byte("k" + strconv.Itoa(i)), Value: []byte("v" + strconv.Itoa(i))})
	}
	require.NoError(t, prod.Produce(t.Context(), recs...))
	end := endOffsets(t, brokers, in)
	require.Len(t, end, 2)
	require.Positive(t, end[0], "the test needs records in partition 0")

	// The dead owner of partition 0 had committed offset 1 in a
	// transaction it never ended.
	openTxnOffsetCommit(t, brokers, prefix+"-"+in+"-0", group, in, 0, 1)

	tx, err := NewTransactor(kafka.TransactorConfig{ProducerConfig: kafka.ProducerConfig{Brokers: brokers}, Group: group, TransactionalID: prefix})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, tx.Close()) })
	g, err := NewGroup(kafka.GroupConfig{Brokers: brokers, Group: group, Topics: []string{in}, MaxWait: 10 * time.Millisecond})
	require.NoError(t, err)
	defer g.Close()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	started := time.Now()
	go func() { done <- g.Run(ctx, &txnStage{tx: tx, out: out}) }()
	defer func() { cancel(); require.NoError(t, <-done) }()

	// Everything is processed from the last stable offset (none: the
	// beginning), long before the open transaction would time out:
	// waitOffsets gives up after 30 s, half the transaction's timeout.
	waitOffsets(t, admin, group, in, end)
	t.Logf("took over from the open transaction in %.1f s", time.Since(started).Seconds())
	got := readCommitted(t, brokers, out, n)
	require.Len(t, got, n, "every input once: the dead owner's offset commit was aborted")
}

// txnStage is a consume → transact stage like the processor's: each batch
// is copied to out in a transaction that commits its input offset, and
// new partitions are fenced when assigned.
type txnStage struct {
	tx  *Transactor
	out string
}

func (s *txnStage) PrepareAssigned(ctx context.Context, topic string, partitions []int32) error {
	return s.tx.Fence(ctx, topic, partitions...)
}

func (s *txnStage) Handle(ctx context.Context, b kafka.Batch) error {
	recs := make([]kafka.Record, len(b.Records))
	for i, r := range b.Records {
		recs[i] = kafka.Record{Topic: s.out, Key: r.Key, Value: r.Value}
	}
	return s.tx.Commit(ctx, kafka.InputOffset{Topic: b.Topic, Partition: b.Partition, Next: b.Records[len(b.Records)-1].Offset + 1}, recs...)
}

// openTxnOffsetCommit leaves a transaction open, with raw requests, that
// commits group's offset of topic/partition: what a transactional
// producer killed between TxnOffsetCommit and EndTxn leaves behind.
func openTxnOffsetCommit(t *testing.T, brokers []string, txnID, group, topic string, partition int32, offset int64) {
	t.Helper()
	sc, err := newConfig("dead-owner", kafka.TLS{}, kafka.SASL{})
	require.NoError(t, err)
	client, err := sarama.NewClient(brokers, sc)
	require.NoError(t, err)
	defer client.Close()
	coord, err := client.TransactionCoordinator(txnID)
	require.NoError(t, err)
	initResp, err := coord.InitProducerID(&sarama.InitProducerIDRequest{Version: 4, TransactionalID: &txnID,
		TransactionTimeout: time.Minute, ProducerID: -1, ProducerEpoch: -1})
	require.NoError(t, err)
	require.Equal(t, sarama.ErrNoError, initResp.Err)
	addResp, err := coord.AddOffsetsToTxn(&sarama.AddOffsetsToTxnRequest{Version: 3, TransactionalID: txnID,
		ProducerID: initResp.ProducerID, ProducerEpoch: initResp.ProducerEpoch, GroupID: group})
	require.NoError(t, err)
	require.Equal(t, sarama.ErrNoError, addResp.Err)
	groupCoord, err := client.Coordinator(group)
	require.NoError(t, err)
	commitResp, err := groupCoord.TxnOffsetCommit(&sarama.TxnOffsetCommitRequest{Version: 3, TransactionalID: txnID, GroupID: group,
		ProducerID: initResp.ProducerID, ProducerEpoch: initResp.ProducerEpoch, GenerationID: -1,
		Topics: map[string][]*sarama.PartitionOffsetMetadata{topic: {{Partition: partition, Offset: offset, LeaderEpoch: -1}}}})
	require.NoError(t, err)
	for _, pe := range commitResp.Topics[topic] {
		require.Equal(t, sarama.ErrNoError, pe.Err)
	}
}

// endOffsets returns the end offset of each partition of topic.
func endOffsets(t *testing.T, brokers []string, topic string) map[int32]int64 {
	t.Helper()
	sc, err := newConfig("end-offsets", kafka.TLS{}, kafka.SASL{})
	require.NoError(t, err)
	client, err := sarama.NewClient(brokers, sc)
	require.NoError(t, err)
	defer client.Close()
	parts, err := client.Partitions(topic)
	require.NoError(t, err)
	end := map[int32]int64{}
	for _, p := range parts {
		end[p], err = client.GetOffset(topic, p, sarama.OffsetNewest)
		require.NoError(t, err)
	}
	return end
}
