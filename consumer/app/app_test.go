package app_test

import (
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/consumer/app"
	"github.com/auditpipe/auditpipe/consumer/internal/eventgen"
	"github.com/auditpipe/auditpipe/consumer/sink/cls/clslocal"
	"github.com/auditpipe/auditpipe/internal/kafka"
)

func TestLoadFull(t *testing.T) {
	t.Setenv("CONSUMER_TEST_SECRET_KEY", "example-from-env")
	cfg, err := app.Load("testdata/full.yaml")
	require.NoError(t, err)
	require.Equal(t, "example-from-env", cfg.CLS.SecretKey)
	require.Equal(t, "testdata/fleet.yaml", cfg.FleetFile)
	require.NoError(t, cfg.Validate())
	require.Equal(t, []string{"kafka-0:9092", "kafka-1:9092"}, cfg.Kafka.Brokers)
	require.Equal(t, 720*time.Hour, cfg.Retention().MaxAge)
	require.Equal(t, 30*time.Second, cfg.Retention().Interval)
	sc := cfg.CLSSinkConfig("ignored")
	require.Equal(t, "ap-guangzhou.cls.tencentcs.com", sc.Endpoint)
	require.Equal(t, 200*time.Millisecond, sc.Linger)
	require.Equal(t, "zstd", sc.Compression)
	require.Equal(t, time.Minute, sc.BlockedRetry)
	require.Equal(t, 20000, sc.RecentIdentities)
	require.Equal(t, 1000, cfg.GroupConfig(app.SinkLocal).MaxBatch)
	require.Equal(t, "sqlite", cfg.Local.Engine)
	require.Equal(t, app.APIConfig{Listen: ":8443", TokenFile: "/etc/auditpipe/api/token",
		TLS: app.APITLSConfig{CertFile: "/etc/auditpipe/api/tls.crt", KeyFile: "/etc/auditpipe/api/tls.key"}}, cfg.API)
}

// TestAPIRules: beyond loopback the API needs a token and TLS (or
// allowInsecure); on loopback neither; with the local sink off, or
// api.listen empty, nothing is checked because nothing is served.
func TestAPIRules(t *testing.T) {
	base := app.DefaultConfig()
	base.Kafka.Brokers = []string{"k:9092"}
	require.NoError(t, base.Validate(), "the default listens on loopback")
	base.API.Listen = ":8080"
	require.ErrorContains(t, base.Validate(), "api.token", ":8080 without a token")
	for name, tc := range map[string]struct {
		mut func(*app.Config)
		ok  bool
	}{
		"loopback":                {func(c *app.Config) { c.API.Listen = "127.0.0.1:8080" }, true},
		"localhost":               {func(c *app.Config) { c.API.Listen = "localhost:0" }, true},
		"off":                     {func(c *app.Config) { c.API.Listen = "" }, true},
		"no local store":          {func(c *app.Config) { c.Local.Enabled = false; c.CLS.Mode = app.CLSLocal }, true},
		"token, plain HTTP":       {func(c *app.Config) { c.API.Token = "t" }, false},
		"token, allowInsecure":    {func(c *app.Config) { c.API.Token = "t"; c.API.AllowInsecure = true }, true},
		"tokenFile, TLS":          {func(c *app.Config) { c.API.TokenFile = "f"; c.API.TLS = app.APITLSConfig{CertFile: "c", KeyFile: "k"} }, true},
		"TLS, no token":           {func(c *app.Config) { c.API.TLS = app.APITLSConfig{CertFile: "c", KeyFile: "k"} }, false},
		"allowInsecure, no token": {func(c *app.Config) { c.API.AllowInsecure = true }, false},
	} {
		c := base
		tc.mut(&c)
		if tc.ok {
			require.NoError(t, c.Validate(), name)
		} else {
			require.Error(t, c.Validate(), name)
		}
	}
}

func TestLoadRejects(t *testing.T) {
	_, err := app.Load("testdata/typo.yaml")
	require.ErrorContains(t, err, `"local.enabeld"`)
	_, err = app.Load("testdata/badduration.yaml")
	require.ErrorContains(t, err, "duration")
}

// TestLocalEngine: local.engine defaults to vlogs (decision 0026), a
// VictoriaLogs directory at local.path; sqlite opens one file there;
// anything else is refused before anything is opened, by run and
// validate alike.
func TestLocalEngine(t *testing.T) {
	cfg := app.DefaultConfig()
	cfg.Kafka.Brokers = []string{"k:9092"}
	require.Equal(t, "vlogs", cfg.Local.Engine)
	require.Equal(t, "auditpipe-events", cfg.Local.Path, "a directory's name: no .db")
	cfg.Local.Path = filepath.Join(t.TempDir(), "vlogs")
	a, err := app.New(cfg, app.Deps{})
	require.NoError(t, err)
	require.NotNil(t, a.Store())
	require.NoError(t, a.Close())
	require.DirExists(t, cfg.Local.Path, "the VictoriaLogs directory")
	require.DirExists(t, cfg.Local.Path+".search-tmp", "the search fallback's temporary stores are on the store's volume")

	sq := cfg
	sq.Local.Engine = "sqlite"
	sq.Local.Path = filepath.Join(t.TempDir(), "events.db")
	a, err = app.New(sq, app.Deps{})
	require.NoError(t, err)
	require.NotNil(t, a.Store())
	require.NoError(t, a.Close())
	require.FileExists(t, sq.Local.Path, "the SQLite file")

	for engine, msg := range map[string]string{
		"VLogs":  `local.engine: "VLogs", want sqlite or vlogs`,
		"SQLite": `local.engine: "SQLite", want sqlite or vlogs`,
		"":       `local.engine: "", want sqlite or vlogs`,
	} {
		c := cfg
		c.Local.Engine = engine
		c.Local.Path = filepath.Join(t.TempDir(), "never", "events.db")
		require.EqualError(t, c.Validate(), msg)
		require.ErrorContains(t, app.Check(&c), msg)
		_, err := app.New(c, app.Deps{})
		require.ErrorContains(t, err, msg)
		require.NoDirExists(t, filepath.Dir(c.Local.Path), "nothing opened")
	}

	c := cfg
	c.Local.Enabled, c.Local.Engine, c.CLS.Mode = false, "vlogs", app.CLSLocal
	require.NoError(t, c.Validate(), "the engine of a disabled store does not matter")
}

func TestValidateNamesTheField(t *testing.T) {
	for field, mut := range map[string]func(*app.Config){
		"brokers":      func(c *app.Config) { c.Kafka.Brokers = nil },
		"maxBatch":     func(c *app.Config) { c.MaxBatch = 0 },
		"no sink":      func(c *app.Config) { c.Local.Enabled = false },
		"local.path":   func(c *app.Config) { c.Local.Path = "" },
		"local.engine": func(c *app.Config) { c.Local.Engine = "sqlite3" },
		"cls.mode":     func(c *app.Config) { c.CLS.Mode = "kafka" },
		"cls.endpoint": func(c *app.Config) {
			c.CLS.Mode = app.CLSCloud
			c.FleetFile = "f"
			c.CLS.SecretID, c.CLS.SecretKey = "a", "b"
		},
		"cls.secretKey":   func(c *app.Config) { c.CLS.Mode = app.CLSCloud; c.FleetFile = "f"; c.CLS.Endpoint = "e" },
		"retention":       func(c *app.Config) { c.Local.MaxBytes = 5 },
		"cls.compression": func(c *app.Config) { c.CLS.Mode = app.CLSLocal; c.CLS.Compression = "gzip" },
		// The search API, served with the local store.
		"api.listen":    func(c *app.Config) { c.API.Listen = "8080" },
		"api.token":     func(c *app.Config) { c.API.Listen = ":8080" },
		"api.tls":       func(c *app.Config) { c.API.Listen = "0.0.0.0:8080"; c.API.Token = "t" },
		"api.tokenFile": func(c *app.Config) { c.API.Listen = "127.0.0.1:8080"; c.API.Token = "t"; c.API.TokenFile = "f" },
		"api.tls.keyFile": func(c *app.Config) {
			c.API.Listen, c.API.TokenFile, c.API.TLS.CertFile = ":8080", "f", "c"
		},
	} {
		c := app.DefaultConfig()
		c.API.Listen = "" // no search API here
		c.Kafka.Brokers = []string{"k:9092"}
		require.NoError(t, c.Validate())
		mut(&c)
		err := c.Validate()
		require.Error(t, err, field)
		if field != "no sink" {
			require.Contains(t, err.Error(), field)
		}
	}
}

// TestCLSLocalMode wires both sinks with the in-process CLS stand-in and
// hands the handler a batch directly: the store and the stand-in both get
// every event, and the metrics lint clean.
func TestCLSLocalMode(t *testing.T) {
	cfg := app.DefaultConfig()
	cfg.API.Listen = "" // no search API here
	cfg.Kafka.Brokers = []string{"unused:9092"}
	cfg.Local.Path = filepath.Join(t.TempDir(), "store")
	cfg.CLS.Mode = app.CLSLocal
	reg := prometheus.NewRegistry()
	a, err := app.New(cfg, app.Deps{Registerer: reg})
	require.NoError(t, err)
	defer func() { require.NoError(t, a.Close()) }()
	srv, url := a.CLSLocal()
	require.NotNil(t, srv)
	require.NotEmpty(t, url)
	recs := make([]kafka.Record, 20)
	for i := range recs {
		recs[i] = kafka.Record{Topic: "audit.events", Offset: int64(i),
			Value: eventgen.Event("dev-1", "id-"+string(rune('a'+i)), 1000, time.Now())}
	}
	require.Len(t, a.Sinks(), 2)
	for _, sg := range a.Sinks() {
		require.NoError(t, sg.Handler.Handle(context.Background(), kafka.Batch{Topic: "audit.events", Records: recs, HighWatermark: 25}))
	}
	require.Equal(t, cfg.Group, a.Sinks()[0].Group, "the local store keeps the group id it had before 0018")
	require.Equal(t, cfg.Group+".cls", a.Sinks()[1].Group)
	require.Equal(t, int64(20), srv.LogCount("local-dev-1"))
	require.Equal(t, 5.0, testutil.ToFloat64(lagGauge(t, reg)))
	problems, err := testutil.GatherAndLint(reg)
	require.NoError(t, err)
	require.Empty(t, problems)
	require.Error(t, a.Run(context.Background()), "no group")
}

func lagGauge(t *testing.T, reg *prometheus.Registry) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "lag"})
	for _, mf := range mfs {
		if mf.GetName() == "auditpipe_consumer_partition_lag_records" {
			g.Set(mf.GetMetric()[0].GetGauge().GetValue())
			return g
		}
	}
	t.Fatal("no lag metric")
	return nil
}

// TestProvisionedTopics: a fleet cluster given by logset and topicName gets
// its topic created at startup through the management API, and its events
// go to that topic.
func TestProvisionedTopics(t *testing.T) {
	api := clslocal.NewManagementAPI()
	apiSrv := httptest.NewServer(api)
	defer apiSrv.Close()
	upload := clslocal.New(clslocal.Options{Credentials: []clslocal.Credential{{SecretID: "AKIDp", SecretKey: "kp"}}})
	upSrv := httptest.NewServer(upload.Handler())
	defer upSrv.Close()
	dir := t.TempDir()
	fleetFile := filepath.Join(dir, "fleet.yaml")
	require.NoError(t, os.WriteFile(fleetFile, []byte("clusters:\n  prod-1:\n    cls: {logset: audit, topicName: prod-1-audit}\n  dev-1:\n    cls: {topicID: fixed-dev}\n"), 0o600))

	cfg := app.DefaultConfig()
	cfg.API.Listen = "" // no search API here
	cfg.Kafka.Brokers = []string{"unused:9092"}
	cfg.Local.Enabled = false
	cfg.FleetFile = fleetFile
	cfg.CLS = app.CLSConfig{Mode: app.CLSCloud, Endpoint: upSrv.URL, SecretID: "AKIDp", SecretKey: "kp",
		Region: "ap-guangzhou", APIEndpoint: apiSrv.URL}
	a, err := app.New(cfg, app.Deps{})
	require.NoError(t, err)
	defer func() { require.NoError(t, a.Close()) }()
	require.Equal(t, 1, api.Calls("CreateTopic"))
	recs := []kafka.Record{
		{Value: eventgen.Event("prod-1", "p1", 900, time.Now())},
		{Value: eventgen.Event("dev-1", "d1", 900, time.Now())},
	}
	require.NoError(t, a.Handler(app.SinkCLS).Handle(context.Background(), kafka.Batch{Topic: "audit.events", Records: recs}))
	require.Equal(t, int64(1), upload.LogCount("tp-prod-1-audit"))
	require.Equal(t, int64(1), upload.LogCount("fixed-dev"))

	// A provisioning failure stops the start, naming the cluster.
	api.FailCreateTopic("LimitExceeded.Topic")
	require.NoError(t, os.WriteFile(fleetFile, []byte("clusters:\n  prod-2:\n    cls: {logset: audit, topicName: prod-2-audit}\n"), 0o600))
	_, err = app.New(cfg, app.Deps{})
	require.ErrorContains(t, err, "cluster prod-2")
	require.ErrorContains(t, err, "LimitExceeded.Topic")
}
