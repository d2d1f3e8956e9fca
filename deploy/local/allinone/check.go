package allinone

import (
	"fmt"

	"github.com/auditpipe/auditpipe/internal/fleet"
	processorapp "github.com/auditpipe/auditpipe/processor/app"
	"github.com/auditpipe/auditpipe/processor/detect"
	producerapp "github.com/auditpipe/auditpipe/producer/app"
)

// Check validates cfg and reads every file it names (the policy, the
// fleet registry, the rules, the webhook's certificates and tokens, CLS
// secret files) without side effects: no data directory, no broker.
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
	return nil
}
