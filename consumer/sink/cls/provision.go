package cls

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	clsapi "github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/cls/v20201016"
	"github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common"
	tcerr "github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common/errors"
	"github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common/profile"
)

// ProvisionConfig configures the management API client.
type ProvisionConfig struct {
	SecretID, SecretKey, Region string
	// Endpoint overrides the API host (cls.tencentcloudapi.com), e.g. a
	// local test server; Scheme is then HTTP or HTTPS (default HTTPS).
	Endpoint, Scheme string
}

// Provisioner creates the logset, topic and index of a cluster through the
// CLS management API (2020-10-16), idempotently: what exists is found, a
// creation that races another replica's ("...Conflict") is looked up again.
type Provisioner struct {
	client *clsapi.Client
	logger *slog.Logger
}

// NewProvisioner returns a Provisioner.
func NewProvisioner(cfg ProvisionConfig, logger *slog.Logger) (*Provisioner, error) {
	if cfg.SecretID == "" || cfg.SecretKey == "" || cfg.Region == "" {
		return nil, errors.New("cls provisioning: secretID, secretKey and region are required")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cpf := profile.NewClientProfile()
	if cfg.Endpoint != "" {
		cpf.HttpProfile.Endpoint = cfg.Endpoint
	}
	if cfg.Scheme != "" {
		cpf.HttpProfile.Scheme = cfg.Scheme
	}
	c, err := clsapi.NewClient(common.NewCredential(cfg.SecretID, cfg.SecretKey), cfg.Region, cpf)
	if err != nil {
		return nil, fmt.Errorf("cls provisioning: client: %w", err)
	}
	return &Provisioner{client: c, logger: logger}, nil
}

// EnsureTopic returns the id of topic in logset, creating both (and the
// topic's index) when missing.
func (p *Provisioner) EnsureTopic(ctx context.Context, logset, topic string) (string, error) {
	logsetID, err := p.ensureLogset(ctx, logset)
	if err != nil {
		return "", fmt.Errorf("cls provisioning: logset %q: %w", logset, err)
	}
	id, created, err := p.ensureTopic(ctx, logsetID, topic)
	if err != nil {
		return "", fmt.Errorf("cls provisioning: topic %q in logset %q: %w", topic, logset, err)
	}
	if created {
		if err := p.createIndex(ctx, id); err != nil {
			return "", fmt.Errorf("cls provisioning: index of topic %q (%s): %w", topic, id, err)
		}
	}
	return id, nil
}

func (p *Provisioner) findLogset(ctx context.Context, name string) (string, error) {
	req := clsapi.NewDescribeLogsetsRequest()
	req.Filters = []*clsapi.Filter{{Key: common.StringPtr("logsetName"), Values: common.StringPtrs([]string{name})}}
	resp, err := p.client.DescribeLogsetsWithContext(ctx, req)
	if err != nil {
		return "", fmt.Errorf("DescribeLogsets: %w", err)
	}
	for _, l := range resp.Response.Logsets {
		// The filter matches fuzzily; only an exact name counts.
		if l.LogsetName != nil && *l.LogsetName == name && l.LogsetId != nil {
			return *l.LogsetId, nil
		}
	}
	return "", nil
}

func (p *Provisioner) ensureLogset(ctx context.Context, name string) (string, error) {
	if id, err := p.findLogset(ctx, name); err != nil || id != "" {
		return id, err
	}
	req := clsapi.NewCreateLogsetRequest()
	req.LogsetName = common.StringPtr(name)
	resp, err := p.client.CreateLogsetWithContext(ctx, req)
	if conflict(err) {
		return p.findAfterConflict(ctx, "logset", func() (string, error) { return p.findLogset(ctx, name) })
	}
	if err != nil {
		return "", fmt.Errorf("CreateLogset: %w", err)
	}
	p.logger.Info("cls: logset created", "logset", name, "logset_id", *resp.Response.LogsetId)
	return *resp.Response.LogsetId, nil
}

func (p *Provisioner) findTopic(ctx context.Context, logsetID, name string) (string, error) {
	req := clsapi.NewDescribeTopicsRequest()
	req.Filters = []*clsapi.Filter{
		{Key: common.StringPtr("topicName"), Values: common.StringPtrs([]string{name})},
		{Key: common.StringPtr("logsetId"), Values: common.StringPtrs([]string{logsetID})},
	}
	req.PreciseSearch = common.Uint64Ptr(1)
	resp, err := p.client.DescribeTopicsWithContext(ctx, req)
	if err != nil {
		return "", fmt.Errorf("DescribeTopics: %w", err)
	}
	for _, t := range resp.Response.Topics {
		if t.TopicName != nil && *t.TopicName == name && t.TopicId != nil {
			return *t.TopicId, nil
		}
	}
	return "", nil
}

func (p *Provisioner) ensureTopic(ctx context.Context, logsetID, name string) (id string, created bool, err error) {
	if id, err := p.findTopic(ctx, logsetID, name); err != nil || id != "" {
		return id, false, err
	}
	req := clsapi.NewCreateTopicRequest()
	req.LogsetId, req.TopicName = common.StringPtr(logsetID), common.StringPtr(name)
	req.AutoSplit = common.BoolPtr(true) // CLS splits partitions when writes outgrow them
	resp, err := p.client.CreateTopicWithContext(ctx, req)
	if conflict(err) {
		// Another replica created it; it creates the index too.
		id, err := p.findAfterConflict(ctx, "topic", func() (string, error) { return p.findTopic(ctx, logsetID, name) })
		return id, false, err
	}
	if err != nil {
		return "", false, fmt.Errorf("CreateTopic: %w", err)
	}
	p.logger.Info("cls: topic created", "topic", name, "topic_id", *resp.Response.TopicId)
	return *resp.Response.TopicId, true, nil
}

func (p *Provisioner) findAfterConflict(ctx context.Context, what string, find func() (string, error)) (string, error) {
	id, err := find()
	if err == nil && id == "" {
		err = fmt.Errorf("the API says the %s exists but does not list it", what)
	}
	return id, err
}

// tokenizer is CLS's default separator set (with real control
// characters, as the API expects).
const tokenizer = "@&()='\",;:<>[]{}/ \n\t\r"

// AuditIndexKeys are the key-value index of an audit topic: the fields
// people filter and aggregate on (CLS allows 300 keys; bodies stay
// full-text only).
var AuditIndexKeys = map[string]string{
	"auditID": "text", "stage": "text", "level": "text", "verb": "text", "requestURI": "text",
	"user.username": "text", "user.groups": "text", "impersonatedUser.username": "text",
	"sourceIPs": "text", "userAgent": "text",
	"objectRef.resource": "text", "objectRef.subresource": "text", "objectRef.namespace": "text",
	"objectRef.name": "text", "objectRef.apiGroup": "text", "objectRef.apiVersion": "text",
	"responseStatus.code": "long", "responseStatus.reason": "text",
	"annotations.authorization.k8s.io/decision": "text", "annotations.authorization.k8s.io/reason": "text",
	"auditpipe.cluster": "text", "auditpipe.source": "text",
	// Decision 0012: CLS keeps duplicates, so searches group by the
	// identity, and the reuse marker is something to alert on.
	"auditpipe.contentHash": "text", "auditpipe.auditIDReused": "text",
}

func (p *Provisioner) createIndex(ctx context.Context, topicID string) error {
	req := clsapi.NewCreateIndexRequest()
	req.TopicId = common.StringPtr(topicID)
	req.Status = common.BoolPtr(true)
	rule := &clsapi.RuleInfo{
		FullText: &clsapi.FullTextInfo{CaseSensitive: common.BoolPtr(false), Tokenizer: common.StringPtr(tokenizer), ContainZH: common.BoolPtr(false)},
		KeyValue: &clsapi.RuleKeyValueInfo{CaseSensitive: common.BoolPtr(false)},
	}
	for _, k := range sortedKeys(AuditIndexKeys) {
		v := &clsapi.ValueInfo{Type: common.StringPtr(AuditIndexKeys[k]), SqlFlag: common.BoolPtr(true)}
		if AuditIndexKeys[k] == "text" {
			v.Tokenizer = common.StringPtr(tokenizer)
		}
		rule.KeyValue.KeyValues = append(rule.KeyValue.KeyValues, &clsapi.KeyValueInfo{Key: common.StringPtr(k), Value: v})
	}
	req.Rule = rule
	_, err := p.client.CreateIndexWithContext(ctx, req)
	if conflict(err) {
		return nil // an index exists; ours or an operator's, it is kept
	}
	if err != nil {
		return fmt.Errorf("CreateIndex: %w", err)
	}
	p.logger.Info("cls: index created", "topic_id", topicID, "keys", len(AuditIndexKeys))
	return nil
}

// conflict reports the "already exists" errors of the Create calls.
func conflict(err error) bool {
	var e *tcerr.TencentCloudSDKError
	return errors.As(err, &e) && strings.HasSuffix(e.GetCode(), "Conflict")
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
