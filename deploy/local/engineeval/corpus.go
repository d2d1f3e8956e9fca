package main

// The events both engines store: the processor's real output (the
// ProcessedEvent JSON the consumer reads from the events topic) for the
// bench generator's events, varied like consumer/sink/local's
// BenchmarkSearch store (5 clusters, 200 users, 50 namespaces, 5,000
// object names, a mix of verbs, 3 % 403 and 3 % 404, a rare word shared
// by 20 events), spread evenly over one week.
//
// Making a processed event per event would cost more CPU than the target
// budget of the store itself, so a few thousand variants are made once and
// each event is a variant with its own auditID, times and rare word spliced
// in at known offsets: a copy of ~1.4 KB per event, measured on its own by
// the "null" engine.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"

	"github.com/auditpipe/auditpipe/deploy/local/bench"
	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/processor/pipeline"
	"github.com/auditpipe/auditpipe/processor/policies"
	"github.com/auditpipe/auditpipe/processor/policy"
	"github.com/auditpipe/auditpipe/schemas"
)

// Corpus start and span: the same week as BenchmarkSearch.
var (
	corpusStart = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	corpusSpan  = 7 * 24 * time.Hour
)

// Sentinels written into the variants and replaced per event. Each has
// the width of its replacement: the times are RFC 3339 with microseconds
// (27 bytes), the auditID a UUID, the trace word "trace" + 5 digits.
const (
	sentinelID       = "00000000-0000-4000-8000-00000000beef"
	sentinelTrace    = "traceXXXXX"
	timeLayout       = "2006-01-02T15:04:05.000000Z07:00"
	sentinelStage    = "2001-02-03T04:05:06.123451Z"
	sentinelReceived = "2001-02-03T04:05:06.123452Z"
	sentinelArrived  = "2001-02-03T04:05:06.123453Z"
	sentinelDone     = "2001-02-03T04:05:06.123454Z"
)

// variant is one processed event with the offsets of its sentinels.
type variant struct {
	json  []byte
	holes []hole // sorted by offset
}

type hole struct {
	off  int
	kind int // index into the sentinel list
}

var sentinels = []string{sentinelID, sentinelTrace, sentinelStage, sentinelReceived, sentinelArrived, sentinelDone}

// corpus hands out events in order; event i is variant i % len(variants).
type corpus struct {
	variants []variant
	step     time.Duration
	nonce    uint32
}

// capture is a kafka.Producer that keeps what the processor writes to the
// events topic.
type capture struct {
	topic  string
	values [][]byte
}

func (c *capture) Produce(_ context.Context, records ...kafka.Record) error {
	for _, r := range records {
		if r.Topic == c.topic {
			c.values = append(c.values, slices.Clone(r.Value))
		}
	}
	return nil
}

func (c *capture) Close() error { return nil }

// newCorpus builds nVariants variants for mix from the fixtures in dir,
// for a corpus of total events over corpusSpan.
func newCorpus(dir string, mix bench.Mix, nVariants, total int, seed uint64) (*corpus, error) {
	tpl, err := bench.LoadTemplates(dir)
	if err != nil {
		return nil, fmt.Errorf("load bench templates: %w", err)
	}
	gen, err := tpl.Generator(mix, "engeval")
	if err != nil {
		return nil, err
	}
	pol, err := policy.Load(policies.TKEDefaultName, policies.TKEDefault)
	if err != nil {
		return nil, fmt.Errorf("load TKE default policy: %w", err)
	}
	topics := schemas.Topics{Raw: "audit.raw", Events: "audit.events", DLQ: "audit.dlq", Alerts: "audit.alerts"}
	out := &capture{topic: topics.Events}
	p, err := pipeline.New(pipeline.Config{Topics: topics}, pol, out, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, fmt.Errorf("processor pipeline: %w", err)
	}
	// The processor's output for generated raw records, as the webhook
	// receiver writes them (see deploy/local/bench rawRecords).
	evs := gen.Next(nVariants)
	received := []byte(time.Now().UTC().Format(time.RFC3339Nano))
	recs := make([]kafka.Record, len(evs))
	for i, ev := range evs {
		recs[i] = kafka.Record{Topic: topics.Raw, Offset: int64(i), Key: []byte(ev.AuditID), Value: ev.JSON, Headers: []kafka.Header{
			{Key: schemas.HeaderCluster, Value: []byte("bench")},
			{Key: schemas.HeaderSource, Value: []byte(schemas.SourceWebhook)},
			{Key: schemas.HeaderReceivedAt, Value: received},
			{Key: schemas.HeaderSchemaVersion, Value: []byte(strconv.Itoa(schemas.SchemaVersion))},
		}}
	}
	for i := 0; i < len(recs); i += 500 {
		if err := p.Handle(context.Background(), kafka.Batch{Topic: topics.Raw, Records: recs[i:min(i+500, len(recs))]}); err != nil {
			return nil, fmt.Errorf("processor pipeline: %w", err)
		}
	}
	if len(out.values) == 0 {
		return nil, fmt.Errorf("the processor kept none of %d events", len(evs))
	}

	verbs := []string{"get", "get", "get", "list", "list", "watch", "update", "patch", "create", "delete"}
	resources := []string{"pods", "secrets", "configmaps", "deployments", "services", "nodes", "clusterrolebindings", "events"}
	apps := []string{"nginx", "redis", "coredns", "kube-proxy", "postgres", "api-gateway", "billing", "frontend",
		"checkout", "metrics-server", "prometheus", "grafana", "loki", "vault", "cert-manager", "ingress-controller",
		"payments", "search", "orders", "auth"}
	agents := []string{"kubectl/v1.31.0 (linux/amd64) kubernetes/abc", "kube-controller-manager/v1.31.0", "argocd-application-controller/v2.12", "Go-http-client/2.0"}
	r := rand.New(rand.NewPCG(seed, seed))
	stage, _ := time.Parse(time.RFC3339Nano, sentinelStage)
	recv, _ := time.Parse(time.RFC3339Nano, sentinelReceived)
	arrived, _ := time.Parse(time.RFC3339Nano, sentinelArrived)
	done, _ := time.Parse(time.RFC3339Nano, sentinelDone)

	c := &corpus{step: corpusSpan / time.Duration(max(total, 1)), nonce: r.Uint32()}
	for i := range nVariants {
		var ev schemas.ProcessedEvent
		if err := json.Unmarshal(out.values[i%len(out.values)], &ev); err != nil {
			return nil, fmt.Errorf("decode processed event: %w", err)
		}
		ev.AuditID = sentinelID
		ev.Pipeline.Cluster = "cluster-" + strconv.Itoa(i%5)
		ev.StageTimestamp, ev.RequestReceivedTimestamp = stage, recv
		ev.Pipeline.ReceivedAt, ev.Pipeline.ProcessedAt = arrived, done
		ev.Verb = verbs[r.IntN(len(verbs))]
		ev.User.Username = "user-" + strconv.Itoa(r.IntN(200)) + "@example.com"
		ev.UserAgent = agents[r.IntN(len(agents))]
		var ref schemas.ObjectReference
		if ev.ObjectRef != nil {
			ref = *ev.ObjectRef
		}
		ref.Resource = resources[r.IntN(len(resources))]
		ref.Namespace = "team-" + strconv.Itoa(r.IntN(50))
		ref.Name = apps[r.IntN(len(apps))] + "-" + strconv.Itoa(r.IntN(250))
		ev.ObjectRef = &ref
		// A word that 20 events of 1M share, for rare-word full-text queries.
		ev.RequestURI = "/api/v1/namespaces/" + ref.Namespace + "/" + ref.Resource + "/" + ref.Name + "?trace=" + sentinelTrace
		var status schemas.Status
		if ev.ResponseStatus != nil {
			status = *ev.ResponseStatus
		}
		status.Code = 200
		decision := "allow"
		switch x := r.IntN(100); {
		case x < 3:
			status.Code, decision = 403, "forbid"
			status.Message = "forbidden: User cannot " + ev.Verb + " resource"
		case x < 6:
			status.Code = 404
		}
		ev.ResponseStatus = &status
		ann := make(map[string]string, len(ev.Annotations)+1)
		for k, v := range ev.Annotations {
			ann[k] = v
		}
		ann["authorization.k8s.io/decision"] = decision
		ev.Annotations = ann
		b, err := json.Marshal(ev)
		if err != nil {
			return nil, fmt.Errorf("encode variant: %w", err)
		}
		v := variant{json: b}
		for k, s := range sentinels {
			for off := 0; ; {
				j := bytes.Index(b[off:], []byte(s))
				if j < 0 {
					break
				}
				v.holes = append(v.holes, hole{off: off + j, kind: k})
				off += j + len(s)
			}
		}
		slices.SortFunc(v.holes, func(a, b hole) int { return a.off - b.off })
		c.variants = append(c.variants, v)
	}
	return c, nil
}

// timeOf is event i's stageTimestamp.
func (c *corpus) timeOf(i int) time.Time { return corpusStart.Add(c.step * time.Duration(i)) }

// appendEvent appends event i to dst.
func (c *corpus) appendEvent(dst []byte, i int) []byte {
	v := &c.variants[i%len(c.variants)]
	ts := c.timeOf(i)
	var fill [6][]byte
	var buf [160]byte
	b := buf[:0]
	at := len(b)
	b = fmt.Appendf(b, "%08x-%04x-4%03x-8%03x-%012x", c.nonce, (i>>36)&0xffff, (i>>24)&0xfff, (i>>12)&0xfff, i)
	fill[0], at = b[at:], len(b)
	b = fmt.Appendf(b, "trace%05d", i%50000)
	fill[1], at = b[at:], len(b)
	b = ts.AppendFormat(b, timeLayout)
	fill[2], at = b[at:], len(b)
	b = ts.Add(-15*time.Millisecond).AppendFormat(b, timeLayout)
	fill[3], at = b[at:], len(b)
	b = ts.Add(40*time.Millisecond).AppendFormat(b, timeLayout)
	fill[4], at = b[at:], len(b)
	b = ts.Add(45*time.Millisecond).AppendFormat(b, timeLayout)
	fill[5] = b[at:]
	prev := 0
	for _, h := range v.holes {
		dst = append(dst, v.json[prev:h.off]...)
		dst = append(dst, fill[h.kind]...)
		prev = h.off + len(sentinels[h.kind])
	}
	return append(dst, v.json[prev:]...)
}

// batch returns events [from, from+n) as separate slices of one buffer.
func (c *corpus) batch(buf []byte, from, n int) ([][]byte, []byte) {
	buf = buf[:0]
	ends := make([]int, n)
	for j := range n {
		buf = c.appendEvent(buf, from+j)
		ends[j] = len(buf)
	}
	out := make([][]byte, n)
	start := 0
	for j, e := range ends {
		out[j] = buf[start:e:e]
		start = e
	}
	return out, buf
}

// meanSize is the mean encoded size of the variants.
func (c *corpus) meanSize() int {
	total := 0
	for _, v := range c.variants {
		total += len(v.json)
	}
	return total / len(c.variants)
}
