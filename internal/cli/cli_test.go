package cli

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/stretchr/testify/require"
)

type testConfig struct {
	Common   `json:",inline"`
	Kafka    kafka.Connection `json:"kafka"`
	Group    string           `json:"group"`
	Secret   string           `json:"secret"`
	SecretF  string           `json:"secretFile"`
	MaxBytes int64            `json:"maxBytes"`
}

func testStage(newApp func(*testConfig, Env) App) Stage[testConfig, *testConfig] {
	return Stage[testConfig, *testConfig]{
		Name:  "teststage",
		Usage: "Usage: teststage run [flags]",
		Defaults: func() testConfig {
			return testConfig{Common: DefaultCommon(""), Group: "g", Kafka: kafka.Connection{Brokers: []string{"default:9092"}}}
		},
		Flags: func(fs *flag.FlagSet, c *testConfig) {
			c.Kafka.RegisterFlags(fs)
			fs.StringVar(&c.Group, "group", c.Group, "group")
		},
		Check: func(c *testConfig) error {
			s, err := Secret("secret", c.Secret, c.SecretF)
			c.Secret = s
			return err
		},
		New: func(_ context.Context, c *testConfig, env Env) (App, error) { return newApp(c, env), nil },
	}
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
	return p
}

func TestLoadExpandsEnvironmentAndFlagsOverrideFile(t *testing.T) {
	t.Setenv("CLI_TEST_GROUP", "from-env")
	path := writeFile(t, "c.yaml", "group: ${CLI_TEST_GROUP}-x\nsecret: 'a$${LITERAL}b'\nmaxBytes: 9007199254740993\nkafka:\n  brokers: [file:9092]\nlog:\n  level: debug\n")
	s := testStage(nil)
	cfg, err := s.Load("validate", []string{"--config", path}, io.Discard)
	require.NoError(t, err)
	require.Equal(t, "from-env-x", cfg.Group)
	require.Equal(t, "a${LITERAL}b", cfg.Secret)
	require.Equal(t, int64(9007199254740993), cfg.MaxBytes, "large integers survive the expansion round trip")
	require.Equal(t, []string{"file:9092"}, cfg.Kafka.Brokers)
	require.Equal(t, "debug", cfg.Log.Level)

	cfg, err = s.Load("validate", []string{"--group=flag", "--config=" + path, "--brokers", "a:1,b:2", "--log-level", "warn"}, io.Discard)
	require.NoError(t, err)
	require.Equal(t, "flag", cfg.Group)
	require.Equal(t, []string{"a:1", "b:2"}, cfg.Kafka.Brokers)
	require.Equal(t, "warn", cfg.Log.Level)
}

func TestLoadErrors(t *testing.T) {
	s := testStage(nil)
	unset := writeFile(t, "c.yaml", "kafka:\n  clientID: ${CLI_TEST_SURELY_UNSET}\n")
	_, err := s.Load("validate", []string{"--config", unset}, io.Discard)
	require.ErrorContains(t, err, "kafka.clientID: environment variable CLI_TEST_SURELY_UNSET is not set")
	require.ErrorContains(t, err, unset)

	unknown := writeFile(t, "c.yaml", "kafka:\n  brokerz: [x]\n")
	_, err = s.Load("validate", []string{"--config", unknown}, io.Discard)
	require.ErrorContains(t, err, `unknown field "kafka.brokerz"`)

	badLevel := writeFile(t, "c.yaml", "log:\n  level: loud\n")
	_, err = s.Load("validate", []string{"--config", badLevel}, io.Discard)
	require.ErrorContains(t, err, "log.level")

	_, err = s.Load("validate", []string{"--nope"}, io.Discard)
	require.ErrorContains(t, err, "flag provided but not defined: -nope")
}

func TestSecretFromFile(t *testing.T) {
	s := testStage(nil)
	file := writeFile(t, "secret", "s3cret\n")
	cfg, err := s.Load("validate", []string{"--config", writeFile(t, "c.yaml", "secretFile: "+file+"\n")}, io.Discard)
	require.NoError(t, err)
	require.Equal(t, "s3cret", cfg.Secret)

	_, err = s.Load("validate", []string{"--config", writeFile(t, "c.yaml", "secret: x\nsecretFile: "+file+"\n")}, io.Discard)
	require.ErrorContains(t, err, "both set")
	_, err = s.Load("validate", []string{"--config", writeFile(t, "c.yaml", "secretFile: /nonexistent/secret\n")}, io.Discard)
	require.ErrorContains(t, err, "secretFile")
}

func TestDispatchHelpAndErrors(t *testing.T) {
	var ran []string
	p := &Program{Name: "prog", Doc: "prog does things.", Default: "run", Commands: []Command{
		{Name: "run", Summary: "run it", Run: func(_ context.Context, args []string, stdout, _ io.Writer) error {
			fs := NewFlagSet("prog run", "Usage: prog run", stdout)
			fs.String("x", "", "an x")
			if err := Parse(fs, args, false); err != nil {
				return err
			}
			ran = append(ran, "run")
			return nil
		}},
		{Name: "policy", Summary: "policy tools", Sub: []Command{{Name: "test", Summary: "test a policy", Run: func(context.Context, []string, io.Writer, io.Writer) error {
			ran = append(ran, "policy test")
			return nil
		}}}},
	}}
	var out, errOut bytes.Buffer
	for _, args := range [][]string{{"help"}, {"--help"}, {"run", "--help"}, {"help", "run"}} {
		out.Reset()
		err := p.Run(context.Background(), args, &out, &errOut)
		require.ErrorIs(t, err, ErrHelp, "%v", args)
		require.Equal(t, 0, ExitCode("prog", err, &errOut))
		require.NotEmpty(t, out.String(), "help of %v goes to stdout", args)
	}
	require.Contains(t, out.String(), "-x")
	require.Empty(t, errOut.String(), "help writes nothing to stderr")

	require.NoError(t, p.Run(context.Background(), nil, &out, &errOut))
	require.NoError(t, p.Run(context.Background(), []string{"-x", "1"}, &out, &errOut))
	require.NoError(t, p.Run(context.Background(), []string{"policy", "test"}, &out, &errOut))
	require.Equal(t, []string{"run", "run", "policy test"}, ran)

	err := p.Run(context.Background(), []string{"run", "--bad"}, &out, &errOut)
	require.Error(t, err)
	require.Empty(t, errOut.String(), "the error is returned, not printed")
	require.Equal(t, 1, ExitCode("prog", err, &errOut))
	require.Equal(t, 1, strings.Count(errOut.String(), "bad"), "printed once: %s", errOut.String())
	require.True(t, strings.HasPrefix(errOut.String(), "prog: "))

	require.ErrorContains(t, p.Run(context.Background(), []string{"nope"}, &out, &errOut), `unknown command "nope"`)
}

// reloadApp counts reloads and runs until canceled.
type reloadApp struct {
	reloads chan struct{}
	closed  bool
}

func (a *reloadApp) Run(ctx context.Context) error { <-ctx.Done(); return nil }
func (a *reloadApp) Close() error                  { a.closed = true; return nil }
func (a *reloadApp) Reload() error                 { a.reloads <- struct{}{}; return nil }

func TestRunReloadsOnSIGHUPAndDrainsOnCancel(t *testing.T) {
	app := &reloadApp{reloads: make(chan struct{}, 1)}
	started := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- RunApp(ctx, app, 5*time.Second, discardLogger(), started)
	}()
	<-started
	// RunApp subscribes to SIGHUP before it closes started.
	require.NoError(t, syscall.Kill(os.Getpid(), syscall.SIGHUP))
	select {
	case <-app.reloads:
	case <-time.After(10 * time.Second):
		t.Fatal("SIGHUP did not reload the app")
	}
	cancel()
	require.NoError(t, <-done)
	require.True(t, app.closed)
}

type stuckApp struct{}

func (stuckApp) Run(context.Context) error { select {} }
func (stuckApp) Close() error              { return nil }

func TestRunGivesUpAfterShutdownTimeout(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := RunApp(ctx, stuckApp{}, 50*time.Millisecond, discardLogger(), nil)
	require.ErrorContains(t, err, "not done within shutdownTimeout")
}

type failingApp struct{}

func (failingApp) Run(context.Context) error { return errors.New("boom") }
func (failingApp) Close() error              { return nil }

func TestRunReturnsFatalError(t *testing.T) {
	require.ErrorContains(t, RunApp(context.Background(), failingApp{}, time.Second, discardLogger(), nil), "boom")
}
