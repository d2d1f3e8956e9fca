// Command producer is auditpipe's edge producer: it receives audit events
// from kube-apiserver's webhook backend and follows its audit log file,
// and publishes one Kafka record per event to the raw topic. All wiring is
// in package app, the command scaffolding in internal/cli; this file names
// the commands and flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/auditpipe/auditpipe/internal/cli"
	"github.com/auditpipe/auditpipe/producer/app"
	"github.com/auditpipe/auditpipe/producer/auth"
	"github.com/auditpipe/auditpipe/producer/webhook"
)

const usage = `producer: auditpipe's edge producer.

It accepts kube-apiserver audit events two ways and writes each event, with
the bytes as sent, to the Kafka raw topic (keyed by auditID; cluster, source,
receive time and schema version in headers):

  webhook   POST /v1/audit/<cluster> with an audit.k8s.io EventList, as the
            apiserver's --audit-webhook-config-file sends it. A batch is
            answered 2xx only once Kafka acknowledged it or it is fsynced in
            the local spool (drained to Kafka in order when Kafka is back).
            Callers authenticate with a TLS client certificate (its CN is the
            cluster id) or a bearer token (tokens file: token,cluster); a
            credential only writes to its own cluster.
  tail      follows --audit-log-path files through rotation, with a durable
            checkpoint advanced after Kafka acknowledged.
`

var stage = cli.Stage[app.Config, *app.Config]{
	Name:     "producer",
	Usage:    usage + "\nUsage: producer run|validate [--config FILE] [flags]",
	Defaults: app.DefaultConfig,
	Flags:    flags,
	Check:    func(c *app.Config) error { return app.Check(*c) },
	New: func(_ context.Context, cfg *app.Config, env cli.Env) (cli.App, error) {
		return app.New(*cfg, app.Deps{Registry: env.Registry, Health: env.Health, Logger: env.Logger})
	},
}

func main() { program().Main() }

func program() *cli.Program {
	return &cli.Program{Name: "producer", Doc: usage, Default: "run", Commands: append(stage.Commands(),
		cli.Command{Name: "kubeconfig", Summary: "print the apiserver's webhook config for a cluster", Run: kubeconfig},
		cli.Command{Name: "dev-certs", Summary: "write a self-signed CA, server and client certs (tests, local runs)", Run: devCerts},
		cli.Command{Name: "token-digest", Summary: "print the sha256: form of a token for the tokens file", Run: tokenDigest},
	)}
}

func flags(fs *flag.FlagSet, cfg *app.Config) {
	cfg.Kafka.RegisterFlags(fs)
	offable := func(dst *string) func(string) error {
		return func(v string) error {
			if v == "off" {
				v = ""
			}
			*dst = v
			return nil
		}
	}
	fs.Func("webhook-listen", "webhook `host:port`; \"off\" disables the receiver (webhook.listen, default "+cfg.Webhook.Listen+")", offable(&cfg.Webhook.Listen))
	fs.StringVar(&cfg.Tail.Path, "audit-log-path", cfg.Tail.Path, "apiserver audit log `file` to follow, its --audit-log-path (tail.path)")
	fs.StringVar(&cfg.Tail.Cluster, "cluster", cfg.Tail.Cluster, "cluster `id` of the audit log's events (tail.cluster)")
	fs.StringVar(&cfg.DataDir, "data-dir", cfg.DataDir, "`dir` for the spool and the tail checkpoint (dataDir)")
	fs.BoolVar(&cfg.Webhook.AllowInsecure, "allow-insecure", cfg.Webhook.AllowInsecure, "allow plain HTTP or unauthenticated requests on a non-loopback webhook address (webhook.allowInsecure)")
}

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
