package kafkago

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	kgo "github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"
	"github.com/segmentio/kafka-go/protocol/describegroups"

	"github.com/auditpipe/auditpipe/internal/kafka"
)

const (
	// rangeFetchWait is the long-poll time of a range fetch. A range ends
	// at or below the high watermark, so records are normally there
	// already; the wait only matters while a leader moves.
	rangeFetchWait = 500 * time.Millisecond
	// maxEmptyFetches bounds how often in a row a fetch may return nothing
	// below the end of a range before ReadRange gives up instead of
	// spinning: a partition that was truncated below the range (unclean
	// leader election, deleted and re-created topic) never fills it again.
	maxEmptyFetches = 40
)

// Reader is a kafka.PartitionReader and kafka.GroupOffsets on kafka-go's
// Client: metadata, ListOffsets (including by timestamp), Fetch of one
// partition at a given offset, and the group APIs, each routed by the
// client to the right broker. It never joins a group.
//
// Limitation: like kafka-go's other readers it does not filter aborted
// transactions; control records are skipped. The raw topic it exists for
// is written without transactions.
type Reader struct {
	cfg       kafka.ReaderConfig
	client    *kgo.Client
	transport *kgo.Transport
	closeOnce sync.Once
}

var (
	_ kafka.PartitionReader = (*Reader)(nil)
	_ kafka.GroupOffsets    = (*Reader)(nil)
)

// NewReader returns a Reader for the cluster behind cfg.Brokers.
func NewReader(cfg kafka.ReaderConfig) (*Reader, error) {
	cfg = cfg.WithDefaults()
	if len(cfg.Brokers) == 0 {
		return nil, errors.New("kafka-go reader: no brokers")
	}
	sec, err := newSecurity(cfg.Brokers, cfg.TLS, cfg.SASL)
	if err != nil {
		return nil, fmt.Errorf("kafka-go reader: %w", err)
	}
	t := newTransport(cfg.ClientID, sec)
	// Metadata answers come from the transport's cache; a short TTL lets a
	// reader see a topic another client just created.
	t.MetadataTTL = metadataTTL
	return &Reader{
		cfg:       cfg,
		client:    &kgo.Client{Addr: kgo.TCP(cfg.Brokers...), Timeout: adminTimeout, Transport: describingTransport{t, cfg.ClientID, sec}},
		transport: t,
	}, nil
}

// Partitions returns the partition ids of topic in ascending order.
//
// kafka-go answers metadata requests from its transport's cache, so a
// topic created by another client since the last refresh looks unknown
// for up to a refresh interval; an unknown topic is asked again until
// unknownTopicWait has passed, as Produce does.
func (r *Reader) Partitions(ctx context.Context, topic string) ([]int32, error) {
	deadline := time.Now().Add(unknownTopicWait)
	for {
		ids, err := r.partitions(ctx, topic)
		if err == nil || !errors.Is(err, kgo.UnknownTopicOrPartition) || time.Now().After(deadline) {
			return ids, err
		}
		t := time.NewTimer(metadataTTL / 4)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("partitions of %s: %w", topic, ctx.Err())
		case <-t.C:
		}
	}
}

func (r *Reader) partitions(ctx context.Context, topic string) ([]int32, error) {
	res, err := r.client.Metadata(ctx, &kgo.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return nil, fmt.Errorf("partitions of %s: %w", topic, err)
	}
	for _, t := range res.Topics {
		if t.Name != topic {
			continue
		}
		if t.Error != nil {
			return nil, fmt.Errorf("partitions of %s: %w", topic, t.Error)
		}
		ids := make([]int32, 0, len(t.Partitions))
		for _, p := range t.Partitions {
			ids = append(ids, int32(p.ID))
		}
		slices.Sort(ids)
		if len(ids) == 0 {
			return nil, fmt.Errorf("partitions of %s: topic has no partitions", topic)
		}
		return ids, nil
	}
	return nil, fmt.Errorf("partitions of %s: %w", topic, kgo.UnknownTopicOrPartition)
}

// Bounds returns the log start offset and high watermark per partition.
func (r *Reader) Bounds(ctx context.Context, topic string) (map[int32]kafka.OffsetRange, error) {
	ids, err := r.Partitions(ctx, topic)
	if err != nil {
		return nil, err
	}
	reqs := make([]kgo.OffsetRequest, 0, 2*len(ids))
	for _, id := range ids {
		reqs = append(reqs, kgo.FirstOffsetOf(int(id)), kgo.LastOffsetOf(int(id)))
	}
	parts, err := r.listOffsets(ctx, topic, reqs)
	if err != nil {
		return nil, fmt.Errorf("offset bounds of %s: %w", topic, err)
	}
	out := make(map[int32]kafka.OffsetRange, len(ids))
	for _, id := range ids {
		p, ok := parts[id]
		if !ok {
			return nil, fmt.Errorf("offset bounds of %s: no answer for partition %d", topic, id)
		}
		out[id] = kafka.OffsetRange{Start: p.FirstOffset, End: p.LastOffset}
	}
	return out, nil
}

// OffsetsForTime returns per partition the first offset at or after t.
func (r *Reader) OffsetsForTime(ctx context.Context, topic string, t time.Time) (map[int32]int64, error) {
	bounds, err := r.Bounds(ctx, topic)
	if err != nil {
		return nil, err
	}
	reqs := make([]kgo.OffsetRequest, 0, len(bounds))
	for id := range bounds {
		reqs = append(reqs, kgo.TimeOffsetOf(int(id), t))
	}
	parts, err := r.listOffsets(ctx, topic, reqs)
	if err != nil {
		return nil, fmt.Errorf("offsets of %s at %s: %w", topic, t.Format(time.RFC3339Nano), err)
	}
	out := make(map[int32]int64, len(bounds))
	for id, b := range bounds {
		out[id] = b.End // no record at or after t
		for off := range parts[id].Offsets {
			// Kafka answers -1 when every record is older than t.
			if off >= 0 {
				out[id] = off
			}
		}
	}
	return out, nil
}

func (r *Reader) listOffsets(ctx context.Context, topic string, reqs []kgo.OffsetRequest) (map[int32]kgo.PartitionOffsets, error) {
	res, err := r.client.ListOffsets(ctx, &kgo.ListOffsetsRequest{Topics: map[string][]kgo.OffsetRequest{topic: reqs}})
	if err != nil {
		return nil, err
	}
	out := make(map[int32]kgo.PartitionOffsets)
	for _, p := range res.Topics[topic] {
		if p.Error != nil {
			return nil, fmt.Errorf("partition %d: %w", p.Partition, p.Error)
		}
		out[int32(p.Partition)] = p
	}
	return out, nil
}

// ReadRange reads [rg.Start, rg.End) of one partition with plain Fetch
// requests at explicit offsets, so the range is exactly the one asked for
// whatever else reads or writes the partition.
func (r *Reader) ReadRange(ctx context.Context, topic string, partition int32, rg kafka.OffsetRange, fn func(ctx context.Context, b kafka.Batch) error) error {
	where := topic + "/" + strconv.Itoa(int(partition))
	next := rg.Start
	empty := 0
	for next < rg.End {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("read %s at offset %d: %w", where, next, err)
		}
		res, err := r.client.Fetch(ctx, &kgo.FetchRequest{
			Topic:     topic,
			Partition: int(partition),
			Offset:    next,
			MinBytes:  1,
			MaxBytes:  int64(r.cfg.FetchMaxBytes),
			MaxWait:   rangeFetchWait,
		})
		if err != nil {
			return fmt.Errorf("read %s at offset %d: %w", where, next, err)
		}
		if res.Error != nil {
			if errors.Is(res.Error, kgo.OffsetOutOfRange) {
				return fmt.Errorf("read %s at offset %d: the offset is no longer in the log (log start %d, high watermark %d; retention may have deleted it): %w",
					where, next, res.LogStartOffset, res.HighWatermark, res.Error)
			}
			return fmt.Errorf("read %s at offset %d: %w", where, next, res.Error)
		}
		records, after, err := readFetched(topic, partition, res.Records, next, rg.End)
		if err != nil {
			return fmt.Errorf("read %s at offset %d: decode records: %w", where, next, err)
		}
		if after == next {
			empty++
			if empty >= maxEmptyFetches {
				return fmt.Errorf("read %s: no record at offset %d below the end of the range %d after %d fetches (high watermark %d)",
					where, next, rg.End, empty, res.HighWatermark)
			}
			continue
		}
		empty = 0
		for len(records) > 0 {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("read %s at offset %d: %w", where, records[0].Offset, err)
			}
			n := min(len(records), r.cfg.MaxBatch)
			b := kafka.Batch{Topic: topic, Partition: partition, Records: records[:n:n]}
			if err := fn(ctx, b); err != nil {
				return fmt.Errorf("read %s: handle offsets %d-%d: %w", where, b.Records[0].Offset, b.Records[n-1].Offset, err)
			}
			records = records[n:]
		}
		next = after
	}
	return nil
}

// readFetched returns the data records of a fetch response with offsets
// in [from, end), and the offset after the last record or control record
// it saw below end, so that transaction markers and compacted gaps move
// the position forward too.
func readFetched(topic string, partition int32, rr kgo.RecordReader, from, end int64) ([]kafka.Record, int64, error) {
	next := from
	var out []kafka.Record
	readers := []kgo.RecordReader{rr}
	if s, ok := rr.(*protocol.RecordStream); ok {
		readers = s.Records
	}
	for _, batch := range readers {
		if cb, ok := batch.(*protocol.ControlBatch); ok {
			for {
				cr, err := cb.ReadControlRecord()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					return nil, 0, err
				}
				if cr.Offset >= next && cr.Offset < end {
					next = cr.Offset + 1
				}
			}
			continue
		}
		for {
			rec, err := batch.ReadRecord()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return nil, 0, err
			}
			if rec.Offset < next || rec.Offset >= end {
				// Brokers return whole batches, which may start before the
				// requested offset or reach past the end of the range.
				closeRecord(rec)
				continue
			}
			kr, err := toPortRecord(topic, partition, rec)
			if err != nil {
				return nil, 0, fmt.Errorf("offset %d: %w", rec.Offset, err)
			}
			out = append(out, kr)
			next = rec.Offset + 1
		}
	}
	return out, next, nil
}

func toPortRecord(topic string, partition int32, rec *kgo.Record) (kafka.Record, error) {
	defer closeRecord(rec)
	key, err := protocol.ReadAll(rec.Key)
	if err != nil {
		return kafka.Record{}, fmt.Errorf("key: %w", err)
	}
	value, err := protocol.ReadAll(rec.Value)
	if err != nil {
		return kafka.Record{}, fmt.Errorf("value: %w", err)
	}
	out := kafka.Record{Topic: topic, Partition: partition, Offset: rec.Offset, Key: key, Value: value, Time: rec.Time}
	if len(rec.Headers) > 0 {
		out.Headers = make([]kafka.Header, len(rec.Headers))
		for i, h := range rec.Headers {
			out.Headers[i] = kafka.Header{Key: h.Key, Value: h.Value}
		}
	}
	return out, nil
}

func closeRecord(rec *kgo.Record) {
	if rec.Key != nil {
		rec.Key.Close()
	}
	if rec.Value != nil {
		rec.Value.Close()
	}
}

// DescribeGroup asks the group coordinator for the group's state and
// members. It sends DescribeGroups itself rather than through
// Client.DescribeGroups, which fails on member metadata it cannot decode
// (for example sarama's cooperative-sticky subscriptions) and would then
// hide the members this check exists to find.
func (r *Reader) DescribeGroup(ctx context.Context, group string) (kafka.GroupInfo, error) {
	if ctx.Err() == nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, adminTimeout)
		defer cancel()
	}
	m, err := r.transport.RoundTrip(ctx, r.client.Addr, &describegroups.Request{Groups: []string{group}})
	if err != nil {
		return kafka.GroupInfo{}, fmt.Errorf("describe group %s: %w", group, err)
	}
	res, ok := m.(*describegroups.Response)
	if !ok || len(res.Groups) != 1 {
		return kafka.GroupInfo{}, fmt.Errorf("describe group %s: unexpected answer %T", group, m)
	}
	g := res.Groups[0]
	if g.ErrorCode != 0 {
		err := kgo.Error(g.ErrorCode)
		// kfake answers an unknown group with GroupIdNotFound, Kafka with
		// state Dead: both mean nobody is in it.
		if errors.Is(err, kgo.GroupIdNotFound) {
			return kafka.GroupInfo{Group: group, State: "Dead"}, nil
		}
		return kafka.GroupInfo{}, fmt.Errorf("describe group %s: %w", group, err)
	}
	info := kafka.GroupInfo{Group: group, State: g.GroupState}
	for _, mem := range g.Members {
		info.Members = append(info.Members, mem.ClientID+"@"+mem.ClientHost)
	}
	sort.Strings(info.Members)
	return info, nil
}

// CommittedOffsets returns the group's committed offsets for topic.
func (r *Reader) CommittedOffsets(ctx context.Context, group, topic string) (map[int32]int64, error) {
	return committedOffsets(ctx, r.client, group, topic)
}

// ResetOffsets commits offsets as an outsider (generation -1, no member
// id), which the coordinator accepts only while the group has no members:
// the member check here gives a clear error, and the coordinator's own
// check closes the race with a member joining in between.
func (r *Reader) ResetOffsets(ctx context.Context, group, topic string, offsets map[int32]int64) error {
	info, err := r.DescribeGroup(ctx, group)
	if err != nil {
		return fmt.Errorf("reset offsets of group %s: %w", group, err)
	}
	if len(info.Members) > 0 {
		return fmt.Errorf("reset offsets of group %s: %w (state %s, members %v); stop them first", group, kafka.ErrGroupActive, info.State, info.Members)
	}
	if len(offsets) == 0 {
		return nil
	}
	commits := make([]kgo.OffsetCommit, 0, len(offsets))
	for p, off := range offsets {
		commits = append(commits, kgo.OffsetCommit{Partition: int(p), Offset: off})
	}
	sort.Slice(commits, func(i, j int) bool { return commits[i].Partition < commits[j].Partition })
	res, err := r.client.OffsetCommit(ctx, &kgo.OffsetCommitRequest{
		GroupID:      group,
		GenerationID: -1,
		Topics:       map[string][]kgo.OffsetCommit{topic: commits},
	})
	if err != nil {
		return fmt.Errorf("reset offsets of group %s on %s: %w", group, topic, err)
	}
	var errs []error
	for _, p := range res.Topics[topic] {
		switch {
		case p.Error == nil:
		case errors.Is(p.Error, kgo.UnknownMemberId), errors.Is(p.Error, kgo.IllegalGeneration), errors.Is(p.Error, kgo.RebalanceInProgress):
			errs = append(errs, fmt.Errorf("partition %d: %w (coordinator: %v)", p.Partition, kafka.ErrGroupActive, p.Error))
		default:
			errs = append(errs, fmt.Errorf("partition %d: %w", p.Partition, p.Error))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("reset offsets of group %s on %s: %w", group, topic, err)
	}
	return nil
}

// Close releases the reader's connections. Safe to call twice.
func (r *Reader) Close() error {
	r.closeOnce.Do(r.transport.CloseIdleConnections)
	return nil
}
