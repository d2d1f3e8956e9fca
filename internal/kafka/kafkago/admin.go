package kafkago

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	kgo "github.com/segmentio/kafka-go"

	"github.com/auditpipe/auditpipe/internal/kafka"
)

// adminTimeout bounds one admin request when the caller's ctx has no
// deadline; kafka.Client also sends it to the broker as the CreateTopics
// timeout.
const adminTimeout = 30 * time.Second

// Admin is a kafka.Admin on kafka-go's Client, which routes each request
// to the right broker (CreateTopics to the controller, OffsetFetch to the
// group coordinator).
type Admin struct {
	client    *kgo.Client
	transport *kgo.Transport
	closeOnce sync.Once
}

var _ kafka.Admin = (*Admin)(nil)

// NewAdmin returns an Admin for the cluster behind brokers.
func NewAdmin(brokers []string, clientID string) (*Admin, error) {
	return NewAdminWithConfig(kafka.AdminConfig{Brokers: brokers, ClientID: clientID})
}

// NewAdminWithSASL is NewAdmin authenticating with s.
func NewAdminWithSASL(brokers []string, clientID string, s kafka.SASL) (*Admin, error) {
	return NewAdminWithConfig(kafka.AdminConfig{Brokers: brokers, ClientID: clientID, SASL: s})
}

// NewAdminWithConfig returns an Admin that connects as cfg says (TLS,
// SASL).
func NewAdminWithConfig(cfg kafka.AdminConfig) (*Admin, error) {
	if len(cfg.Brokers) == 0 {
		return nil, errors.New("kafka-go admin: no brokers")
	}
	if cfg.ClientID == "" {
		cfg.ClientID = "auditpipe"
	}
	sec, err := newSecurity(cfg.Brokers, cfg.TLS, cfg.SASL)
	if err != nil {
		return nil, fmt.Errorf("kafka-go admin: %w", err)
	}
	t := newTransport(cfg.ClientID, sec)
	return &Admin{
		client:    &kgo.Client{Addr: kgo.TCP(cfg.Brokers...), Timeout: adminTimeout, Transport: describingTransport{t, cfg.ClientID, sec}},
		transport: t,
	}, nil
}

// EnsureTopics creates the topics that do not exist yet. An existing
// topic counts as success and is not compared with its spec.
func (a *Admin) EnsureTopics(ctx context.Context, topics ...kafka.TopicSpec) error {
	if len(topics) == 0 {
		return nil
	}
	req := &kgo.CreateTopicsRequest{Topics: make([]kgo.TopicConfig, len(topics))}
	for i, t := range topics {
		tc := kgo.TopicConfig{
			Topic: t.Name,
			// -1 lets the broker apply num.partitions and
			// default.replication.factor.
			NumPartitions:     -1,
			ReplicationFactor: -1,
		}
		if t.Partitions > 0 {
			tc.NumPartitions = int(t.Partitions)
		}
		if t.ReplicationFactor > 0 {
			tc.ReplicationFactor = int(t.ReplicationFactor)
		}
		names := make([]string, 0, len(t.Configs))
		for k := range t.Configs {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			tc.ConfigEntries = append(tc.ConfigEntries, kgo.ConfigEntry{ConfigName: k, ConfigValue: t.Configs[k]})
		}
		req.Topics[i] = tc
	}
	res, err := a.client.CreateTopics(ctx, req)
	if err != nil {
		return fmt.Errorf("create topics %s: %w", topicNames(topics), err)
	}
	var errs []error
	for _, t := range topics {
		err, ok := res.Errors[t.Name]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("create topic %s: no answer from the broker", t.Name))
		case err == nil, errors.Is(err, kgo.TopicAlreadyExists):
		default:
			errs = append(errs, fmt.Errorf("create topic %s: %w", t.Name, err))
		}
	}
	return errors.Join(errs...)
}

func topicNames(topics []kafka.TopicSpec) []string {
	names := make([]string, len(topics))
	for i, t := range topics {
		names[i] = t.Name
	}
	return names
}

// CommittedOffsets returns the group's committed offsets for topic.
func (a *Admin) CommittedOffsets(ctx context.Context, group, topic string) (map[int32]int64, error) {
	return committedOffsets(ctx, a.client, group, topic)
}

// committedOffsets fetches a group's committed offsets on topic.
func committedOffsets(ctx context.Context, client *kgo.Client, group, topic string) (map[int32]int64, error) {
	// No topic list: the broker answers with every partition the group
	// committed on. Asking for named partitions would need the partition
	// count from kafka-go's metadata cache, which can lag behind a topic
	// another client just created.
	res, err := client.OffsetFetch(ctx, &kgo.OffsetFetchRequest{GroupID: group})
	if err != nil {
		return nil, fmt.Errorf("committed offsets of group %s on %s: %w", group, topic, err)
	}
	out := make(map[int32]int64)
	// Kafka answers an unknown group with no offsets, kfake with
	// GroupIdNotFound: both mean nothing was committed.
	if errors.Is(res.Error, kgo.GroupIdNotFound) {
		return out, nil
	}
	if res.Error != nil {
		return nil, fmt.Errorf("committed offsets of group %s on %s: %w", group, topic, res.Error)
	}
	for _, p := range res.Topics[topic] {
		if p.Error != nil {
			return nil, fmt.Errorf("committed offsets of group %s on %s partition %d: %w", group, topic, p.Partition, p.Error)
		}
		// -1 means no commit for this partition.
		if p.CommittedOffset >= 0 {
			out[int32(p.Partition)] = p.CommittedOffset
		}
	}
	return out, nil
}

// Close releases the admin's connections. Safe to call twice.
func (a *Admin) Close() error {
	a.closeOnce.Do(a.transport.CloseIdleConnections)
	return nil
}
