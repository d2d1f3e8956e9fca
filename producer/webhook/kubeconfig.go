package webhook

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"os"
	"text/template"
)

// kubeconfigTemplate is the file kube-apiserver reads with
// --audit-webhook-config-file: a kubeconfig whose cluster server is the
// receiver's URL for one cluster, with the credential bound to it.
var kubeconfigTemplate = template.Must(template.New("kubeconfig").Parse(`# kube-apiserver --audit-webhook-config-file for cluster {{.Cluster}}.
# Pair it with --audit-policy-file and, for batching, the defaults of
# --audit-webhook-mode=batch.{{if .Token}}
# It holds a bearer token: keep it readable by the apiserver only.{{end}}{{if .Key}}
# It holds a private key: keep it readable by the apiserver only.{{end}}
apiVersion: v1
kind: Config
clusters:
- name: auditpipe
  cluster:
    server: {{.Server}}{{if .CA}}
    certificate-authority-data: {{.CA}}{{end}}
contexts:
- name: auditpipe
  context:
    cluster: auditpipe
    user: kube-apiserver
current-context: auditpipe
users:
- name: kube-apiserver
  user:{{if or .Cert .Token}}{{if .Cert}}
    client-certificate-data: {{.Cert}}
    client-key-data: {{.Key}}{{end}}{{if .Token}}
    token: {{.Token}}{{end}}{{else}} {}{{end}}
`))

// KubeconfigOptions describe the webhook kubeconfig of one cluster.
type KubeconfigOptions struct {
	// Server is the receiver's base URL, e.g. https://audit.example:8443.
	Server string
	// Cluster is the cluster id; the credential must be bound to it.
	Cluster string
	// CAFile is the PEM CA that signed the receiver's server certificate
	// (embedded as certificate-authority-data).
	CAFile string
	// ClientCertFile and ClientKeyFile are the cluster's client
	// certificate (CN = cluster id) and key, embedded as data.
	ClientCertFile, ClientKeyFile string
	// Token is the cluster's bearer token.
	Token string
}

// WriteKubeconfig returns the webhook kubeconfig for o.
func WriteKubeconfig(o KubeconfigOptions) ([]byte, error) {
	if !ValidClusterID(o.Cluster) {
		return nil, fmt.Errorf("kubeconfig: cluster id %q is not valid", o.Cluster)
	}
	u, err := url.Parse(o.Server)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return nil, fmt.Errorf("kubeconfig: server %q is not an absolute URL", o.Server)
	}
	if (o.ClientCertFile == "") != (o.ClientKeyFile == "") {
		return nil, errors.New("kubeconfig: client certificate and key go together")
	}
	if u.Scheme == "http" && (o.ClientCertFile != "" || o.CAFile != "") {
		return nil, fmt.Errorf("kubeconfig: server %q is plain http; certificates need https", o.Server)
	}
	data := map[string]string{"Cluster": o.Cluster, "Server": u.JoinPath(PathPrefix, o.Cluster).String(), "Token": o.Token}
	for key, path := range map[string]string{"CA": o.CAFile, "Cert": o.ClientCertFile, "Key": o.ClientKeyFile} {
		if path == "" {
			continue
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("kubeconfig: %w", err)
		}
		data[key] = base64.StdEncoding.EncodeToString(b)
	}
	var b bytes.Buffer
	if err := kubeconfigTemplate.Execute(&b, data); err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	return b.Bytes(), nil
}

// Kubeconfig returns the webhook kubeconfig pointing an apiserver of
// cluster at the receiver whose base URL is base (for example
// http://127.0.0.1:8090), without credentials: for a receiver that trusts
// the path (loopback).
func Kubeconfig(base, cluster string) ([]byte, error) {
	return WriteKubeconfig(KubeconfigOptions{Server: base, Cluster: cluster})
}
