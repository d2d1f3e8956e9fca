// Command producer is auditpipe's edge producer: it receives audit events
// from kube-apiserver's webhook backend and follows its audit log file,
// and publishes one Kafka record per event to the raw topic. All wiring is
// in package app; this file parses flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/auditpipe/auditpipe/internal/telemetry"
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

Usage:
  producer [run] [flags]        run the producer (flags below)
  producer kubeconfig [flags]   print the apiserver's webhook config for a cluster
  producer dev-certs [flags]    write a self-signed CA, server and client certs (tests, local runs)
  producer token-digest TOKEN   print the sha256: form of a token for the tokens file

Run "producer <command> --help" for the flags of a command.

Flags of run:
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "producer:", err)
		os.Exit(2)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "run":
			args = args[1:]
		case "kubeconfig":
			return kubeconfig(args[1:], stdout, stderr)
		case "dev-certs":
			return devCerts(args[1:], stdout, stderr)
		case "token-digest":
			if len(args) != 2 {
				return errors.New("token-digest: want exactly one token")
			}
			fmt.Fprintln(stdout, auth.Digest(args[1]))
			return nil
		}
	}
	fs := flag.NewFlagSet("producer", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	configFile := fs.String("config", "", "YAML config `file` (unknown keys are errors); flags override it")
	brokers := fs.String("brokers", "", "comma-separated Kafka bootstrap `addresses` (default 127.0.0.1:9092)")
	listen := fs.String("webhook-listen", "", "webhook `host:port`; \"off\" disables the receiver (default 127.0.0.1:8090)")
	logPath := fs.String("audit-log-path", "", "apiserver audit log `file` to follow (its --audit-log-path)")
	cluster := fs.String("cluster", "", "cluster `id` of the audit log's events (with --audit-log-path)")
	dataDir := fs.String("data-dir", "", "`dir` for the spool and the tail checkpoint (default data/producer)")
	adminListen := fs.String("admin-listen", "", "`host:port` for /metrics, /healthz, /readyz; \"off\" disables (default 127.0.0.1:9464)")
	allowInsecure := fs.Bool("allow-insecure", false, "allow plain HTTP or unauthenticated requests on a non-loopback webhook address")
	grace := fs.Duration("shutdown-grace", 25*time.Second, "how long in-flight requests may take on SIGTERM")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (see --help)", fs.Arg(0))
	}
	cfg := app.DefaultConfig()
	if *configFile != "" {
		var err error
		if cfg, err = app.Load(*configFile); err != nil {
			return err
		}
	}
	if *brokers != "" {
		cfg.Kafka.Brokers = strings.Split(*brokers, ",")
	}
	set := func(dst *string, v string) {
		switch v {
		case "":
		case "off":
			*dst = ""
		default:
			*dst = v
		}
	}
	set(&cfg.Webhook.Listen, *listen)
	set(&cfg.Admin.Listen, *adminListen)
	set(&cfg.Tail.Path, *logPath)
	set(&cfg.Tail.Cluster, *cluster)
	set(&cfg.DataDir, *dataDir)
	cfg.Webhook.AllowInsecure = cfg.Webhook.AllowInsecure || *allowInsecure
	if err := cfg.Validate(); err != nil {
		return err
	}
	logger, err := telemetry.NewLogger(stderr, cfg.Log.Level, cfg.Log.Format)
	if err != nil {
		return err
	}
	a, err := app.New(cfg, app.Deps{Logger: logger})
	if err != nil {
		return err
	}
	return a.Run(ctx, *grace)
}

func kubeconfig(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("producer kubeconfig", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: producer kubeconfig --server URL --cluster ID [--ca FILE] [--client-cert FILE --client-key FILE | --token TOKEN]

Prints the kubeconfig for kube-apiserver's --audit-webhook-config-file: the
receiver's URL for the cluster, the CA that signed the receiver's
certificate, and the cluster's credential (embedded as data).

`)
		fs.PrintDefaults()
	}
	var o webhook.KubeconfigOptions
	fs.StringVar(&o.Server, "server", "", "receiver base `URL`, e.g. https://audit.example.com:8443")
	fs.StringVar(&o.Cluster, "cluster", "", "cluster `id`; the credential must be bound to it")
	fs.StringVar(&o.CAFile, "ca", "", "PEM `file` of the CA of the receiver's server certificate")
	fs.StringVar(&o.ClientCertFile, "client-cert", "", "PEM client certificate `file` (CN = cluster id)")
	fs.StringVar(&o.ClientKeyFile, "client-key", "", "PEM client key `file`")
	fs.StringVar(&o.Token, "token", "", "bearer `token` bound to the cluster in the tokens file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	kc, err := webhook.WriteKubeconfig(o)
	if err != nil {
		return err
	}
	_, err = stdout.Write(kc)
	return err
}

func devCerts(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("producer dev-certs", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: producer dev-certs --dir DIR [--host H]... [--cluster ID]...

Writes a self-signed CA (ca.crt, ca.key), a server certificate for the hosts
(server.crt, server.key) and a client certificate per cluster
(client-<cluster>.crt/.key, CN = cluster id) into DIR. For tests and local
runs only: the CA key sits next to the certificates.

`)
		fs.PrintDefaults()
	}
	dir := fs.String("dir", "", "output `dir`")
	var hosts, clusters listFlag
	fs.Var(&hosts, "host", "server `name or IP` (repeatable; default 127.0.0.1 and localhost)")
	fs.Var(&clusters, "cluster", "cluster `id` to issue a client certificate for (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" {
		return errors.New("dev-certs: --dir is required")
	}
	if len(hosts) == 0 {
		hosts = listFlag{"127.0.0.1", "localhost"}
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

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }
