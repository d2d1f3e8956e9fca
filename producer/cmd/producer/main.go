// Command producer is auditpipe's edge producer: it receives audit events
// from kube-apiserver's webhook backend and follows its audit log file,
// and publishes one Kafka record per event to the raw topic. All wiring is
// in package app, the command scaffolding in internal/cli; this file names
// the commands and flags.
package main

import (
	"context"
	"flag"

	"github.com/auditpipe/auditpipe/internal/cli"
	"github.com/auditpipe/auditpipe/producer/app"
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
