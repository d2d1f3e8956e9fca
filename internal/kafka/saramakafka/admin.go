package saramakafka

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/IBM/sarama"

	"github.com/auditpipe/auditpipe/internal/kafka"
)

// Admin is a kafka.Admin on a sarama ClusterAdmin. ClusterAdmin calls take
// no context, so Admin checks ctx between requests; one request is bounded
// by sarama's own timeouts.
type Admin struct {
	ca        sarama.ClusterAdmin
	closeOnce sync.Once
	closeErr  error
}

var _ kafka.Admin = (*Admin)(nil)

// NewAdmin connects an admin client to brokers.
func NewAdmin(brokers []string, clientID string) (*Admin, error) {
	return NewAdminWithConfig(kafka.AdminConfig{Brokers: brokers, ClientID: clientID})
}

// NewAdminWithSASL is NewAdmin authenticating with sasl.
func NewAdminWithSASL(brokers []string, clientID string, sasl kafka.SASL) (*Admin, error) {
	return NewAdminWithConfig(kafka.AdminConfig{Brokers: brokers, ClientID: clientID, SASL: sasl})
}

// NewAdminWithConfig connects an admin client as cfg says (TLS, SASL).
func NewAdminWithConfig(cfg kafka.AdminConfig) (*Admin, error) {
	if len(cfg.Brokers) == 0 {
		return nil, errors.New("kafka admin: no brokers")
	}
	if cfg.ClientID == "" {
		cfg.ClientID = "auditpipe"
	}
	if err := cfg.SASL.Validate(); err != nil {
		return nil, fmt.Errorf("kafka admin: %w", err)
	}
	sc, err := newConfig(cfg.ClientID, cfg.TLS, cfg.SASL)
	if err != nil {
		return nil, fmt.Errorf("kafka admin: %w", err)
	}
	ca, err := sarama.NewClusterAdmin(cfg.Brokers, sc)
	if err != nil {
		return nil, fmt.Errorf("kafka admin: connect to %v: %w", cfg.Brokers, describe(err, cfg.Brokers, cfg.SASL))
	}
	return &Admin{ca: ca}, nil
}

// EnsureTopics creates the topics that do not exist yet. Partitions or
// ReplicationFactor of zero take the broker's defaults.
func (a *Admin) EnsureTopics(ctx context.Context, topics ...kafka.TopicSpec) error {
	for _, t := range topics {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("create topic %s: %w", t.Name, err)
		}
		detail := &sarama.TopicDetail{NumPartitions: t.Partitions, ReplicationFactor: t.ReplicationFactor}
		// -1 asks the broker for its default (CreateTopics v4+).
		if detail.NumPartitions <= 0 {
			detail.NumPartitions = -1
		}
		if detail.ReplicationFactor <= 0 {
			detail.ReplicationFactor = -1
		}
		if len(t.Configs) > 0 {
			detail.ConfigEntries = make(map[string]*string, len(t.Configs))
			for k, v := range t.Configs {
				detail.ConfigEntries[k] = &v
			}
		}
		err := a.ca.CreateTopic(t.Name, detail, false)
		// An existing topic is left as it is, whatever its settings: this
		// is "ensure", and several replicas may race to create it.
		if err != nil && !errors.Is(err, sarama.ErrTopicAlreadyExists) {
			return fmt.Errorf("create topic %s (%d partitions): %w", t.Name, t.Partitions, err)
		}
	}
	return nil
}

// CommittedOffsets returns group's committed offsets on topic's partitions.
func (a *Admin) CommittedOffsets(ctx context.Context, group, topic string) (map[int32]int64, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("committed offsets of group %s on %s: %w", group, topic, err)
	}
	// Ask for the topic's partitions explicitly instead of "all topics":
	// the answer then has one entry per partition, with -1 where nothing
	// was committed, on every broker version.
	md, err := a.ca.DescribeTopics([]string{topic})
	if err != nil {
		return nil, fmt.Errorf("committed offsets of group %s: describe topic %s: %w", group, topic, err)
	}
	var partitions []int32
	for _, tm := range md {
		if tm.Name != topic {
			continue
		}
		if !errors.Is(tm.Err, sarama.ErrNoError) {
			return nil, fmt.Errorf("committed offsets of group %s: describe topic %s: %w", group, topic, tm.Err)
		}
		for _, pm := range tm.Partitions {
			partitions = append(partitions, pm.ID)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("committed offsets of group %s on %s: %w", group, topic, err)
	}
	resp, err := a.ca.ListConsumerGroupOffsets(group, map[string][]int32{topic: partitions})
	// A group that never committed does not exist for some brokers
	// (kfake says so; Apache Kafka answers -1 per partition): both mean
	// "no commits".
	if errors.Is(err, sarama.ErrGroupIDNotFound) {
		return map[int32]int64{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("committed offsets of group %s on %s: %w", group, topic, err)
	}
	if !errors.Is(resp.Err, sarama.ErrNoError) {
		return nil, fmt.Errorf("committed offsets of group %s on %s: %w", group, topic, resp.Err)
	}
	out := make(map[int32]int64)
	for p, block := range resp.Blocks[topic] {
		if !errors.Is(block.Err, sarama.ErrNoError) {
			return nil, fmt.Errorf("committed offsets of group %s on %s/%d: %w", group, topic, p, block.Err)
		}
		if block.Offset >= 0 {
			out[p] = block.Offset
		}
	}
	return out, nil
}

// Close closes the admin client. Safe to call twice.
func (a *Admin) Close() error {
	a.closeOnce.Do(func() {
		if err := a.ca.Close(); err != nil {
			a.closeErr = fmt.Errorf("close kafka admin: %w", err)
		}
	})
	return a.closeErr
}
