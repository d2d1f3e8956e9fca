package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/auditpipe/auditpipe/internal/cli"
	"github.com/auditpipe/auditpipe/producer/auth"
	"github.com/auditpipe/auditpipe/producer/webhook"
)

// The producer's setup commands: kubeconfig, dev-certs, token-digest.

func tokenDigest(_ context.Context, args []string, stdout, _ io.Writer) error {
	fs := cli.NewFlagSet("producer token-digest", "Usage: producer token-digest TOKEN\n\nPrints the sha256: form of TOKEN for the tokens file.", stdout)
	if err := cli.Parse(fs, args, true); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("token-digest: want exactly one token")
	}
	_, err := fmt.Fprintln(stdout, auth.Digest(fs.Arg(0)))
	return err
}

func kubeconfig(_ context.Context, args []string, stdout, _ io.Writer) error {
	fs := cli.NewFlagSet("producer kubeconfig", `Usage: producer kubeconfig --server URL --cluster ID [--ca FILE] [--client-cert FILE --client-key FILE | --token TOKEN]

Prints the kubeconfig for kube-apiserver's --audit-webhook-config-file: the
receiver's URL for the cluster, the CA that signed the receiver's
certificate, and the cluster's credential (embedded as data).`, stdout)
	var o webhook.KubeconfigOptions
	fs.StringVar(&o.Server, "server", "", "receiver base `URL`, e.g. https://audit.example.com:8443")
	fs.StringVar(&o.Cluster, "cluster", "", "cluster `id`; the credential must be bound to it")
	fs.StringVar(&o.CAFile, "ca", "", "PEM `file` of the CA of the receiver's server certificate")
	fs.StringVar(&o.ClientCertFile, "client-cert", "", "PEM client certificate `file` (CN = cluster id)")
	fs.StringVar(&o.ClientKeyFile, "client-key", "", "PEM client key `file`")
	fs.StringVar(&o.Token, "token", "", "bearer `token` bound to the cluster in the tokens file")
	if err := cli.Parse(fs, args, false); err != nil {
		return err
	}
	kc, err := webhook.WriteKubeconfig(o)
	if err != nil {
		return err
	}
	_, err = stdout.Write(kc)
	return err
}

func devCerts(_ context.Context, args []string, stdout, _ io.Writer) error {
	fs := cli.NewFlagSet("producer dev-certs", `Usage: producer dev-certs --dir DIR [--host H]... [--cluster ID]...

Writes a self-signed CA (ca.crt, ca.key), a server certificate for the hosts
(server.crt, server.key) and a client certificate per cluster
(client-<cluster>.crt/.key, CN = cluster id) into DIR. For tests and local
runs only: the CA key sits next to the certificates.`, stdout)
	dir := fs.String("dir", "", "output `dir`")
	var hosts, clusters []string
	fs.Var(cli.NewListValue(&hosts), "host", "server `name or IP` (repeatable; default 127.0.0.1 and localhost)")
	fs.Var(cli.NewListValue(&clusters), "cluster", "cluster `id` to issue a client certificate for (repeatable)")
	if err := cli.Parse(fs, args, false); err != nil {
		return err
	}
	if *dir == "" {
		return errors.New("dev-certs: --dir is required")
	}
	if len(hosts) == 0 {
		hosts = []string{"127.0.0.1", "localhost"}
	}
	for _, c := range clusters {
		if !webhook.ValidClusterID(c) {
			return fmt.Errorf("dev-certs: cluster id %q is not valid", c)
		}
	}
	p, err := auth.GenerateDevPKI(*dir, hosts, clusters)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "CA:     %s\nserver: %s %s\n", p.CAFile, p.ServerCertFile, p.ServerKeyFile)
	for _, c := range clusters {
		fmt.Fprintf(stdout, "client %s: %s %s\n", c, p.Clients[c].CertFile, p.Clients[c].KeyFile)
	}
	return nil
}
