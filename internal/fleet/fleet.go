// Package fleet reads the fleet registry: the file that says which clusters
// exist and what the pipeline knows about each (display name, region,
// environment, owner, policy override, CLS destination). The processor
// uses it to enrich events and pick a cluster's policy; the consumer uses
// it to pick a cluster's CLS topic.
package fleet

import (
	"errors"
	"fmt"
	"regexp"
	"sort"

	"github.com/auditpipe/auditpipe/internal/config"
)

// Registry is the content of a fleet registry file:
//
//	defaults:
//	  policy: /etc/auditpipe/policies/tke-default.yaml
//	  rules: /etc/auditpipe/rules.yaml
//	clusters:
//	  prod-eu-1:
//	    displayName: Production EU 1
//	    region: eu-frankfurt
//	    environment: production
//	    owner: team-platform
//	    policy: /etc/auditpipe/policies/strict.yaml
//	    detections:
//	      disable: [nodeport-service]
//	    cls:
//	      topicID: 0f4a6b3c-...
type Registry struct {
	Defaults Defaults           `json:"defaults"`
	Clusters map[string]Cluster `json:"clusters"`
}

// Defaults apply to clusters that do not say otherwise.
type Defaults struct {
	// Policy is the fleet default audit policy file. Empty means the
	// program's built-in default.
	Policy string `json:"policy"`
	// Rules is the user's detection rules file, added to the shipped
	// rules (a rule with a shipped id replaces it). Empty means the
	// program's setting.
	Rules string `json:"rules"`
}

// Cluster is what the registry knows about one cluster.
type Cluster struct {
	DisplayName string `json:"displayName"`
	Region      string `json:"region"`
	Environment string `json:"environment"`
	Owner       string `json:"owner"`
	// Policy overrides Defaults.Policy for this cluster.
	Policy string `json:"policy"`
	// CLS is where the consumer's CLS sink writes this cluster's events.
	CLS CLSTarget `json:"cls"`
	// Detections switches detection rules on or off for this cluster.
	Detections Detections `json:"detections"`
}

// Detections overrides which detection rules run for a cluster, by rule
// id: Enable switches on rules that are off by default (enabled: false),
// Disable switches off rules that are on.
type Detections struct {
	Enable  []string `json:"enable"`
	Disable []string `json:"disable"`
}

// CLSTarget names a cluster's CLS log topic: either TopicID of an existing
// topic, or Logset and TopicName for a topic the sink may create.
type CLSTarget struct {
	TopicID   string `json:"topicID"`
	Logset    string `json:"logset"`
	TopicName string `json:"topicName"`
}

// clusterID is the one cluster id rule of auditpipe: ids are Kafka keys,
// URL path elements, CLS topic names and file names.
var clusterID = regexp.MustCompile(`^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$`)

// ValidClusterID reports whether id is an acceptable cluster id: 1 to 63
// lower-case letters, digits, '.', '_' or '-', starting and ending with a
// letter or digit. The producer's webhook and tailer, the fleet registry
// and the tools all use it.
func ValidClusterID(id string) bool { return clusterID.MatchString(id) }

// Validate checks cluster ids and CLS targets.
func (r Registry) Validate() error {
	ids := make([]string, 0, len(r.Clusters))
	for id := range r.Clusters {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		if !ValidClusterID(id) {
			return fmt.Errorf("clusters.%s: cluster id must be 1-63 characters of a-z 0-9 . _ -, starting and ending with a letter or digit", id)
		}
		c := r.Clusters[id]
		if c.CLS.TopicID != "" && (c.CLS.Logset != "" || c.CLS.TopicName != "") {
			return fmt.Errorf("clusters.%s.cls: give either topicID or logset and topicName, not both", id)
		}
		if (c.CLS.Logset == "") != (c.CLS.TopicName == "") {
			return fmt.Errorf("clusters.%s.cls: logset and topicName go together", id)
		}
	}
	return nil
}

// Cluster returns what the registry knows about id.
func (r *Registry) Cluster(id string) (Cluster, bool) {
	if r == nil {
		return Cluster{}, false
	}
	c, ok := r.Clusters[id]
	return c, ok
}

// PolicyFor returns the policy file of cluster id: its own, else the
// fleet default, else "" (the built-in default).
func (r *Registry) PolicyFor(id string) string {
	if c, ok := r.Cluster(id); ok && c.Policy != "" {
		return c.Policy
	}
	if r == nil {
		return ""
	}
	return r.Defaults.Policy
}

// LoadFile reads and validates a registry file strictly.
func LoadFile(path string) (*Registry, error) {
	if path == "" {
		return nil, errors.New("fleet registry: empty path")
	}
	var r Registry
	if err := config.LoadFile(path, &r); err != nil {
		return nil, fmt.Errorf("fleet registry: %w", err)
	}
	return &r, nil
}
