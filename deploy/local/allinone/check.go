package allinone

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/auditpipe/auditpipe/consumer/sink/eventstore"
	"github.com/auditpipe/auditpipe/internal/fleet"
	processorapp "github.com/auditpipe/auditpipe/processor/app"
	"github.com/auditpipe/auditpipe/processor/detect"
	producerapp "github.com/auditpipe/auditpipe/producer/app"
)

// Check validates cfg and reads every file it names (the policy, the
// fleet registry, the rules, the webhook's certificates and tokens, CLS
// secret files), and refuses a vlogs store over an old SQLite one,
// without side effects: no data directory, no broker.
// `auditpipe validate` runs it, and Start runs it before it creates
// anything, so a bad policy is reported before the broker starts.
func Check(cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	// The stages' checks read the external cluster's TLS and SASL files.
	conn := cfg.checkConnection()
	if err := producerapp.Check(cfg.producerConfig(conn)); err != nil {
		return err
	}
	pc := cfg.processorConfig(conn)
	if pc.PolicyFile != "" {
		if err := processorapp.Check(pc); err != nil {
			return err
		}
	} else {
		// No policy: Start writes the shipped default, unless the fleet
		// registry names one; check the registry and the rules alone.
		if pc.FleetFile != "" {
			reg, err := fleet.LoadFile(pc.FleetFile)
			if err != nil {
				return err
			}
			if err := reg.Validate(); err != nil {
				return fmt.Errorf("fleet registry %s: %w", pc.FleetFile, err)
			}
		}
		if !pc.NoDetections && pc.RulesFile != "" {
			if _, err := detect.LoadDefault(pc.RulesFile); err != nil {
				return err
			}
		}
	}
	cc := cfg.consumerConfig(conn)
	if err := cc.ResolveSecrets(); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	return checkNoSQLiteStore(cfg)
}

// checkNoSQLiteStore refuses engine vlogs on a data directory that holds
// an earlier version's SQLite store and no vlogs store yet: vlogs became
// the default (decision 0026, migration step 4), and a run that kept its
// old data directory would otherwise start on a new, empty store and
// leave every stored event behind, unsearched. With both stores there,
// the events were migrated: the vlogs store is the one in use.
func checkNoSQLiteStore(cfg Config) error {
	if cfg.Store.Engine != eventstore.EngineVictoriaLogs {
		return nil
	}
	vl := StorePath(cfg.DataDir, eventstore.EngineVictoriaLogs)
	if _, err := os.Stat(vl); !errors.Is(err, fs.ErrNotExist) {
		return nil // there (or unreadable: opening it will say why)
	}
	old := StorePath(cfg.DataDir, eventstore.EngineSQLite)
	if st, err := os.Stat(old); err != nil || !st.Mode().IsRegular() {
		return nil
	}
	return fmt.Errorf("store.engine: vlogs (now the default), but %s holds the SQLite store of an earlier version and %s does not exist: "+
		"set store.engine: sqlite (or run with --store-engine sqlite) to keep using it, "+
		"or copy its events first with \"auditpipe store migrate --data-dir %s\"", old, vl, cfg.DataDir)
}
