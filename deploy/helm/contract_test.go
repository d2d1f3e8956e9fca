package helm

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	capp "github.com/auditpipe/auditpipe/consumer/app"
	"github.com/auditpipe/auditpipe/internal/cli"
	"github.com/auditpipe/auditpipe/internal/kafka"
	papp "github.com/auditpipe/auditpipe/processor/app"
	"github.com/auditpipe/auditpipe/processor/detect"
	"github.com/auditpipe/auditpipe/processor/policies"
	"github.com/auditpipe/auditpipe/processor/policy"
	prodapp "github.com/auditpipe/auditpipe/producer/app"
)

// The stage config files the chart renders are checked against the stages
// themselves (issue #15): each is decoded strictly with the stage's own
// loader (cli.LoadConfig into producer/app, processor/app and consumer/app
// Config), and then the real `<stage> validate --config FILE` runs on it,
// built from this checkout, in a directory where every file the pod mounts
// is: the chart's ConfigMaps as rendered, the user's Secrets from fixtures
// (a CA, a certificate and key signed by it, passwords and tokens).

var (
	stagesOnce sync.Once
	stagesDir  string
	stagesErr  error
)

// TestMain removes the stage binaries built for the tests.
func TestMain(m *testing.M) {
	code := m.Run()
	if stagesDir != "" {
		os.RemoveAll(stagesDir)
	}
	os.Exit(code)
}

// stageBinary returns the path of stage's binary, building all three the
// first time.
func stageBinary(t testing.TB, stage string) string {
	t.Helper()
	stagesOnce.Do(func() {
		if stagesDir, stagesErr = os.MkdirTemp("", "auditpipe-stages-"); stagesErr != nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", stagesDir+string(filepath.Separator),
			"./producer/cmd/producer", "./processor/cmd/processor", "./consumer/cmd/consumer")
		cmd.Dir = repoRoot(t)
		if out, err := cmd.CombinedOutput(); err != nil {
			stagesErr = fmt.Errorf("build the stage binaries: %v\n%s", err, out)
		}
	})
	if stagesErr != nil {
		t.Fatal(stagesErr)
	}
	return filepath.Join(stagesDir, stage)
}

// checkStageConfig decodes a stage's rendered config file strictly with
// the stage's own types and loader, checks the chart's own rules on it
// (no inline secrets, metrics on every interface, every file mounted),
// and runs the stage's validate command on it in a materialized pod.
func checkStageConfig(t *testing.T, stage string, data []byte, c corev1.Container, spec corev1.PodSpec, cms map[string]*corev1.ConfigMap) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
	var (
		conn   kafka.Connection
		common cli.Common
	)
	switch stage {
	case "producer":
		cfg := prodapp.DefaultConfig()
		if err := cli.LoadConfig(file, &cfg); err != nil {
			t.Fatalf("producer config: %v\n%s", err, data)
		}
		conn, common = cfg.Kafka.Connection, cfg.Common
		if cfg.Webhook.Listen != "" && cfg.Webhook.TLS.CertFile == "" && !cfg.Webhook.AllowInsecure {
			t.Errorf("producer webhook without TLS:\n%s", data)
		}
	case "processor":
		cfg := papp.DefaultConfig()
		if err := cli.LoadConfig(file, &cfg); err != nil {
			t.Fatalf("processor config: %v\n%s", err, data)
		}
		conn, common = cfg.Kafka, cfg.Common
		checkPolicies(t, cfg.RulesFile, c, spec, cms)
	case "consumer":
		cfg := capp.DefaultConfig()
		if err := cli.LoadConfig(file, &cfg); err != nil {
			t.Fatalf("consumer config: %v\n%s", err, data)
		}
		conn, common = cfg.Kafka, cfg.Common
		if cfg.CLS.SecretID != "" || cfg.CLS.SecretKey != "" || cfg.API.Token != "" {
			t.Errorf("consumer config holds a secret inline:\n%s", data)
		}
		if cfg.Local.Enabled && !strings.HasPrefix(cfg.Local.Path, "/var/lib/auditpipe/") {
			t.Errorf("local.path %s is not on the data volume", cfg.Local.Path)
		}
	default:
		t.Fatalf("unknown stage %s", stage)
	}
	if conn.SASL.Password != "" {
		t.Errorf("%s: Kafka password inline", stage)
	}
	if !strings.HasPrefix(common.Metrics.Listen, ":") {
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
	if out, err := validateInPod(t, stage, c, spec, cms); err != nil {
		t.Errorf("%v", err)
	} else if !strings.Contains(out, stage+": config is valid") {
		t.Errorf("%s validate printed %q", stage, out)
	}
}

// validateInPod runs `<stage> validate` with the container's arguments in
// a directory that stands for the container's file system: each mount
// under root, holding the rendered ConfigMap files or fixtures for the
// Secret files the config names. Absolute paths under a mount, in the
// config and the other YAML files of ConfigMaps (the fleet registry), are
// moved under root; nothing else is changed.
func validateInPod(t *testing.T, stage string, c corev1.Container, spec corev1.PodSpec, cms map[string]*corev1.ConfigMap) (string, error) {
	t.Helper()
	root := t.TempDir()
	vols := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		vols[v.Name] = v
	}
	mounts := map[string]corev1.Volume{} // mount path -> volume (zero for claim templates)
	for _, m := range c.VolumeMounts {
		mounts[m.MountPath] = vols[m.Name]
		if err := os.MkdirAll(filepath.Join(root, m.MountPath), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	underMount := func(p string) (string, bool) {
		for mp := range mounts {
			if strings.HasPrefix(p, mp+"/") {
				return mp, true
			}
		}
		return "", false
	}
	// Paths under a mount move under root; the ones in Secret mounts are
	// the secret files to materialize.
	secretFiles := map[string]bool{}
	var rewrite func(v any) any
	rewrite = func(v any) any {
		switch x := v.(type) {
		case string:
			if mp, ok := underMount(x); ok {
				if mounts[mp].Secret != nil {
					secretFiles[x] = true
				}
				return filepath.Join(root, x)
			}
		case map[string]any:
			for k, sub := range x {
				x[k] = rewrite(sub)
			}
		case []any:
			for i := range x {
				x[i] = rewrite(x[i])
			}
		}
		return v
	}
	for _, m := range c.VolumeMounts {
		v := mounts[m.MountPath]
		if v.ConfigMap == nil {
			continue
		}
		cm := cms[v.ConfigMap.Name]
		if cm == nil {
			return "", fmt.Errorf("%s: ConfigMap %s is not rendered", stage, v.ConfigMap.Name)
		}
		for name, body := range cm.Data {
			if len(v.ConfigMap.Items) > 0 {
				i := slices.IndexFunc(v.ConfigMap.Items, func(k corev1.KeyToPath) bool { return k.Key == name })
				if i < 0 {
					continue
				}
				name = v.ConfigMap.Items[i].Path
			}
			out := []byte(body)
			if ext := path.Ext(name); ext == ".yaml" || ext == ".yml" {
				// Rewritten as JSON, which YAML includes, with the
				// numbers as written.
				if js, err := yaml.YAMLToJSON(out); err == nil {
					dec := json.NewDecoder(bytes.NewReader(js))
					dec.UseNumber()
					var tree any
					if dec.Decode(&tree) == nil {
						if js, err = json.Marshal(rewrite(tree)); err != nil {
							t.Fatal(err)
						}
						out = js
					}
				}
			}
			if err := os.WriteFile(filepath.Join(root, m.MountPath, name), out, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	for file := range secretFiles {
		mp, _ := underMount(file)
		rel := strings.TrimPrefix(file, mp+"/")
		if items := mounts[mp].Secret.Items; len(items) > 0 && !slices.ContainsFunc(items, func(k corev1.KeyToPath) bool { return k.Path == rel }) {
			continue // not projected: the stage finds no file
		}
		dst := filepath.Join(root, file)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, secretFixture(t, path.Base(file)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	args := append([]string{"validate"}, c.Command[2:]...)
	args = append(args, c.Args...)
	for i, a := range args {
		if _, ok := underMount(a); ok {
			args[i] = filepath.Join(root, a)
		}
	}
	cmd := exec.Command(stageBinary(t, stage), args...)
	cmd.Dir = root
	// The container's environment, not the test's.
	cmd.Env = []string{"HOME=" + root, "PATH=/usr/bin:/bin"}
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			cmd.Env = append(cmd.Env, e.Name+"="+e.Value)
		}
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %v\n%s", stage, strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

var (
	fixturesOnce sync.Once
	fixtures     map[string][]byte
)

// secretFixture returns the content of a Secret key the chart mounts, by
// its file name: the chart documents these keys (Strimzi's ca.crt,
// user.crt, user.key, password; kubernetes.io/tls's tls.crt, tls.key; the
// API token, the webhook tokens file, the CLS key pair).
func secretFixture(t *testing.T, name string) []byte {
	t.Helper()
	fixturesOnce.Do(func() { fixtures = makeFixtures(t) })
	b, ok := fixtures[name]
	if !ok {
		t.Fatalf("no fixture for a Secret file named %s; add one to makeFixtures", name)
	}
	return b
}

func makeFixtures(t *testing.T) map[string][]byte {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "fixture CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "prod-eu-1"},
		DNSNames:  []string{"auditpipe.audit.svc"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leafDER})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	return map[string][]byte{
		"ca.crt": caPEM, "tls.crt": certPEM, "tls.key": keyPEM, "user.crt": certPEM, "user.key": keyPEM,
		"password":  []byte("fixture-kafka-password\n"),
		"token":     []byte("fixture-api-token-0123456789\n"),
		"tokens":    []byte("fixture-webhook-token-0123456789,prod-eu-1\n"),
		"secretID":  []byte("AKIDfixture\n"),
		"secretKey": []byte("fixture-secret-key\n"),
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

// checkPolicies loads every policy and the rules file the processor has
// mounted, with the processor's own loaders: validate loads only the ones
// the fleet registry names, a policy for a cluster added later must load
// too.
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

// TestBuiltinPolicyCopy: the chart's tke-default.yaml, the default policy
// when fleet.defaults.policy is unset, is the processor's built-in one.
func TestBuiltinPolicyCopy(t *testing.T) {
	chartCopy, err := os.ReadFile(filepath.Join(chartDir(t), "files", "tke-default.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(chartCopy, policies.TKEDefault) {
		t.Fatal("deploy/helm/auditpipe/files/tke-default.yaml differs from processor/policies/tke-default.yaml: copy it again")
	}
	fleetYAML := configMaps(decodeAll(t, render(t, "minimal")))["t-auditpipe-fleet"].Data["fleet.yaml"]
	if !strings.Contains(fleetYAML, "policy: /etc/auditpipe/policies/tke-default.yaml") {
		t.Errorf("without fleet.defaults.policy the fleet registry does not name tke-default.yaml:\n%s", fleetYAML)
	}
}

// TestValidateInPodRejects: the stage's validate, run as the chart tests
// run it, refuses what the pod would refuse: an unknown key, a file the
// Secret does not project, a listener the stage does not accept.
func TestValidateInPodRejects(t *testing.T) {
	for _, c := range []struct {
		name, stage, set, want string
	}{
		{"unknown key", "processor", "processor.extraConfig.reloadIntervall=1m", `unknown field "reloadIntervall"`},
		{"file not projected", "consumer", "consumer.extraConfig.kafka.tls.caFile=/etc/auditpipe/kafka/ca/other.crt", "other.crt"},
		{"bad duration", "producer", "producer.extraConfig.webhook.publishTimeout=20", "duration"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := decodeAll(t, render(t, "minimal", c.set))
			for _, w := range workloads(r) {
				ctr := w.pod.Spec.Containers[0]
				if path.Base(ctr.Command[0]) != c.stage {
					continue
				}
				_, err := validateInPod(t, c.stage, ctr, w.pod.Spec, configMaps(r))
				if err == nil || !strings.Contains(err.Error(), c.want) {
					t.Fatalf("validate with %s: %v, want an error saying %q", c.set, err, c.want)
				}
				return
			}
			t.Fatalf("no %s workload", c.stage)
		})
	}
}
