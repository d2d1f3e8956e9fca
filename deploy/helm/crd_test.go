package helm

// Minimal strict types for the third-party custom resources the chart
// renders, written from the fields of their CRDs (Strimzi 1.2
// packaging/install/cluster-operator/04{3,4}-Crd-kafka{topic,user}.yaml,
// version v1; KEDA config/crd/bases/keda.sh_{scaledobjects,
// triggerauthentications}.yaml, v1alpha1). Only fields the chart may set
// are here, so that a misspelt one fails the strict decode; enums are
// checked by validate methods.

import (
	"fmt"
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

type kafkaTopic struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        metav1.ObjectMeta `json:"metadata"`
	Spec            struct {
		TopicName  string            `json:"topicName"`
		Partitions int32             `json:"partitions"`
		Replicas   int32             `json:"replicas"`
		Config     map[string]string `json:"config"`
	} `json:"spec"`
}

func (k kafkaTopic) validate() error {
	if k.Metadata.Labels["strimzi.io/cluster"] == "" {
		return fmt.Errorf("KafkaTopic %s: no strimzi.io/cluster label", k.Metadata.Name)
	}
	if k.Spec.Partitions < 1 || k.Spec.Replicas < 1 || k.Spec.Replicas > 32767 {
		return fmt.Errorf("KafkaTopic %s: partitions %d replicas %d", k.Metadata.Name, k.Spec.Partitions, k.Spec.Replicas)
	}
	return nil
}

type kafkaUser struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        metav1.ObjectMeta `json:"metadata"`
	Spec            struct {
		Authentication struct {
			Type string `json:"type"`
		} `json:"authentication"`
		Authorization struct {
			Type string     `json:"type"`
			ACLs []kafkaACL `json:"acls"`
		} `json:"authorization"`
	} `json:"spec"`
}

type kafkaACL struct {
	Type     string `json:"type,omitempty"`
	Resource struct {
		Type        string `json:"type"`
		Name        string `json:"name,omitempty"`
		PatternType string `json:"patternType,omitempty"`
	} `json:"resource"`
	Host       string   `json:"host,omitempty"`
	Operations []string `json:"operations"`
}

func (k kafkaUser) validate() error {
	if !slices.Contains([]string{"tls", "tls-external", "scram-sha-512"}, k.Spec.Authentication.Type) {
		return fmt.Errorf("KafkaUser %s: authentication.type %q", k.Metadata.Name, k.Spec.Authentication.Type)
	}
	if k.Spec.Authorization.Type != "simple" || len(k.Spec.Authorization.ACLs) == 0 {
		return fmt.Errorf("KafkaUser %s: authorization %q with %d acls", k.Metadata.Name, k.Spec.Authorization.Type, len(k.Spec.Authorization.ACLs))
	}
	ops := []string{"Read", "Write", "Create", "Delete", "Alter", "Describe", "ClusterAction", "AlterConfigs", "DescribeConfigs", "IdempotentWrite", "All"}
	for _, a := range k.Spec.Authorization.ACLs {
		if !slices.Contains([]string{"topic", "group", "cluster", "transactionalId"}, a.Resource.Type) {
			return fmt.Errorf("KafkaUser %s: resource type %q", k.Metadata.Name, a.Resource.Type)
		}
		if a.Resource.PatternType != "" && a.Resource.PatternType != "literal" && a.Resource.PatternType != "prefix" {
			return fmt.Errorf("KafkaUser %s: patternType %q", k.Metadata.Name, a.Resource.PatternType)
		}
		if len(a.Operations) == 0 {
			return fmt.Errorf("KafkaUser %s: an ACL without operations", k.Metadata.Name)
		}
		for _, o := range a.Operations {
			if !slices.Contains(ops, o) {
				return fmt.Errorf("KafkaUser %s: operation %q", k.Metadata.Name, o)
			}
		}
	}
	return nil
}

type scaledObject struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        metav1.ObjectMeta `json:"metadata"`
	Spec            struct {
		ScaleTargetRef struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Name       string `json:"name"`
		} `json:"scaleTargetRef"`
		MinReplicaCount *int32 `json:"minReplicaCount"`
		MaxReplicaCount *int32 `json:"maxReplicaCount"`
		PollingInterval *int32 `json:"pollingInterval"`
		CooldownPeriod  *int32 `json:"cooldownPeriod"`
		Triggers        []struct {
			Type              string            `json:"type"`
			Name              string            `json:"name"`
			Metadata          map[string]string `json:"metadata"`
			AuthenticationRef *struct {
				Name string `json:"name"`
				Kind string `json:"kind,omitempty"`
			} `json:"authenticationRef"`
		} `json:"triggers"`
	} `json:"spec"`
}

func (s scaledObject) validate() error {
	if len(s.Spec.Triggers) == 0 {
		return fmt.Errorf("ScaledObject %s: no triggers", s.Metadata.Name)
	}
	if s.Spec.MinReplicaCount != nil && s.Spec.MaxReplicaCount != nil && *s.Spec.MinReplicaCount > *s.Spec.MaxReplicaCount {
		return fmt.Errorf("ScaledObject %s: minReplicaCount > maxReplicaCount", s.Metadata.Name)
	}
	// The Kafka scaler's trigger metadata (pkg/scalers/kafka_scaler.go).
	known := []string{"bootstrapServers", "consumerGroup", "topic", "lagThreshold", "activationLagThreshold",
		"offsetResetPolicy", "allowIdleConsumers", "tls", "sasl", "unsafeSsl", "excludePersistentLag"}
	for _, tr := range s.Spec.Triggers {
		if tr.Type != "kafka" {
			return fmt.Errorf("ScaledObject %s: trigger type %q", s.Metadata.Name, tr.Type)
		}
		for k, v := range tr.Metadata {
			if !slices.Contains(known, k) {
				return fmt.Errorf("ScaledObject %s: kafka trigger metadata %q", s.Metadata.Name, k)
			}
			if k == "sasl" && !slices.Contains([]string{"none", "plaintext", "scram_sha256", "scram_sha512"}, v) {
				return fmt.Errorf("ScaledObject %s: sasl %q", s.Metadata.Name, v)
			}
			if k == "tls" && v != "enable" && v != "disable" {
				return fmt.Errorf("ScaledObject %s: tls %q", s.Metadata.Name, v)
			}
		}
	}
	return nil
}

type triggerAuthentication struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        metav1.ObjectMeta `json:"metadata"`
	Spec            struct {
		SecretTargetRef []struct {
			Parameter string `json:"parameter"`
			Name      string `json:"name"`
			Key       string `json:"key"`
		} `json:"secretTargetRef"`
		Env []struct {
			Parameter     string `json:"parameter"`
			Name          string `json:"name"`
			ContainerName string `json:"containerName"`
		} `json:"env"`
	} `json:"spec"`
}

func (a triggerAuthentication) validate() error { return nil }
