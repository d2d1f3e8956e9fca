package faults

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/kafka/kafkatest"
	"github.com/auditpipe/auditpipe/internal/kafka/saramakafka"
	"github.com/auditpipe/auditpipe/schemas"
)

// roundsEnv sets how many times TestKillPipelineAtRandomMoments kills the
// all-in-one (default 4).
const roundsEnv = "AUDITPIPE_FAULT_ROUNDS"

// TestBrokerKilledUnderLoad kills one broker of the 3-node cluster with
// SIGKILL while events flow, starts it again on its data, and checks that
// every acknowledged event reached the store. With replication factor 3
// and min.insync.replicas 2 a single dead broker must cost at most a
// leader election: posts may fail for a moment, none acknowledged is lost.
func TestBrokerKilledUnderLoad(t *testing.T) {
	c := needCluster(t)
	rnd := newRand(t)
	s := newSetup(t, c, buildAuditpipe(t))
	p := s.start(t)

	l := newLoad(s.webhookURL("broker-kill"), "broker-kill", "bk")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); l.run(ctx, 4000) }()

	time.Sleep(3 * time.Second)
	victim := rnd.IntN(len(c.nodes))
	t.Logf("kill -9 node %d (%s)", victim+1, c.address(t, victim))
	killed := time.Now()
	c.kill(t, victim)
	time.Sleep(10 * time.Second)
	c.start(t, victim)
	t.Logf("node %d restarted %s after the kill", victim+1, time.Since(killed).Round(time.Millisecond))
	time.Sleep(5 * time.Second)
	cancel()
	wg.Wait()

	verify(t, s, l, 1, l.recoveredAfter(killed))
	p.stop(t)
}

// TestKillPipelineAtRandomMoments kills the all-in-one process with
// SIGKILL at random moments under load, over several rounds, restarting
// it each time on the same data dir, and checks that every acknowledged
// event reached the store and the duplicates the crashes caused are
// copies of the same event.
func TestKillPipelineAtRandomMoments(t *testing.T) {
	c := needCluster(t)
	rnd := newRand(t)
	rounds := 4
	if v := os.Getenv(roundsEnv); v != "" {
		var err error
		rounds, err = strconv.Atoi(v)
		require.NoError(t, err, roundsEnv)
	}
	s := newSetup(t, c, buildAuditpipe(t))
	p := s.start(t)

	l := newLoad(s.webhookURL("pipeline-kill"), "pipeline-kill", "pk")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); l.run(ctx, 6000) }()

	var worst time.Duration
	for round := 1; round <= rounds; round++ {
		wait := time.Duration(500+rnd.IntN(4000)) * time.Millisecond
		time.Sleep(wait)
		killed := time.Now()
		p.kill9(t)
		p = s.start(t)
		t.Logf("round %d: killed %s after start, ready again in %s", round, wait, time.Since(killed).Round(time.Millisecond))
		worst = max(worst, time.Since(killed))
	}
	time.Sleep(3 * time.Second)
	cancel()
	wg.Wait()

	verify(t, s, l, rounds, worst)
	p.stop(t)
}

// TestPoisonRecordInEveryPartition writes bytes that are not an audit
// event straight to every partition of the raw topic, between good events,
// and checks that the processor sends each to the DLQ with a reason and
// its origin, and that every good event is still stored.
func TestPoisonRecordInEveryPartition(t *testing.T) {
	c := needCluster(t)
	s := newSetup(t, c, buildAuditpipe(t))
	p := s.start(t)
	const cluster = "poison"

	l := newLoad(s.webhookURL(cluster), cluster, "ok")
	l.run(context.Background(), 200)

	prod, err := saramakafka.NewProducer(kafka.ProducerConfig{Brokers: s.brokers, ClientID: "faults-poison"})
	require.NoError(t, err)
	defer prod.Close()
	var poison []kafka.Record
	for part := int32(0); part < partitions; part++ {
		key := keyFor(part)
		poison = append(poison, kafka.Record{
			Topic: s.topics.Raw, Key: []byte(key),
			Value: []byte("\x00\xffnot an audit event {"),
			Headers: []kafka.Header{
				{Key: schemas.HeaderCluster, Value: []byte(cluster)},
				{Key: schemas.HeaderSource, Value: []byte(schemas.SourceWebhook)},
				{Key: schemas.HeaderReceivedAt, Value: []byte(time.Now().UTC().Format(time.RFC3339Nano))},
				{Key: schemas.HeaderSchemaVersion, Value: []byte(strconv.Itoa(schemas.SchemaVersion))},
			},
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	require.NoError(t, prod.Produce(ctx, poison...))

	l.prefix = "after"
	l.run(context.Background(), 200)

	verify(t, s, l, 0, 0)

	dlq := readDLQ(t, s, partitions)
	for part := int32(0); part < partitions; part++ {
		r, ok := dlq[part]
		require.True(t, ok, "no DLQ record for the poison record of raw partition %d", part)
		require.Equal(t, "processor", string(r.HeaderValue(schemas.HeaderDLQStage)))
		require.NotEmpty(t, r.HeaderValue(schemas.HeaderDLQReason), "DLQ reason")
		require.Equal(t, poison[part].Value, r.Value, "the DLQ keeps the original bytes")
		t.Logf("raw partition %d: DLQ reason %q, origin %s", part, r.HeaderValue(schemas.HeaderDLQReason), r.HeaderValue(schemas.HeaderDLQOrigin))
	}
	p.stop(t)
}

// keyFor returns a key that the producers place in partition part.
func keyFor(part int32) string {
	for i := 0; ; i++ {
		k := fmt.Sprintf("poison-%d", i)
		if kafkatest.ReferencePartition([]byte(k), partitions) == part {
			return k
		}
	}
}

// readDLQ reads the DLQ topic until it has a processor record for each of
// the n raw partitions, and returns them by raw partition (parsed from the
// origin header "topic/partition/offset").
func readDLQ(t *testing.T, s *pipelineSetup, n int) map[int32]kafka.Record {
	t.Helper()
	g, err := saramakafka.NewGroup(kafka.GroupConfig{
		Brokers: s.brokers, Group: "faults-dlq-" + strconv.FormatInt(time.Now().UnixNano(), 36),
		Topics: []string{s.topics.DLQ}, ClientID: "faults-dlq", SessionTimeout: 6 * time.Second,
	})
	require.NoError(t, err)
	defer g.Close()
	var mu sync.Mutex
	got := map[int32]kafka.Record{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- g.Run(ctx, kafka.HandlerFunc(func(_ context.Context, b kafka.Batch) error {
			mu.Lock()
			defer mu.Unlock()
			for _, r := range b.Records {
				origin := string(r.HeaderValue(schemas.HeaderDLQOrigin))
				rest, ok := strings.CutPrefix(origin, s.topics.Raw+"/")
				if !ok {
					continue
				}
				part, _, _ := strings.Cut(rest, "/")
				p, err := strconv.ParseInt(part, 10, 32)
				if err != nil {
					return fmt.Errorf("DLQ origin %q: %w", origin, err)
				}
				got[int32(p)] = r
			}
			return nil
		}))
	}()
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) >= n
	}, 2*time.Minute, 200*time.Millisecond, "DLQ records for %d raw partitions", n)
	cancel()
	require.NoError(t, <-done)
	mu.Lock()
	defer mu.Unlock()
	return got
}

// outageEnv sets how long TestWholeClusterDown keeps every broker down
// (default 60s).
const outageEnv = "AUDITPIPE_FAULT_OUTAGE"

// TestWholeClusterDown kills every broker with SIGKILL under load, keeps
// the cluster down (a minute by default), starts it again on its data and
// checks that the pipeline resumes by itself and that every acknowledged
// event reached the store. With the producer spool wired into the
// all-in-one the webhook keeps acknowledging during the outage (the events
// wait on disk); without one it answers 503 and acknowledges nothing. Both
// must lose nothing acknowledged.
func TestWholeClusterDown(t *testing.T) {
	c := needCluster(t)
	outage := time.Minute
	if v := os.Getenv(outageEnv); v != "" {
		var err error
		outage, err = time.ParseDuration(v)
		require.NoError(t, err, outageEnv)
	}
	s := newSetup(t, c, buildAuditpipe(t))
	p := s.start(t)

	l := newLoad(s.webhookURL("cluster-down"), "cluster-down", "cd")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	loadDone := make(chan struct{})
	go func() { defer close(loadDone); l.run(ctx, 8000) }()

	time.Sleep(3 * time.Second)
	ackedBefore := len(l.ackedIDs())
	down := time.Now()
	for i := range c.nodes {
		c.kill(t, i)
	}
	t.Logf("all %d brokers killed; %d events acknowledged before", len(c.nodes), ackedBefore)
	time.Sleep(outage)
	ackedDuring := len(l.ackedIDs()) - ackedBefore
	restart := time.Now()
	c.startAll(t)
	up := time.Now()
	t.Logf("cluster down for %s, %d events acknowledged meanwhile; nodes listen again %s after their start",
		restart.Sub(down).Round(time.Millisecond), ackedDuring, up.Sub(restart).Round(time.Millisecond))
	// The pipeline must resume without a restart of its own: the webhook
	// acknowledges again (or the load already ended, spooled), and then
	// verify waits for every acknowledged event to reach the store.
	require.Eventually(t, func() bool {
		select {
		case <-loadDone:
			return true
		default:
			return l.ackedSince(up)
		}
	}, 3*time.Minute, 250*time.Millisecond,
		"the webhook did not acknowledge again within 3 minutes of the cluster's restart; log:\n%s", tail(s.logPath, 40))
	time.Sleep(5 * time.Second)
	cancel()
	<-loadDone

	recovery := l.recoveredAfter(down)
	if recovery > 0 {
		recovery -= up.Sub(down) // from the cluster's restart to the first acknowledgement
	}
	verify(t, s, l, 1, recovery)
	p.stop(t)
}
