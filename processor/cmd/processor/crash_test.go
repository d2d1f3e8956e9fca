package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/kafka/kafkatest"
	"github.com/auditpipe/auditpipe/internal/kafka/saramakafka"
	"github.com/auditpipe/auditpipe/schemas"
	"github.com/stretchr/testify/require"
)

// TestKill9ExactlyOnce builds the processor, runs it in exactly-once mode
// against the test's in-process broker, kills it with SIGKILL twice while
// it commits small transactions (one per batch of 20), restarts it, and
// then reads the events topic with read_committed: every input is there
// exactly once — nothing lost, nothing duplicated. It runs in `make
// test-kafka` against Apache Kafka too, where a restarted processor must
// fence the killed one's open transactions before it reads its offsets
// (it logs how long each start took to its first commit).
func TestKill9ExactlyOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the processor binary")
	}
	bin := filepath.Join(t.TempDir(), "processor")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Stderr = os.Stderr
	require.NoError(t, build.Run(), "build the processor")

	brokers := kafkatest.Brokers(t)
	suffix := strconv.FormatInt(time.Now().UnixNano(), 36)
	topics := schemas.Topics{Raw: "raw-" + suffix, Events: "events-" + suffix, DLQ: "dlq-" + suffix}
	admin, err := saramakafka.NewAdmin(brokers, "crash-admin")
	require.NoError(t, err)
	t.Cleanup(func() { _ = admin.Close() })
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	for _, topic := range []string{topics.Raw, topics.Events, topics.DLQ} {
		require.NoError(t, admin.EnsureTopics(ctx, kafka.TopicSpec{Name: topic, Partitions: 3, ReplicationFactor: 1}))
	}

	const n = 4000
	ev, err := os.ReadFile("../../../testdata/public-audit/falco/create_clusterrole.json")
	require.NoError(t, err)
	in, err := saramakafka.NewProducer(kafka.ProducerConfig{Brokers: brokers, ClientID: "crash-raw"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = in.Close() })
	recs := make([]kafka.Record, 0, n)
	for i := range n {
		id := "crash-" + strconv.Itoa(i)
		recs = append(recs, kafka.Record{Topic: topics.Raw, Key: []byte(id),
			Value:   bytes.Replace(ev, []byte(`"auditID":"`), []byte(`"auditID":"`+id+`-`), 1),
			Headers: []kafka.Header{{Key: schemas.HeaderCluster, Value: []byte("c1")}}})
	}
	require.NoError(t, in.Produce(ctx, recs...))

	type proc struct {
		cmd    *exec.Cmd
		exited chan struct{}
	}
	start := func() proc {
		cmd := exec.Command(bin, "--brokers", strings.Join(brokers, ","), "--group", "crash-"+suffix,
			"--policy", "../../policies/tke-default.yaml",
			"--topic-raw", topics.Raw, "--topic-events", topics.Events, "--topic-dlq", topics.DLQ,
			"--delivery", "exactly-once", "--transactional-id", "crash-"+suffix,
			// 6 s: Apache Kafka's group.min.session.timeout.ms; it
			// refuses less (kfake does not).
			"--max-batch", "20", "--session-timeout", "6s", "--reload-interval", "-1s", "--metrics-listen", "", "--log-level", "warn")
		cmd.Stderr = os.Stderr
		require.NoError(t, cmd.Start())
		p := proc{cmd: cmd, exited: make(chan struct{})}
		go func() { _ = cmd.Wait(); close(p.exited) }()
		// A failing test must not leave a processor running.
		t.Cleanup(func() { _ = cmd.Process.Kill(); <-p.exited })
		return p
	}
	// Count committed output as it appears.
	var mu sync.Mutex
	seen := map[string]int{}
	total := 0
	reader, err := saramakafka.NewGroup(kafka.GroupConfig{Brokers: brokers, Group: "crash-reader-" + suffix,
		Topics: []string{topics.Events}, MaxWait: 10 * time.Millisecond}.WithDefaults())
	require.NoError(t, err)
	t.Cleanup(func() { _ = reader.Close() })
	rctx, rcancel := context.WithCancel(ctx)
	rdone := make(chan error, 1)
	go func() {
		rdone <- reader.Run(rctx, kafka.HandlerFunc(func(_ context.Context, b kafka.Batch) error {
			mu.Lock()
			defer mu.Unlock()
			for _, r := range b.Records {
				var pe schemas.ProcessedEvent
				if err := json.Unmarshal(r.Value, &pe); err != nil {
					return err
				}
				seen[pe.AuditID]++
				total++
			}
			return nil
		}))
	}()
	count := func() int { mu.Lock(); defer mu.Unlock(); return total }
	// consumed is the processor's own progress: its committed input
	// offsets, summed (each partition starts at 0). The kills are timed
	// on it, not on the reader, which may lag behind.
	consumed := func() int {
		offs, err := admin.CommittedOffsets(ctx, "crash-"+suffix, topics.Raw)
		require.NoError(t, err)
		sum := 0
		for _, o := range offs {
			sum += int(o)
		}
		return sum
	}
	// waitFor waits until done() while the process runs; after a start at
	// a consumed count of from it logs how long the process took to
	// commit its first transaction, which after a kill is the restart's
	// recovery time.
	waitFor := func(p proc, what string, done func() bool, from int) {
		t.Helper()
		started := time.Now()
		resumed := from < 0
		deadline := time.After(time.Minute)
		for !done() {
			if !resumed && consumed() > from {
				resumed = true
				t.Logf("started at %d consumed records, first commit after %.1f s", from, time.Since(started).Seconds())
			}
			select {
			case <-p.exited:
				t.Fatalf("processor exited early (%v) before %s: %d consumed, %d read", p.cmd.ProcessState, what, consumed(), count())
			case <-deadline:
				t.Fatalf("no %s after a minute: %d consumed, %d read", what, consumed(), count())
			case <-time.After(20 * time.Millisecond):
			}
		}
	}

	for range 2 {
		from := consumed()
		killAt := min(from+n/5, n*9/10)
		p := start()
		waitFor(p, strconv.Itoa(killAt)+" consumed records", func() bool { return consumed() >= killAt }, from)
		require.Less(t, consumed(), n, "the processor finished before it could be killed")
		require.NoError(t, p.cmd.Process.Kill()) // SIGKILL: no shutdown, a transaction is likely open
		<-p.exited
		t.Logf("killed after %d consumed records (%d read so far)", consumed(), count())
		// Restart a little later, as a supervisor would. The restarted
		// member's join then waits (Apache Kafka and kfake alike) until
		// the dead member's 6 s session expired; restarting at once
		// makes kfake hold the rebalance for the dead member until
		// sarama's 60s rebalance timeout (the group adapter does not
		// set it), which only slows the test down.
		time.Sleep(3 * time.Second)
	}
	p := start()
	waitFor(p, "all records consumed", func() bool { return consumed() >= n }, consumed())
	waitFor(p, "all records read", func() bool { return count() >= n }, -1)
	// Give duplicates, if any, time to show up.
	time.Sleep(time.Second)
	rcancel()
	require.NoError(t, <-rdone)

	mu.Lock()
	defer mu.Unlock()
	require.Len(t, seen, n, "every input is in the output")
	for id, c := range seen {
		require.Equal(t, 1, c, "auditID %s appears %d times", id, c)
	}
	require.Equal(t, n, total)
}
