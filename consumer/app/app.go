// Package app wires the consumer stage: the local store sink and the CLS
// sink (real, or the in-process clslocal server in cls-local mode), each
// with its own consumer group on the events topic (Config.SinkGroupID), so
// that neither holds the other back; metrics and retention. The command in
// cmd/consumer and the all-in-one in deploy/local both build the consumer
// through New, so they cannot drift apart.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/auditpipe/auditpipe/consumer/group"
	"github.com/auditpipe/auditpipe/consumer/sink/cls"
	"github.com/auditpipe/auditpipe/consumer/sink/cls/clslocal"
	"github.com/auditpipe/auditpipe/consumer/sink/eventstore"
	"github.com/auditpipe/auditpipe/consumer/sink/local"
	"github.com/auditpipe/auditpipe/consumer/sink/vlstore"
	"github.com/auditpipe/auditpipe/internal/fleet"
	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/telemetry"
)

// Deps are the consumer's outside world, injected so that this package
// imports no Kafka client.
type Deps struct {
	// NewGroup creates a group member; it is called once per sink. When
	// nil, Run fails; Sinks still works (tests, or a caller running its
	// own groups).
	NewGroup func(kafka.GroupConfig) (kafka.GroupConsumer, error)
	// Store, when set, is used instead of opening Config.Local.Path: the
	// way several replicas in one process share the single writer of a
	// store file. The caller closes it. Run runs its retention all the
	// same (Config.Local); of several Apps sharing one store, configure
	// retention on one.
	Store eventstore.Store
	// OnReused, when set, is the store's hook for events stored marked
	// auditpipe.auditIDReused (eventstore.Options.OnReused), e.g. to raise
	// the alerts of rules on that marker. Only for a store New opens.
	OnReused func(ctx context.Context, events [][]byte)
	// Offsets, when set, lets Run start a sink group that has never
	// committed (CLS's, at the first start after 0018) where the group all
	// sinks used to share (Config.Group) stopped, instead of at the oldest
	// retained record. The caller closes it.
	Offsets kafka.GroupOffsets
	// Health, when set, gets the readiness checks: per sink, its group
	// has joined (needs Offsets) and the sink is not failing.
	Health *telemetry.Health
	// Registerer receives the metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// Logger defaults to discarding logs.
	Logger *slog.Logger
}

// App is a configured consumer.
type App struct {
	cfg       Config
	log       *slog.Logger
	store     eventstore.Store
	ownsStore bool
	clsSink   *cls.Sink
	clsLocal  *clslocal.Server
	clsURL    string
	clsHTTP   *http.Server
	sinks     []SinkGroup
	offsets   kafka.GroupOffsets
	members   []kafka.GroupConsumer // one per sink, in the order of sinks
	running   []atomic.Bool         // per member: inside its group's Run
	// routes is the CLS sink's cluster -> topic routing, replaced as a
	// whole by Reload; reloadMu orders reloads.
	routes   atomic.Pointer[cls.Topics]
	reloadMu sync.Mutex

	closeOnce sync.Once
	closeErr  error
}

// New opens the store, starts the CLS sink (and the cls-local server) and
// creates the group member. Nothing consumes before Run.
func New(cfg Config, d Deps) (_ *App, err error) {
	if err := cfg.ResolveSecrets(); err != nil {
		return nil, fmt.Errorf("consumer config: %w", err)
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("consumer config: %w", err)
	}
	logger := d.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	reg := d.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry() // a private one: metrics go nowhere
	}
	a := &App{cfg: cfg, log: logger, offsets: d.Offsets}
	// Whatever was started before a failure is released.
	defer func() {
		if err != nil {
			_ = a.Close()
		}
	}()
	var reg2 *fleet.Registry
	if cfg.FleetFile != "" {
		if reg2, err = loadRegistry(cfg.FleetFile); err != nil {
			return nil, err
		}
	}

	metrics, err := group.NewMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("consumer: %w", err)
	}
	var handlers []*group.Handler
	addSink := func(s group.Sink) {
		h := group.NewSinkHandler(s, metrics, logger.With("sink", s.Name()), group.Retry{})
		handlers = append(handlers, h)
		a.sinks = append(a.sinks, SinkGroup{Sink: s.Name(), Group: cfg.SinkGroupID(s.Name()), Handler: h})
	}
	if cfg.Local.Enabled {
		a.store = d.Store
		if a.store == nil {
			// Not in OpenStore: store migrate opens a new vlogs store
			// beside the SQLite one it copies.
			if err = checkNoSQLiteStore(cfg.Local); err != nil {
				return nil, err
			}
			a.store, err = OpenStore(cfg.Local, eventstore.Options{Logger: logger.With("component", "store"), Registerer: reg, OnReused: d.OnReused})
			if err != nil {
				return nil, err
			}
			a.ownsStore = true
		}
		addSink(group.NewLocalSink(a.store, logger))
	}
	if cfg.CLS.Mode != CLSOff {
		var topics cls.Topics
		if topics, err = a.clsTopics(reg2); err != nil {
			return nil, err
		}
		a.routes.Store(&topics)
		endpoint := cfg.CLS.Endpoint
		if cfg.CLS.Mode == CLSLocal {
			if endpoint, err = a.startLocalCLS(); err != nil {
				return nil, err
			}
		}
		// The sink asks for the routing current at each batch: Reload
		// swaps it under the running sink.
		route := func(c string) (string, bool) { return (*a.routes.Load())(c) }
		a.clsSink, err = cls.New(cfg.CLSSinkConfig(endpoint), route, reg, logger)
		if err != nil {
			return nil, err
		}
		addSink(a.clsSink)
	}
	if d.NewGroup != nil {
		for _, s := range a.sinks {
			m, err := d.NewGroup(cfg.GroupConfig(s.Sink))
			if err != nil {
				return nil, fmt.Errorf("consumer: group %s of sink %s: %w", s.Group, s.Sink, err)
			}
			a.members = append(a.members, m)
		}
		a.running = make([]atomic.Bool, len(a.members))
	}
	if d.Health != nil {
		for i, s := range a.sinks {
			d.Health.Add("consumer-"+s.Sink+"-group", func(ctx context.Context) error { return a.joined(ctx, i) })
			d.Health.Add("consumer-"+s.Sink+"-sink", handlers[i].Healthy)
		}
		if a.clsSink != nil {
			d.Health.Add("consumer-cls-sends", a.clsSink.Healthy)
		}
		if a.clsSink != nil && cfg.CLS.Mode == CLSCloud {
			d.Health.Add("consumer-cls-endpoint", func(ctx context.Context) error { return reachable(ctx, cfg.CLS.Endpoint) })
		}
	}
	return a, nil
}

// OpenStore opens the store of cfg.Engine at cfg.Path (the consumer's
// local.* keys; retention is not started here, see RunRetention).
func OpenStore(cfg LocalConfig, opts eventstore.Options) (eventstore.Store, error) {
	if err := validateEngine(cfg.Engine); err != nil {
		return nil, err
	}
	if cfg.Engine == eventstore.EngineVictoriaLogs {
		// The local sink syncs before each offset commit (kafka.Syncer):
		// one checkpoint per commit round instead of one per Write.
		// The search fallback's temporary stores go next to the store,
		// on its volume (TMPDIR is small in the chart).
		s, err := vlstore.Open(cfg.Path, opts, vlstore.Config{DeferSync: true, SearchTempDir: cfg.Path + ".search-tmp"})
		if err != nil {
			return nil, err // not s: a nil *vlstore.Store in the interface is not nil
		}
		return s, nil
	}
	s, err := local.Open(cfg.Path, local.Options{Logger: opts.Logger, Registerer: opts.Registerer, OnReused: opts.OnReused})
	if err != nil {
		return nil, err // not s: a nil *local.Store in the interface is not nil
	}
	return s, nil
}

// loadRegistry reads and validates the fleet registry file.
func loadRegistry(path string) (*fleet.Registry, error) {
	reg, err := fleet.LoadFile(path)
	if err != nil {
		return nil, err
	}
	if err := reg.Validate(); err != nil {
		return nil, fmt.Errorf("fleet registry %s: %w", path, err)
	}
	return reg, nil
}

// clsTopics is the CLS sink's routing by reg (nil: no registry): the
// registry's topic ids, in cls mode with a region also the topics it names
// by logset and topicName (created when missing), in cls-local mode a
// topic named after any cluster it does not route.
func (a *App) clsTopics(reg *fleet.Registry) (cls.Topics, error) {
	topics := cls.FleetTopics(reg)
	switch {
	case a.cfg.CLS.Mode == CLSCloud && a.cfg.CLS.Region != "" && reg != nil:
		return a.provision(reg, topics)
	case a.cfg.CLS.Mode == CLSLocal:
		// Without a fleet entry a cluster still shows up locally, under
		// a topic named after it.
		return func(c string) (string, bool) {
			if t, ok := topics(c); ok {
				return t, true
			}
			return "local-" + c, true
		}, nil
	}
	return topics, nil
}

// Reload re-reads the fleet registry (SIGHUP) and routes the CLS sink's
// next batches by it; a batch already being sent keeps its topics. A
// registry that does not load or validate (or, in cls mode with a region,
// names a topic that cannot be provisioned) is refused: the error is
// logged and returned and the previous routing stays in force. Without a
// CLS sink or a registry file there is nothing to reload.
func (a *App) Reload() error {
	if a.clsSink == nil || a.cfg.FleetFile == "" {
		return nil
	}
	// Two reloads at once apply in the order they read the file.
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	reg, err := loadRegistry(a.cfg.FleetFile)
	var topics cls.Topics
	if err == nil {
		topics, err = a.clsTopics(reg)
	}
	if err != nil {
		a.log.Error("fleet registry reload refused; the previous CLS routing stays in force", "fleet", a.cfg.FleetFile, "err", err)
		return fmt.Errorf("reload fleet registry: %w", err)
	}
	a.routes.Store(&topics)
	a.log.Info("fleet registry reloaded", "fleet", a.cfg.FleetFile, "clusters", len(reg.Clusters))
	return nil
}

// joined is the readiness of sink i's group: its member runs and the
// group has joined (when Offsets can tell).
func (a *App) joined(ctx context.Context, i int) error {
	s := a.sinks[i]
	if i >= len(a.running) || !a.running[i].Load() {
		return fmt.Errorf("sink %s: consumer group member not running", s.Sink)
	}
	if a.offsets == nil {
		return nil
	}
	return kafka.GroupJoined(ctx, a.offsets, s.Group, a.cfg.GroupConfig(s.Sink).ClientID)
}

// reachable dials endpoint (a host, host:port or URL; https by default):
// a CLS sink whose endpoint does not answer is down even when no events
// come to show it.
func reachable(ctx context.Context, endpoint string) error {
	host, port := endpoint, "443"
	if u, err := url.Parse(endpoint); err == nil && u.Host != "" {
		host = u.Host
		if u.Scheme == "http" {
			port = "80"
		}
	}
	if _, _, err := net.SplitHostPort(host); err != nil {
		host = net.JoinHostPort(host, port)
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		return fmt.Errorf("cls endpoint %s: %w", endpoint, err)
	}
	return conn.Close()
}

// provision resolves the fleet clusters named by logset and topicName to
// topic ids, creating what is missing. A failure stops the start: running
// without a cluster's topic would hold its partition for ever.
func (a *App) provision(reg *fleet.Registry, fleetTopics cls.Topics) (cls.Topics, error) {
	pc := cls.ProvisionConfig{SecretID: a.cfg.CLS.SecretID, SecretKey: a.cfg.CLS.SecretKey,
		Region: a.cfg.CLS.Region, Endpoint: a.cfg.CLS.APIEndpoint}
	if rest, ok := strings.CutPrefix(pc.Endpoint, "http://"); ok {
		pc.Endpoint, pc.Scheme = rest, "HTTP" // a local stand-in
	}
	p, err := cls.NewProvisioner(pc, a.log)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ids := make([]string, 0, len(reg.Clusters))
	for id := range reg.Clusters {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	resolved := map[string]string{}
	for _, id := range ids {
		c := reg.Clusters[id]
		if c.CLS.TopicID != "" || c.CLS.TopicName == "" {
			continue
		}
		tid, err := p.EnsureTopic(ctx, c.CLS.Logset, c.CLS.TopicName)
		if err != nil {
			return nil, fmt.Errorf("cluster %s: %w", id, err)
		}
		resolved[id] = tid
	}
	return func(cluster string) (string, bool) {
		if t, ok := resolved[cluster]; ok {
			return t, true
		}
		return fleetTopics(cluster)
	}, nil
}

func (a *App) startLocalCLS() (string, error) {
	a.clsLocal = clslocal.New(clslocal.Options{
		Credentials: []clslocal.Credential{{SecretID: a.cfg.CLSSinkConfig("").SecretID, SecretKey: a.cfg.CLSSinkConfig("").SecretKey}},
		KeepLogs:    10000,
		Logger:      a.log,
	})
	ln, err := net.Listen("tcp", a.cfg.CLS.LocalAddr)
	if err != nil {
		return "", fmt.Errorf("cls-local: listen on %s: %w", a.cfg.CLS.LocalAddr, err)
	}
	a.clsHTTP = &http.Server{Handler: a.clsLocal.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := a.clsHTTP.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("cls-local server", "err", err)
		}
	}()
	a.clsURL = "http://" + ln.Addr().String()
	a.log.Info("cls-local: CLS stand-in listening; GET /logs shows what would be sent", "url", a.clsURL)
	return a.clsURL, nil
}

// SinkGroup is one sink with the consumer group that feeds it.
type SinkGroup struct {
	Sink  string // local or cls
	Group string // its consumer group id
	// Handler writes a batch to the sink, retrying transient errors; it
	// returns nil once the batch may be committed.
	Handler kafka.Handler
}

// Sinks are the enabled sinks, each with its group.
func (a *App) Sinks() []SinkGroup { return slices.Clone(a.sinks) }

// Handler is the handler of sink (local or cls), or nil when it is off.
func (a *App) Handler(sink string) kafka.Handler {
	for _, s := range a.sinks {
		if s.Sink == sink {
			return s.Handler
		}
	}
	return nil
}

// Store is the local store (nil when disabled).
func (a *App) Store() eventstore.Store { return a.store }

// CLSLocal is the cls-local server and its base URL (nil, "" unless
// cls.mode is cls-local).
func (a *App) CLSLocal() (*clslocal.Server, string) { return a.clsLocal, a.clsURL }

// CLSSink is the CLS sink (nil when cls.mode is off).
func (a *App) CLSSink() *cls.Sink { return a.clsSink }

// Run consumes until ctx ends, each sink's group member on its own,
// restarting a member with backoff after failures, and runs the store's
// retention in the background. It returns when the in-flight batches are
// done; Close then flushes and releases.
func (a *App) Run(ctx context.Context) error {
	if len(a.members) == 0 {
		return errors.New("consumer: no group (Deps.NewGroup is nil)")
	}
	if !a.seedSinkGroups(ctx) {
		return nil // stopped before consuming
	}
	var wg sync.WaitGroup
	if a.store != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.store.RunRetention(ctx, a.cfg.Retention())
		}()
	}
	for i, m := range a.members {
		s := a.sinks[i]
		running := &a.running[i]
		wg.Add(1)
		go func() {
			defer wg.Done()
			kafka.SuperviseFunc(ctx, func(ctx context.Context) error {
				running.Store(true)
				defer running.Store(false)
				return m.Run(ctx, s.Handler)
			}, 10*time.Second, a.log.With("sink", s.Sink, "group", s.Group))
		}()
	}
	wg.Wait()
	return nil
}

// seedSinkGroups commits, for every sink group other than Config.Group
// that has no committed offset on the topic, the offsets of Config.Group:
// before 0018 that group fed every sink and committed only what all of them
// had, so CLS has everything below them. Committing the seed (rather than
// skipping records in memory) makes it happen once: a later start finds
// the group's own commits, so records CLS has not taken are never skipped,
// whatever the local store did since. It retries until it succeeds or ctx
// ends (false): consuming first would send the topic's whole history to
// CLS again.
func (a *App) seedSinkGroups(ctx context.Context) bool {
	if a.offsets == nil {
		return true
	}
	backoff := 500 * time.Millisecond
	for {
		err := a.seed(ctx)
		if err == nil {
			return true
		}
		a.log.Error("consumer: positioning new sink groups failed; retrying", "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}

func (a *App) seed(ctx context.Context) error {
	topic := a.cfg.Topic
	for _, s := range a.sinks {
		if s.Group == a.cfg.Group {
			continue
		}
		own, err := a.offsets.CommittedOffsets(ctx, s.Group, topic)
		if err != nil {
			return fmt.Errorf("offsets of group %s: %w", s.Group, err)
		}
		if len(own) > 0 {
			continue
		}
		shared, err := a.offsets.CommittedOffsets(ctx, a.cfg.Group, topic)
		if err != nil {
			return fmt.Errorf("offsets of group %s: %w", a.cfg.Group, err)
		}
		if len(shared) == 0 {
			continue // a new installation: start at the beginning
		}
		if err := a.offsets.ResetOffsets(ctx, s.Group, topic, shared); err != nil {
			if errors.Is(err, kafka.ErrGroupActive) {
				// Another replica got there first and is consuming.
				a.log.Info("consumer: sink group already has members; not positioning it", "sink", s.Sink, "group", s.Group)
				continue
			}
			return fmt.Errorf("position group %s: %w", s.Group, err)
		}
		a.log.Info("consumer: new sink group starts where the shared group stopped", "sink", s.Sink, "group", s.Group,
			"from_group", a.cfg.Group, "offsets", shared)
	}
	return nil
}

// Close leaves the group, then closes the sinks: the CLS producer after
// the group, so every batch it acknowledged was already waited for, and the
// store last. Safe to call twice.
func (a *App) Close() error {
	a.closeOnce.Do(func() {
		var errs []error
		for _, m := range a.members {
			errs = append(errs, m.Close())
		}
		if a.clsSink != nil {
			errs = append(errs, a.clsSink.Close(10*time.Second))
		}
		if a.clsHTTP != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			errs = append(errs, a.clsHTTP.Shutdown(ctx))
			cancel()
		}
		if a.store != nil && a.ownsStore {
			errs = append(errs, a.store.Close())
		}
		a.closeErr = errors.Join(errs...)
	})
	return a.closeErr
}
