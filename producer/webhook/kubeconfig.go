package webhook

import (
	"bytes"
	"fmt"
	"net/url"
	"text/template"
)

// kubeconfigTemplate is the file kube-apiserver reads with
// --audit-webhook-config-file: a kubeconfig whose cluster server is the
// receiver's URL for one cluster.
var kubeconfigTemplate = template.Must(template.New("kubeconfig").Parse(`# kube-apiserver --audit-webhook-config-file for cluster {{.Cluster}}.
# Pair it with --audit-policy-file and, for batching, the defaults of
# --audit-webhook-mode=batch.
apiVersion: v1
kind: Config
clusters:
- name: auditpipe
  cluster:
    server: {{.Server}}
contexts:
- name: auditpipe
  context:
    cluster: auditpipe
    user: kube-apiserver
current-context: auditpipe
users:
- name: kube-apiserver
  user: {}
`))

// Kubeconfig returns the webhook kubeconfig pointing an apiserver of
// cluster at the receiver whose base URL is base (for example
// http://127.0.0.1:8090).
func Kubeconfig(base, cluster string) ([]byte, error) {
	if !ValidClusterID(cluster) {
		return nil, fmt.Errorf("kubeconfig: cluster id %q is not valid", cluster)
	}
	u, err := url.Parse(base)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return nil, fmt.Errorf("kubeconfig: server %q is not an absolute URL", base)
	}
	u = u.JoinPath(PathPrefix, cluster)
	var b bytes.Buffer
	if err := kubeconfigTemplate.Execute(&b, map[string]string{"Cluster": cluster, "Server": u.String()}); err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	return b.Bytes(), nil
}
