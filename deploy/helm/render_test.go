package helm

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// HelmVersion is the helm the tests (and `make helm-tools`) install from
// the Go module proxy.
const HelmVersion = "v3.19.0"

// kubeVersion is what helm renders for: a helm built with `go install`
// has no version stamped in and assumes Kubernetes 1.20, below the
// chart's kubeVersion.
const kubeVersion = "1.31.0"

func repoRoot(t testing.TB) string {
	t.Helper()
	abs, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

func chartDir(t testing.TB) string { return filepath.Join(repoRoot(t), "deploy", "helm", "auditpipe") }

var (
	helmOnce sync.Once
	helmPath string
	helmErr  error
)

// helmBinary returns the helm binary under .cache/tools/bin, building it
// from the module proxy the first time (the same as `make helm-tools`).
// The chart tests cannot run without it, so a failure fails the test.
func helmBinary(t testing.TB) string {
	t.Helper()
	helmOnce.Do(func() {
		// The same path as the Makefile's $(HELM).
		bin := filepath.Join(repoRoot(t), ".cache", "tools", HelmVersion)
		helmPath = filepath.Join(bin, "helm")
		if _, err := os.Stat(helmPath); err == nil {
			return
		}
		cmd := exec.Command("go", "install", "helm.sh/helm/v3/cmd/helm@"+HelmVersion)
		cmd.Env = append(os.Environ(), "GOBIN="+bin, "GOWORK=off", "GOFLAGS=-buildvcs=false")
		if out, err := cmd.CombinedOutput(); err != nil {
			helmErr = fmt.Errorf("go install helm %s: %v\n%s", HelmVersion, err, out)
		}
	})
	if helmErr != nil {
		t.Fatal(helmErr)
	}
	return helmPath
}

// helmRun runs helm with args and returns stdout, or the error with
// stderr.
func helmRun(t testing.TB, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(helmBinary(t), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("helm %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// scenarios are the values files under testdata, each a supported way to
// install the chart.
var scenarios = []string{"minimal", "cls-only", "local-keda", "strimzi", "daemonset"}

func valuesFile(t testing.TB, scenario string) string {
	return filepath.Join(repoRoot(t), "deploy", "helm", "testdata", scenario+".yaml")
}

// renderArgs renders the chart as release "t" in namespace "audit".
func renderArgs(t testing.TB, extra ...string) []string {
	return append([]string{"template", "t", chartDir(t), "--namespace", "audit", "--kube-version", kubeVersion}, extra...)
}

// object is one rendered document: its kind and the JSON of it.
type object struct {
	APIVersion string
	Kind       string
	Name       string
	JSON       []byte
}

// render runs helm template with the scenario's values (and extra --set
// flags) and splits the output into objects.
func render(t testing.TB, scenario string, set ...string) []object {
	t.Helper()
	args := renderArgs(t, "-f", valuesFile(t, scenario))
	for _, s := range set {
		args = append(args, "--set", s)
	}
	out, err := helmRun(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	return splitObjects(t, out)
}

func splitObjects(t testing.TB, manifest string) []object {
	t.Helper()
	r := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(manifest)))
	var objs []object
	for {
		doc, err := r.Read()
		if err != nil {
			if err.Error() == "EOF" {
				return objs
			}
			t.Fatalf("split manifest: %v", err)
		}
		js, err := yaml.YAMLToJSON(doc)
		if err != nil {
			t.Fatalf("rendered YAML does not parse: %v\n%s", err, doc)
		}
		if string(js) == "null" {
			continue
		}
		var meta struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := json.Unmarshal(js, &meta); err != nil {
			t.Fatalf("object header: %v\n%s", err, doc)
		}
		objs = append(objs, object{meta.APIVersion, meta.Kind, meta.Metadata.Name, js})
	}
}

// decodeStrict decodes JSON into out, failing on fields out does not have.
func decodeStrict(js []byte, out any) error {
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(out); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("trailing data")
	}
	return nil
}
