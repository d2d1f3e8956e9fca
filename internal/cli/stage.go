package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/auditpipe/auditpipe/internal/telemetry"
)

// App is a stage's running part, built by Stage.New.
type App interface {
	// Run works until ctx is canceled, then finishes the work in flight
	// and returns nil. An error is fatal: the process exits with it
	// (transient failures, such as a broker outage, are retried inside).
	Run(ctx context.Context) error
	// Close releases what New acquired. It runs after Run returned, or
	// when Run never ran.
	Close() error
}

// Reloader is implemented by an App that can re-read files (policies, the
// fleet registry, tokens, certificates) on SIGHUP. On error the previous
// state stays in force.
type Reloader interface {
	Reload() error
}

// Env is what the scaffolding hands a stage's app.
type Env struct {
	Logger   *slog.Logger
	Registry *prometheus.Registry
	// Health collects the app's readiness checks for /readyz.
	Health *telemetry.Health
	Stdout io.Writer
	Stderr io.Writer
}

// ConfigPtr is the pointer to a stage's config type C, which embeds Common.
type ConfigPtr[C any] interface {
	*C
	CommonConfig
}

// Stage describes a stage binary's run and validate commands over its
// config type C (P is *C).
type Stage[C any, P ConfigPtr[C]] struct {
	Name string // "processor": the program, the log component and build_info's component
	// Usage is the help of run and validate, before the flags.
	Usage    string
	Defaults func() C
	// Flags binds the stage's own flags to cfg, which holds the defaults
	// and the config file's values; the common flags are bound already.
	Flags func(fs *flag.FlagSet, cfg *C)
	// Check validates cfg and what it references (policies, the fleet
	// registry, certificates, secret files) without side effects: it
	// creates no directory and connects to nothing. validate runs it, and
	// so does run before New.
	Check func(cfg *C) error
	// New builds the app; the scaffolding runs it, reloads it on SIGHUP
	// and stops it on SIGTERM.
	New func(ctx context.Context, cfg *C, env Env) (App, error)
}

// Commands are run, validate and version.
func (s Stage[C, P]) Commands() []Command {
	return []Command{
		{Name: "run", Summary: "run the " + s.Name + " (the default command)", Run: s.Run},
		{Name: "validate", Summary: "check the config and the files it names, then exit; starts nothing", Run: s.Validate},
		VersionCommand(s.Name),
	}
}

// Load loads the config: the defaults, then the --config file, then the
// flags; then Common.Validate and Check.
func (s Stage[C, P]) Load(command string, args []string, stdout io.Writer) (*C, error) {
	path, err := ConfigArg(args)
	if err != nil {
		return nil, err
	}
	cfg := s.Defaults()
	if path != "" {
		if err := LoadConfig(path, &cfg); err != nil {
			return nil, err
		}
	}
	fs := NewFlagSet(s.Name+" "+command, s.Usage, stdout)
	fs.String("config", path, "YAML config `file` (strict: unknown keys are errors; ${ENV} is expanded); flags override it")
	P(&cfg).CommonConfig().RegisterFlags(fs)
	if s.Flags != nil {
		s.Flags(fs, &cfg)
	}
	if err := Parse(fs, args, false); err != nil {
		return nil, err
	}
	if err := P(&cfg).CommonConfig().Validate(); err != nil {
		return nil, err
	}
	if s.Check != nil {
		if err := s.Check(&cfg); err != nil {
			return nil, err
		}
	}
	return &cfg, nil
}

// Validate is the validate command.
func (s Stage[C, P]) Validate(_ context.Context, args []string, stdout, _ io.Writer) error {
	if _, err := s.Load("validate", args, stdout); err != nil {
		return err
	}
	_, err := fmt.Fprintf(stdout, "%s: config is valid\n", s.Name)
	return err
}

// Run is the run command: it loads the config, serves metrics and health,
// builds the app and runs it until ctx is canceled (SIGTERM), then lets it
// drain for at most shutdownTimeout. SIGHUP reloads it.
func (s Stage[C, P]) Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := s.Load("run", args, stdout)
	if err != nil {
		return err
	}
	common := P(cfg).CommonConfig()
	logger, err := telemetry.NewLogger(stderr, common.Log.Level, common.Log.Format)
	if err != nil {
		return err
	}
	logger = logger.With("component", s.Name)
	env := Env{Logger: logger, Registry: telemetry.NewRegistry(), Health: telemetry.NewHealth(), Stdout: stdout, Stderr: stderr}
	if err := RegisterBuildInfo(env.Registry, s.Name); err != nil {
		return err
	}
	// Not ready until the app runs; from then on its own checks decide.
	started := make(chan struct{})
	env.Health.Add("started", func(context.Context) error {
		select {
		case <-started:
			return nil
		default:
			return errors.New("starting")
		}
	})
	if common.Metrics.Listen != "" {
		stop, addr, err := ServeMetrics(common.Metrics.Listen, env)
		if err != nil {
			return err
		}
		defer stop()
		logger.Info("serving metrics and health", "addr", addr)
	}
	app, err := s.New(ctx, cfg, env)
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			return nil // stopped while waiting, e.g. for Kafka
		}
		return err
	}
	logger.Info(s.Name+" starting", "version", BuildInfo().String())
	return RunApp(ctx, app, time.Duration(common.ShutdownTimeout), logger, started)
}

// RunApp runs app until ctx is canceled or Run fails, reloading it on
// SIGHUP; on cancellation it gives the drain at most timeout. It closes
// app. started, when not nil, is closed once Run was called.
func RunApp(ctx context.Context, app App, timeout time.Duration, logger *slog.Logger, started chan struct{}) (err error) {
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	closed := make(chan error, 1)
	defer func() {
		// Close is bounded as well: a process that is being stopped must
		// stop.
		go func() { closed <- app.Close() }()
		select {
		case cerr := <-closed:
			if cerr != nil {
				err = errors.Join(err, fmt.Errorf("close: %w", cerr))
			}
		case <-time.After(timeout):
			err = errors.Join(err, fmt.Errorf("close: not done within shutdownTimeout %s", timeout))
		}
	}()

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	done := make(chan error, 1)
	go func() { done <- app.Run(runCtx) }()
	if started != nil {
		close(started)
	}
	for {
		select {
		case <-hup:
			r, ok := app.(Reloader)
			if !ok {
				logger.Info("SIGHUP: nothing to reload")
				continue
			}
			if err := r.Reload(); err != nil {
				logger.Error("SIGHUP: reload failed; the previous configuration stays in force", "err", err)
				continue
			}
			logger.Info("SIGHUP: reloaded")
		case err := <-done:
			if err == nil && ctx.Err() == nil {
				err = errors.New("stopped by itself")
			}
			return err
		case <-ctx.Done():
			logger.Info("stopping: draining in-flight work", "timeout", timeout)
			cancel()
			select {
			case err := <-done:
				if err != nil {
					return fmt.Errorf("drain: %w", err)
				}
				logger.Info("stopped")
				return nil
			case <-time.After(timeout):
				return fmt.Errorf("drain: not done within shutdownTimeout %s", timeout)
			}
		}
	}
}

// ServeMetrics serves /metrics, /healthz and /readyz of env on addr (port
// 0 picks one) in the background. It listens before returning, so that a
// bad or taken address is an error at start; stop shuts the server down.
func ServeMetrics(addr string, env Env) (stop func(), bound string, err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, "", fmt.Errorf("metrics.listen %s: %w", addr, err)
	}
	srv := &http.Server{Handler: telemetry.Mux(env.Registry, env.Health), ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(env.Logger.Handler(), slog.LevelWarn)}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			env.Logger.Error("metrics server stopped", "addr", addr, "err", err)
		}
	}()
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}, ln.Addr().String(), nil
}
