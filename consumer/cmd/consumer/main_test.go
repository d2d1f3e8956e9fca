package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/consumer/app"
	"github.com/auditpipe/auditpipe/consumer/internal/eventgen"
	"github.com/auditpipe/auditpipe/consumer/sink/eventstore"
	"github.com/auditpipe/auditpipe/internal/cli"
	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/kafka/kafkatest"
	"github.com/auditpipe/auditpipe/internal/kafka/saramakafka"

	_ "modernc.org/sqlite"
)

func TestHelp(t *testing.T) {
	var out, errOut bytes.Buffer
	err := program().Run(context.Background(), []string{"--help"}, &out, &errOut)
	require.ErrorIs(t, err, cli.ErrHelp)
	require.Empty(t, errOut.String())
	require.Contains(t, out.String(), "cls-local")
	require.Contains(t, out.String(), "validate")
	out.Reset()
	require.ErrorIs(t, program().Run(context.Background(), []string{"run", "--help"}, &out, &errOut), cli.ErrHelp)
	require.Contains(t, out.String(), "-session-timeout")
	require.Contains(t, out.String(), "-kafka-brokers")
	require.Empty(t, errOut.String())
}

// buildConsumer builds the consumer binary into a temporary directory.
func buildConsumer(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "consumer")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Stderr = os.Stderr
	require.NoError(t, build.Run())
	return bin
}

// TestToolCommands: the consumer binary carries the group tools and the
// search API's clients; their help is on stdout with exit status 0, and
// an error is printed once, on stderr, with a non-zero exit.
func TestToolCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildConsumer(t)
	for _, args := range [][]string{{"groups", "--help"}, {"groups", "list", "--help"}, {"search", "--help"}, {"events", "--help"}, {"alerts", "--help"}} {
		var out, errOut bytes.Buffer
		cmd := exec.Command(bin, args...)
		cmd.Stdout, cmd.Stderr = &out, &errOut
		require.NoError(t, cmd.Run(), "%q: %s", args, errOut.String())
		require.Contains(t, out.String(), "Usage", "%q", args)
		require.Empty(t, errOut.String(), "%q", args)
	}

	brokers := kafkatest.Brokers(t)
	var out, errOut bytes.Buffer
	cmd := exec.Command(bin, "groups", "describe", "--brokers", strings.Join(brokers, ","), "--group", "no-such-group", "--topic", "audit.events")
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	require.Error(t, err)
	require.Equal(t, "consumer: consumer group no-such-group not found (the cluster has 0 groups; list them with groups list)\n", errOut.String())

	// AUDITPIPE_SERVER is where events asks (nothing listens there).
	out.Reset()
	errOut.Reset()
	cmd = exec.Command(bin, "events", "--timeout", "5s")
	cmd.Env = append(os.Environ(), "AUDITPIPE_SERVER=http://127.0.0.1:1")
	cmd.Stdout, cmd.Stderr = &out, &errOut
	require.Error(t, cmd.Run())
	require.Contains(t, errOut.String(), "http://127.0.0.1:1/api/v1/events")
	require.Equal(t, 1, strings.Count(errOut.String(), "\n"), "the error is printed once:\n%s", errOut.String())
	require.Equal(t, 1, strings.Count(errOut.String(), "127.0.0.1:1/api"), "the URL is named once:\n%s", errOut.String())
}

func TestRejectsBadFlags(t *testing.T) {
	var out bytes.Buffer
	require.ErrorContains(t, program().Run(context.Background(), []string{"--sink", "s3"}, &out, &out), `unknown sink "s3"`)
	require.ErrorContains(t, program().Run(context.Background(), []string{"run", "extra"}, &out, &out), "unexpected argument")
}

// TestKill9 runs the real binary against the test's broker, kills it with
// SIGKILL while it writes, several times, and checks after each kill that
// the store passes integrity_check and that no committed offset is beyond
// what the store holds. A last run drains everything: each event is
// stored exactly once.
func TestKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildConsumer(t)
	// SQLite is durable per Write; VictoriaLogs per Sync, which the local
	// sink's group runs before each offset commit (kafka.Syncer).
	for _, engine := range []string{eventstore.EngineSQLite, eventstore.EngineVictoriaLogs} {
		t.Run(engine, func(t *testing.T) { kill9(t, bin, engine) })
	}
}

// storedIDs reads the auditIDs in the store at path, checking its
// integrity first where the engine has a check (SQLite's integrity_check).
func storedIDs(t *testing.T, engine, path, round string) []string {
	t.Helper()
	if engine == eventstore.EngineSQLite {
		db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
		require.NoError(t, err)
		defer db.Close()
		var ok string
		require.NoError(t, db.QueryRow("PRAGMA integrity_check").Scan(&ok))
		require.Equal(t, "ok", ok, round)
		var ids []string
		rows, err := db.Query("SELECT audit_id FROM events")
		require.NoError(t, err)
		for rows.Next() {
			var id string
			require.NoError(t, rows.Scan(&id))
			ids = append(ids, id)
		}
		require.NoError(t, rows.Close())
		return ids
	}
	s, err := app.OpenStore(app.LocalConfig{Engine: engine, Path: path}, eventstore.Options{})
	require.NoError(t, err, round)
	defer s.Close()
	res, err := s.Query(context.Background(), eventstore.Query{Limit: eventstore.MaxLimit})
	require.NoError(t, err, round)
	require.Less(t, res.Total, eventstore.MaxLimit, "one page holds them all")
	var ids []string
	for _, e := range res.Events {
		var ev struct {
			AuditID string `json:"auditID"`
		}
		require.NoError(t, json.Unmarshal(e, &ev))
		ids = append(ids, ev.AuditID)
	}
	return ids
}

func kill9(t *testing.T, bin, engine string) {

	brokers := kafkatest.Brokers(t)
	admin, err := saramakafka.NewAdmin(brokers, "kill9-admin")
	require.NoError(t, err)
	defer admin.Close()
	const topic, parts, total = "audit.events", 3, 4000
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	require.NoError(t, admin.EnsureTopics(ctx, kafka.TopicSpec{Name: topic, Partitions: parts, ReplicationFactor: 1}))
	p, err := saramakafka.NewProducer(kafka.ProducerConfig{Brokers: brokers, ClientID: "kill9-producer"})
	require.NoError(t, err)
	defer p.Close()

	// byPart[p] lists the auditIDs of partition p in offset order.
	clusters := []string{"c0", "c1", "c2", "c3", "c4", "c5"}
	byPart := map[int32][]string{}
	var batches [][]kafka.Record
	for i := range total {
		c := clusters[i%len(clusters)]
		id := fmt.Sprintf("%s-%06d", c, i)
		part := kafkatest.ReferencePartition([]byte(c), parts)
		byPart[part] = append(byPart[part], id)
		if i%100 == 0 {
			batches = append(batches, nil)
		}
		batches[len(batches)-1] = append(batches[len(batches)-1], kafka.Record{Topic: topic, Key: []byte(c), Value: eventgen.Event(c, id, 1400, time.Now())})
	}
	store := filepath.Join(t.TempDir(), "events")
	group := "kill9-" + fmt.Sprint(time.Now().UnixNano())

	// The stream arrives while the consumer runs, as from a live cluster,
	// and stays at most backlog ahead of what the group committed: a
	// consumer that syncs its store once a second (vlogs) would otherwise
	// take all of a stream already on the topic in one commit (or drain
	// it while a killed member's session expires), and no kill would land
	// mid-stream, however fast or slow this machine is.
	const backlog = 600
	produced := make(chan error, 1)
	go func() {
		sent := 0
		for _, b := range batches {
			for {
				m, err := admin.CommittedOffsets(ctx, group, topic)
				if err != nil {
					produced <- err
					return
				}
				var sum int64
				for _, v := range m {
					sum += v
				}
				if int64(sent) <= sum+backlog {
					break
				}
				select {
				case <-ctx.Done():
					produced <- ctx.Err()
					return
				case <-time.After(20 * time.Millisecond):
				}
			}
			if err := p.Produce(ctx, b...); err != nil {
				produced <- err
				return
			}
			sent += len(b)
			time.Sleep(50 * time.Millisecond)
		}
		produced <- nil
	}()

	args := []string{"--brokers", strings.Join(brokers, ","), "--sink", "local", "--store", store, "--store-engine", engine,
		"--group", group, "--metrics-listen", "", "--api-listen", "127.0.0.1:0", "--session-timeout", "2s", "--max-batch", "100", "--log-level", "warn"}
	committed := func() (map[int32]int64, int64) {
		m, err := admin.CommittedOffsets(ctx, group, topic)
		require.NoError(t, err)
		var sum int64
		for _, v := range m {
			sum += v
		}
		return m, sum
	}
	check := func(round string) []string {
		ids := storedIDs(t, engine, store, round)
		stored := map[string]bool{}
		for _, id := range ids {
			stored[id] = true
		}
		m, sum := committed()
		for part, off := range m {
			for _, id := range byPart[part][:off] {
				require.True(t, stored[id], "%s: %s is below the committed offset %d of partition %d but not stored", round, id, off, part)
			}
		}
		t.Logf("%s: %d committed, %d stored", round, sum, len(stored))
		return ids
	}

	var last int64
	for round := range 3 {
		cmd := exec.Command(bin, args...)
		stderr := &syncBuffer{}
		cmd.Stderr = stderr
		require.NoError(t, cmd.Start())
		// Kill once this run has committed something and the group as a
		// whole passed an eighth, three eighths, five eighths of the
		// stream: mid-stream, with writes and commits in flight. Waiting
		// on progress rather than on a fixed time keeps the last kill
		// before the end however fast the consumer drains.
		want := max(last+1, int64(total)*int64(2*round+1)/8)
		require.Eventually(t, func() bool { _, s := committed(); return s >= want }, time.Minute, 5*time.Millisecond, stderr.String())
		time.Sleep(time.Duration(10+round*10) * time.Millisecond)
		require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
		_ = cmd.Wait()
		check(fmt.Sprintf("kill %d", round+1))
		_, last = committed()
	}
	require.Less(t, last, int64(total), "the kills happened before the end")

	// A clean run drains the rest (the producer follows its commits),
	// then stops on SIGTERM.
	cmd := exec.Command(bin, args...)
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	require.NoError(t, cmd.Start())
	require.NoError(t, <-produced, "produce the stream")
	require.Eventually(t, func() bool { _, s := committed(); return s == total }, 2*time.Minute, 50*time.Millisecond, stderr.String())
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, cmd.Wait(), stderr.String())
	ids := check("final")
	distinct := map[string]bool{}
	for _, id := range ids {
		distinct[id] = true
	}
	require.Len(t, ids, total, "every event stored once")
	require.Len(t, distinct, total)
}

// syncBuffer is the child's stderr: written by exec's copier while the test
// may read it for a failure message.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
