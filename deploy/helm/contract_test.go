package helm

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/auditpipe/auditpipe/internal/config"
	"github.com/auditpipe/auditpipe/internal/fleet"
	"github.com/auditpipe/auditpipe/processor/detect"
	"github.com/auditpipe/auditpipe/processor/policy"
	"github.com/auditpipe/auditpipe/schemas"
)

// The stage config files as CONTRACT.md (issue #15) defines them. The
// stage binaries' own types for the shared keys (kafka.tls, kafka.sasl,
// metrics, shutdownTimeout, the processor's YAML) are being written on
// the `stage` branch at the same time as this chart; until they are on
// main these mirror the contract. Keys that exist on main today use the
// real types (schemas.Topics), so drift there fails here.
//
// TODO(#15): once the stage branch is merged, decode into
// producer/app.Config, consumer/app.Config and the processor's config
// type instead of the mirrors below.

type contractKafka struct {
	Brokers         []string `json:"brokers"`
	ClientID        string   `json:"clientID"`
	MaxMessageBytes int      `json:"maxMessageBytes,omitempty"` // producer only
	TLS             struct {
		Enabled            bool   `json:"enabled"`
		CAFile             string `json:"caFile"`
		CertFile           string `json:"certFile"`
		KeyFile            string `json:"keyFile"`
		ServerName         string `json:"serverName"`
		InsecureSkipVerify bool   `json:"insecureSkipVerify"`
	} `json:"tls"`
	SASL struct {
		Mechanism    string `json:"mechanism"`
		Username     string `json:"username"`
		Password     string `json:"password"`
		PasswordFile string `json:"passwordFile"`
	} `json:"sasl"`
}

type contractCommon struct {
	Kafka contractKafka `json:"kafka"`
	Log   struct {
		Level  string `json:"level"`
		Format string `json:"format"`
	} `json:"log"`
	Metrics struct {
		Listen string `json:"listen"`
	} `json:"metrics"`
	ShutdownTimeout config.Duration `json:"shutdownTimeout"`
}

type producerConfig struct {
	contractCommon
	DataDir string         `json:"dataDir"`
	Topics  schemas.Topics `json:"topics"`
	Webhook struct {
		Listen        string `json:"listen"`
		AllowInsecure bool   `json:"allowInsecure"`
		TLS           struct {
			CertFile     string `json:"certFile"`
			KeyFile      string `json:"keyFile"`
			ClientCAFile string `json:"clientCAFile"`
		} `json:"tls"`
		TokensFile string `json:"tokensFile"`
	} `json:"webhook"`
	Spool struct {
		MaxBytes int64 `json:"maxBytes"`
	} `json:"spool"`
	Tail struct {
		Path    string `json:"path"`
		Cluster string `json:"cluster"`
	} `json:"tail"`
}

type processorConfig struct {
	contractCommon
	Group           string          `json:"group"`
	Policy          string          `json:"policy"`
	Fleet           string          `json:"fleet"`
	Rules           string          `json:"rules"`
	NoDetections    bool            `json:"noDetections"`
	ReloadInterval  config.Duration `json:"reloadInterval"`
	Topics          schemas.Topics  `json:"topics"`
	MaxEventBytes   int             `json:"maxEventBytes"`
	Delivery        string          `json:"delivery"`
	TransactionalID string          `json:"transactionalID"`
	MaxBatch        int             `json:"maxBatch"`
	SessionTimeout  config.Duration `json:"sessionTimeout"`
}

type consumerConfig struct {
	contractCommon
	Group          string          `json:"group"`
	Topic          string          `json:"topic"`
	MaxBatch       int             `json:"maxBatch"`
	SessionTimeout config.Duration `json:"sessionTimeout"`
	Fleet          string          `json:"fleet"`
	Local          struct {
		Enabled           bool            `json:"enabled"`
		Path              string          `json:"path"`
		MaxAge            config.Duration `json:"maxAge"`
		MaxBytes          int64           `json:"maxBytes"`
		RetentionInterval config.Duration `json:"retentionInterval"`
	} `json:"local"`
	CLS struct {
		Mode           string `json:"mode"`
		Endpoint       string `json:"endpoint"`
		Region         string `json:"region"`
		DefaultTopicID string `json:"defaultTopicID"`
		SecretID       string `json:"secretID"`
		SecretIDFile   string `json:"secretIDFile"`
		SecretKey      string `json:"secretKey"`
		SecretKeyFile  string `json:"secretKeyFile"`
	} `json:"cls"`
	API struct {
		Listen        string `json:"listen"`
		Token         string `json:"token"`
		TokenFile     string `json:"tokenFile"`
		AllowInsecure bool   `json:"allowInsecure"`
		TLS           struct {
			CertFile string `json:"certFile"`
			KeyFile  string `json:"keyFile"`
		} `json:"tls"`
	} `json:"api"`
}

// checkStageConfig decodes a stage's rendered config file strictly (with
// the loader the stages use) and checks that every file it names is
// mounted in the container, and that no secret is inline.
func checkStageConfig(t *testing.T, stage string, data []byte, c corev1.Container, spec corev1.PodSpec, cms map[string]*corev1.ConfigMap) {
	t.Helper()
	var common *contractCommon
	switch stage {
	case "producer":
		var cfg producerConfig
		if err := config.Load(data, &cfg); err != nil {
			t.Fatalf("producer config: %v\n%s", err, data)
		}
		common = &cfg.contractCommon
		if cfg.Webhook.Listen == "" && cfg.Tail.Path == "" {
			t.Errorf("producer config does nothing:\n%s", data)
		}
		if cfg.Webhook.Listen != "" && cfg.Webhook.TLS.CertFile == "" && !cfg.Webhook.AllowInsecure {
			t.Errorf("producer webhook without TLS:\n%s", data)
		}
	case "processor":
		var cfg processorConfig
		if err := config.Load(data, &cfg); err != nil {
			t.Fatalf("processor config: %v\n%s", err, data)
		}
		common = &cfg.contractCommon
		if cfg.Delivery == "exactly-once" && cfg.TransactionalID == "" {
			t.Errorf("exactly-once without transactionalID")
		}
		checkFleet(t, cfg.Fleet, c, spec, cms)
		checkPolicies(t, cfg.Rules, c, spec, cms)
	case "consumer":
		var cfg consumerConfig
		if err := config.Load(data, &cfg); err != nil {
			t.Fatalf("consumer config: %v\n%s", err, data)
		}
		common = &cfg.contractCommon
		if cfg.CLS.SecretID != "" || cfg.CLS.SecretKey != "" || cfg.API.Token != "" {
			t.Errorf("consumer config holds a secret inline:\n%s", data)
		}
		if cfg.Local.Enabled && !strings.HasPrefix(cfg.Local.Path, "/var/lib/auditpipe/") {
			t.Errorf("local.path %s is not on the data volume", cfg.Local.Path)
		}
		checkFleet(t, cfg.Fleet, c, spec, cms)
	}
	if common.Kafka.SASL.Password != "" {
		t.Errorf("%s: Kafka password inline", stage)
	}
	if len(common.Kafka.Brokers) == 0 || common.Kafka.ClientID == "" {
		t.Errorf("%s: kafka brokers %v clientID %q", stage, common.Kafka.Brokers, common.Kafka.ClientID)
	}
	if common.Metrics.Listen == "" || !strings.HasPrefix(common.Metrics.Listen, ":") {
		t.Errorf("%s: metrics.listen %q is not on every interface (probes need it)", stage, common.Metrics.Listen)
	}
	// Every absolute path the config names must be there in the pod.
	var generic any
	if err := yaml.Unmarshal(data, &generic); err != nil {
		t.Fatal(err)
	}
	for key, file := range filePaths(generic, "") {
		if strings.HasSuffix(key, "path") || key == "dataDir" {
			continue // written by the stage (store, spool) or read from the host
		}
		if !fileInPod(spec, c, cms, file) {
			t.Errorf("%s: %s is %s, which is not mounted in the container", stage, key, file)
		}
	}
}

// filePaths returns every string value that is an absolute path, by
// dotted key.
func filePaths(v any, prefix string) map[string]string {
	out := map[string]string{}
	switch x := v.(type) {
	case map[string]any:
		for k, sub := range x {
			key := k
			if prefix != "" {
				key = prefix + "." + k
			}
			for kk, vv := range filePaths(sub, key) {
				out[kk] = vv
			}
		}
	case string:
		if strings.HasPrefix(x, "/") {
			out[prefix] = x
		}
	}
	return out
}

// checkFleet loads the mounted fleet registry with the stages' own loader
// and checks that the policies it names are mounted.
func checkFleet(t *testing.T, file string, c corev1.Container, spec corev1.PodSpec, cms map[string]*corev1.ConfigMap) {
	t.Helper()
	if file == "" {
		return
	}
	cm := mountedConfigMap(t, spec, c, cms, file)
	if cm == nil {
		t.Fatalf("fleet registry %s is not mounted", file)
	}
	tmp := filepath.Join(t.TempDir(), "fleet.yaml")
	if err := os.WriteFile(tmp, []byte(cm.Data[filepath.Base(file)]), 0o600); err != nil {
		t.Fatal(err)
	}
	reg, err := fleet.LoadFile(tmp)
	if err != nil {
		t.Fatalf("rendered fleet registry: %v", err)
	}
	policies := []string{reg.Defaults.Policy, reg.Defaults.Rules}
	for _, cl := range reg.Clusters {
		policies = append(policies, cl.Policy)
	}
	for _, p := range policies {
		if p != "" && !fileInPod(spec, c, cms, p) && c.Name == "processor" {
			t.Errorf("fleet registry names %s, which is not mounted in the processor", p)
		}
	}
}

// checkPolicies loads every policy and the rules file the processor has
// mounted, with the processor's own loaders.
func checkPolicies(t *testing.T, rulesFile string, c corev1.Container, spec corev1.PodSpec, cms map[string]*corev1.ConfigMap) {
	t.Helper()
	for _, m := range c.VolumeMounts {
		if m.MountPath != "/etc/auditpipe/policies" {
			continue
		}
		for _, v := range spec.Volumes {
			if v.Name != m.Name || v.ConfigMap == nil {
				continue
			}
			for name, body := range cms[v.ConfigMap.Name].Data {
				file := m.MountPath + "/" + name
				if file == rulesFile {
					tmp := filepath.Join(t.TempDir(), name)
					if err := os.WriteFile(tmp, []byte(body), 0o600); err != nil {
						t.Fatal(err)
					}
					if _, err := detect.LoadDefault(tmp); err != nil {
						t.Errorf("rules %s: %v", file, err)
					}
					continue
				}
				if _, err := policy.Load(name, []byte(body)); err != nil {
					t.Errorf("policy %s: %v", file, err)
				}
			}
		}
	}
	if rulesFile != "" && !fileInPod(spec, c, cms, rulesFile) {
		t.Errorf("rules %s not mounted", rulesFile)
	}
}
