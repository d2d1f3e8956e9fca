// Package embedded runs an in-process Kafka broker (kfake, pure Go) for
// `make run` and for tests. It speaks the real Kafka protocol, so the same
// adapters and clients run against it as against Apache Kafka.
package embedded

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/privatefs"
)

// Config configures the embedded broker.
type Config struct {
	// Ports to listen on, one per broker, on 127.0.0.1. Zero or empty means
	// one broker on a random free port.
	Ports []int
	// DataDir persists the log and group state there; the broker reloads it
	// on start. Empty means memory only. The directory is made private
	// (0700, files 0600; see internal/privatefs): the log holds audit
	// events as the apiservers sent them.
	DataDir string
	// DefaultPartitions is the partition count of auto-created topics and
	// of Topics. Default 4.
	DefaultPartitions int32
	// Topics are created at start if they do not exist.
	Topics []string
	// SyncWrites fsyncs every produced batch before acknowledging it, so
	// an acknowledged event survives a power loss, not only a process
	// crash.
	SyncWrites bool
	// SASL, when set, is the only user the broker accepts: every client
	// must authenticate as it (any mechanism of kafka.SASL) before any
	// other request. Zero means any client may connect.
	SASL kafka.SASL
	// Users are more users the broker accepts, next to SASL; any of them
	// turns SASL on. A user may be listed once per mechanism.
	Users []kafka.SASL
	// TLS, when set, is the listeners' TLS configuration: clients must
	// connect with TLS; with ClientAuth set, with a client certificate.
	TLS *tls.Config
}

// Broker is a running embedded broker.
type Broker struct {
	cluster *kfake.Cluster
	dataDir string
}

// Start starts the broker and returns once it accepts connections.
func Start(cfg Config) (*Broker, error) {
	if cfg.DefaultPartitions <= 0 {
		cfg.DefaultPartitions = 4
	}
	opts := []kfake.Opt{
		kfake.DefaultNumPartitions(int(cfg.DefaultPartitions)),
		kfake.AllowAutoTopicCreation(),
		// Consumer-group members in tests come and go quickly; let them use
		// short session timeouts.
		kfake.GroupMinSessionTimeout(100 * time.Millisecond),
	}
	if len(cfg.Ports) > 0 {
		opts = append(opts, kfake.NumBrokers(len(cfg.Ports)), kfake.Ports(cfg.Ports...))
	} else {
		opts = append(opts, kfake.NumBrokers(1))
	}
	if cfg.DataDir != "" {
		// kfake creates its files 0644 and directories 0755 whatever we
		// ask; the 0700 directory keeps them from other users, and
		// Tighten fixes the file modes left by earlier runs (and again
		// on Close).
		if err := privatefs.MkdirAll(cfg.DataDir); err != nil {
			return nil, fmt.Errorf("embedded kafka: %w", err)
		}
		if err := privatefs.Tighten(cfg.DataDir); err != nil {
			return nil, fmt.Errorf("embedded kafka: %w", err)
		}
		opts = append(opts, kfake.DataDir(cfg.DataDir))
	}
	if cfg.SASL.Enabled() || len(cfg.Users) > 0 {
		users := cfg.Users
		if cfg.SASL.Enabled() {
			users = append([]kafka.SASL{cfg.SASL}, users...)
		}
		opts = append(opts, kfake.EnableSASL())
		for _, u := range users {
			if err := u.Validate(); err != nil {
				return nil, fmt.Errorf("embedded kafka: %w", err)
			}
			u, err := u.Resolved()
			if err != nil {
				return nil, fmt.Errorf("embedded kafka: %w", err)
			}
			// A superuser, so that the user keeps every right if ACLs
			// are ever enabled; without ACLs any authenticated user has
			// them.
			opts = append(opts, kfake.Superuser(u.Mechanism, u.Username, u.Password))
		}
		if cfg.DataDir != "" {
			// kfake saves its users on shutdown and, on start, the saved
			// ones replace the configured ones; a data directory from a
			// run without SASL would then have no user at all. The
			// configured user is the truth: forget the saved ones.
			if err := os.Remove(filepath.Join(cfg.DataDir, "sasl.json")); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("embedded kafka: reset saved SASL users: %w", err)
			}
		}
	}
	if cfg.TLS != nil {
		opts = append(opts, kfake.TLS(cfg.TLS))
	}
	if cfg.SyncWrites {
		opts = append(opts, kfake.SyncWrites())
	}
	if len(cfg.Topics) > 0 {
		opts = append(opts, kfake.SeedTopics(cfg.DefaultPartitions, cfg.Topics...))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("embedded kafka: start (ports %v, data dir %q): %w", cfg.Ports, cfg.DataDir, err)
	}
	return &Broker{cluster: c, dataDir: cfg.DataDir}, nil
}

// Addrs returns the bootstrap addresses (host:port).
func (b *Broker) Addrs() []string { return b.cluster.ListenAddrs() }

// Close stops the broker, flushing persisted state. Safe to call twice.
func (b *Broker) Close() {
	if b == nil || b.cluster == nil {
		return
	}
	b.cluster.Close()
	b.cluster = nil
	if b.dataDir != "" {
		// Best effort: the directory is private already.
		_ = privatefs.Tighten(b.dataDir)
	}
}
