package app

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/auditpipe/auditpipe/internal/fleet"
	"github.com/auditpipe/auditpipe/internal/telemetry"
	"github.com/auditpipe/auditpipe/processor/detect"
	"github.com/auditpipe/auditpipe/processor/pipeline"
	"github.com/auditpipe/auditpipe/processor/policy"
	"github.com/prometheus/client_golang/prometheus"
)

// DefaultReloadInterval is how often the processor looks for changed
// policy and fleet registry files.
const DefaultReloadInterval = 5 * time.Second

// Reload results, the values of the result label.
const (
	ReloadApplied = "applied"
	ReloadRefused = "refused"
)

// loaded is one consistent read of the policy configuration.
type loaded struct {
	fleet pipeline.Fleet
	// files are the files it was read from, for change detection.
	files []string
	// defaultFile is the file of the fleet default policy.
	defaultFile string
	// rulesFile is the user's detection rules file, "" for none.
	rulesFile string
}

// LoadFleet reads the fleet registry (when cfg.FleetFile is set) and every
// policy it names, plus cfg.PolicyFile as the default when the registry
// names none. Relative policy paths in the registry are relative to the
// registry file. Errors name the cluster and file.
func LoadFleet(cfg Config) (pipeline.Fleet, error) {
	l, err := loadFleet(cfg)
	return l.fleet, err
}

func loadFleet(cfg Config) (loaded, error) {
	var l loaded
	var reg *fleet.Registry
	defaultFile := cfg.PolicyFile
	base := ""
	if cfg.FleetFile != "" {
		l.files = append(l.files, cfg.FleetFile)
		var err error
		if reg, err = fleet.LoadFile(cfg.FleetFile); err != nil {
			return l, err
		}
		if err := reg.Validate(); err != nil {
			return l, fmt.Errorf("fleet registry %s: %w", cfg.FleetFile, err)
		}
		base = filepath.Dir(cfg.FleetFile)
		if reg.Defaults.Policy != "" {
			defaultFile = resolve(base, reg.Defaults.Policy)
		}
	}
	if defaultFile == "" {
		return l, errors.New("no default policy: set the policy file or defaults.policy in the fleet registry")
	}
	l.defaultFile = defaultFile
	cache := map[string]*policy.Policy{}
	load := func(path string) (*policy.Policy, error) {
		if p, ok := cache[path]; ok {
			return p, nil
		}
		l.files = append(l.files, path)
		p, err := policy.LoadFile(path)
		if err != nil {
			return nil, err
		}
		cache[path] = p
		return p, nil
	}
	def, err := load(defaultFile)
	if err != nil {
		return l, fmt.Errorf("default policy: %w", err)
	}
	l.fleet = pipeline.Fleet{Default: def, Registry: reg}
	if reg != nil {
		ids := make([]string, 0, len(reg.Clusters))
		for id := range reg.Clusters {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		for _, id := range ids {
			c := reg.Clusters[id]
			if c.Policy == "" {
				continue
			}
			p, err := load(resolve(base, c.Policy))
			if err != nil {
				return l, fmt.Errorf("fleet registry %s: clusters.%s.policy: %w", cfg.FleetFile, id, err)
			}
			if l.fleet.Clusters == nil {
				l.fleet.Clusters = map[string]pipeline.Policy{}
			}
			l.fleet.Clusters[id] = p
		}
	}
	if cfg.NoDetections {
		return l, nil
	}
	l.rulesFile = cfg.RulesFile
	if reg != nil && reg.Defaults.Rules != "" {
		l.rulesFile = resolve(base, reg.Defaults.Rules)
	}
	if l.rulesFile != "" {
		l.files = append(l.files, l.rulesFile)
	}
	if l.fleet.Detections, err = loadDetections(l.rulesFile, reg); err != nil {
		return l, err
	}
	return l, nil
}

// loadDetections compiles the shipped rules plus the user's file, and
// each cluster's overrides from the registry.
func loadDetections(rulesFile string, reg *fleet.Registry) (*detect.Fleet, error) {
	rules, err := detect.LoadDefault(rulesFile)
	if err != nil {
		return nil, fmt.Errorf("detection rules: %w", err)
	}
	f := &detect.Fleet{Default: rules}
	if reg == nil {
		return f, nil
	}
	ids := make([]string, 0, len(reg.Clusters))
	for id := range reg.Clusters {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		d := reg.Clusters[id].Detections
		if len(d.Enable) == 0 && len(d.Disable) == 0 {
			continue
		}
		s, err := rules.WithOverrides(d.Enable, d.Disable)
		if err != nil {
			return nil, fmt.Errorf("fleet registry: clusters.%s.detections: %w", id, err)
		}
		if f.Clusters == nil {
			f.Clusters = map[string]*detect.Set{}
		}
		f.Clusters[id] = s
	}
	return f, nil
}

func resolve(base, path string) string {
	if base == "" || filepath.IsAbs(path) {
		return path
	}
	return filepath.Join(base, path)
}

// fingerprint hashes the contents of files, so that any change (even one
// that keeps the modification time) is seen; the files are small.
func fingerprint(files []string) [sha256.Size]byte {
	h := sha256.New()
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			fmt.Fprintf(h, "%s\x00error %v\x00", f, err)
			continue
		}
		fmt.Fprintf(h, "%s\x00%d\x00", f, len(b))
		h.Write(b)
	}
	var sum [sha256.Size]byte
	copy(sum[:], h.Sum(nil))
	return sum
}

func newReloadMetrics(reg prometheus.Registerer) (*prometheus.CounterVec, error) {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "auditpipe_processor_policy_reloads_total",
		Help: "Changes of the policy or fleet registry files seen by the processor, by result (applied, or refused because the new files are broken; the previous policies then stay in force).",
	}, []string{"result"})
	c.WithLabelValues(ReloadApplied)
	c.WithLabelValues(ReloadRefused)
	if reg != nil {
		if err := telemetry.RegisterAll(reg, c); err != nil {
			return nil, fmt.Errorf("policy reload metrics: %w", err)
		}
	}
	return c, nil
}

// reload reads the configuration and applies it, or logs why not and
// keeps the current one.
//
// The files are read under reloadMu: two reloads at once (the watcher's and
// an explicit one, e.g. SIGHUP) must apply in the order they read, or the
// slower could put an older file's policy back in force after the newer.
func (a *App) reload() error {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	l, err := loadFleet(a.cfg)
	if len(l.files) > 0 {
		a.watched = l.files
	}
	if err != nil {
		a.reloads.WithLabelValues(ReloadRefused).Inc()
		a.log.Error("policy reload refused; the previous policies stay in force", "err", err)
		return fmt.Errorf("reload policies: %w", err)
	}
	if err := a.pipeline.SetFleet(l.fleet); err != nil {
		a.reloads.WithLabelValues(ReloadRefused).Inc()
		return err
	}
	a.reloads.WithLabelValues(ReloadApplied).Inc()
	a.log.Info("policies reloaded", "default", l.defaultFile, "overrides", len(l.fleet.Clusters), "fleet", a.cfg.FleetFile,
		"rules", l.rulesFile)
	return nil
}

// watch polls the files every interval until ctx ends and reloads when
// their contents change. Polling (not inotify) works the same on every
// file system, including the symlink swaps of a Kubernetes ConfigMap
// volume.
func (a *App) watch(ctx context.Context, interval time.Duration) {
	a.reloadMu.Lock()
	last := fingerprint(a.watched)
	a.reloadMu.Unlock()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		a.reloadMu.Lock()
		files := a.watched
		a.reloadMu.Unlock()
		fp := fingerprint(files)
		if fp == last {
			continue
		}
		// Remember what we saw before loading: a write racing with the
		// load is then seen on the next tick. A refused change is logged
		// and counted, and retried only when the files change again.
		last = fp
		_ = a.reload()
	}
}
