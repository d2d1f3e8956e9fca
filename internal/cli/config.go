package cli

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"sort"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/auditpipe/auditpipe/internal/config"
)

// Common is the part of every stage's config file that this package acts
// on. Stages embed it inline:
//
//	type Config struct {
//		cli.Common `json:",inline"`
//		...
//	}
type Common struct {
	Log     LogConfig     `json:"log"`
	Metrics MetricsConfig `json:"metrics"`
	// ShutdownTimeout bounds the drain on SIGTERM: in-flight work
	// finishes, then the process exits even if some did not.
	ShutdownTimeout config.Duration `json:"shutdownTimeout"`
}

// LogConfig configures the structured logs.
type LogConfig struct {
	Level  string `json:"level"`  // debug, info, warn, error
	Format string `json:"format"` // json, text
}

// MetricsConfig configures the server of /metrics, /healthz and /readyz.
type MetricsConfig struct {
	// Listen is host:port; empty disables the server.
	Listen string `json:"listen"`
}

// DefaultCommon returns the defaults with the stage's metrics address.
func DefaultCommon(metricsListen string) Common {
	return Common{
		Log:             LogConfig{Level: "info", Format: "json"},
		Metrics:         MetricsConfig{Listen: metricsListen},
		ShutdownTimeout: config.Duration(30 * time.Second),
	}
}

// CommonConfig is implemented by a stage config that embeds Common.
type CommonConfig interface{ CommonConfig() *Common }

// CommonConfig returns c, so that a config embedding Common implements
// the interface of the same name.
func (c *Common) CommonConfig() *Common { return c }

// Validate checks the common keys.
func (c Common) Validate() error {
	switch strings.ToLower(c.Log.Level) {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("log.level (--log-level): %q, want debug, info, warn or error", c.Log.Level)
	}
	switch strings.ToLower(c.Log.Format) {
	case "json", "text":
	default:
		return fmt.Errorf("log.format (--log-format): %q, want json or text", c.Log.Format)
	}
	if c.Metrics.Listen != "" {
		if _, _, err := net.SplitHostPort(c.Metrics.Listen); err != nil {
			return fmt.Errorf("metrics.listen (--metrics-listen): %w", err)
		}
	}
	if c.ShutdownTimeout <= 0 {
		return fmt.Errorf("shutdownTimeout: %s, want > 0", time.Duration(c.ShutdownTimeout))
	}
	return nil
}

// RegisterFlags binds the common flags to c: flags parsed after the
// config file was loaded into c override it.
func (c *Common) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Metrics.Listen, "metrics-listen", c.Metrics.Listen, "`host:port` of /metrics, /healthz and /readyz; \"\" disables (metrics.listen)")
	fs.StringVar(&c.Log.Level, "log-level", c.Log.Level, "debug, info, warn or error (log.level)")
	fs.StringVar(&c.Log.Format, "log-format", c.Log.Format, "json or text (log.format)")
	fs.DurationVar((*time.Duration)(&c.ShutdownTimeout), "shutdown-timeout", time.Duration(c.ShutdownTimeout), "how long SIGTERM may take to drain (shutdownTimeout)")
}

// ConfigArg returns the value of --config (or -config) in args, before
// the flags are parsed: the file is loaded first, then the flags are
// bound to the loaded values so that they override it.
func ConfigArg(args []string) (string, error) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			break
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || name != "config" {
			continue
		}
		if hasValue {
			return value, nil
		}
		if i+1 >= len(args) {
			return "", fmt.Errorf("flag needs an argument: --config")
		}
		return args[i+1], nil
	}
	return "", nil
}

// LoadConfig decodes the YAML file at path into out, which holds the
// defaults (absent keys keep them). Unknown keys are errors naming them.
// In string values ${NAME} is replaced by the environment variable NAME
// (an unset one is an error naming the key and the file) and $${ stands
// for a literal ${. It does not validate: flags come next.
func LoadConfig(path string, out any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read config %s: %w", path, err)
	}
	if err := decodeExpanded(data, out, os.LookupEnv); err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	return nil
}

func decodeExpanded(data []byte, out any, lookup func(string) (string, bool)) error {
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return fmt.Errorf("decode: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.UseNumber() // keep large integers exact through the round trip
	var tree any
	if err := dec.Decode(&tree); err != nil {
		return fmt.Errorf("decode: %w", err)
	}
	if tree, err = expandTree(tree, "", lookup); err != nil {
		return err
	}
	if js, err = json.Marshal(tree); err != nil {
		return fmt.Errorf("decode: %w", err)
	}
	return config.Decode(js, out)
}

func expandTree(v any, path string, lookup func(string) (string, bool)) (any, error) {
	switch t := v.(type) {
	case string:
		s, err := ExpandEnv(t, lookup)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return s, nil
	case map[string]any:
		keys := make([]string, 0, len(t))
		for k := range t {
			keys = append(keys, k)
		}
		sort.Strings(keys) // the first error is the same every time
		for _, k := range keys {
			p := k
			if path != "" {
				p = path + "." + k
			}
			e, err := expandTree(t[k], p, lookup)
			if err != nil {
				return nil, err
			}
			t[k] = e
		}
	case []any:
		for i := range t {
			e, err := expandTree(t[i], fmt.Sprintf("%s[%d]", path, i), lookup)
			if err != nil {
				return nil, err
			}
			t[i] = e
		}
	}
	return v, nil
}

// ExpandEnv replaces ${NAME} in s by lookup(NAME); "$${" is a literal
// "${". Any other "$" is kept. An unset variable or an unterminated "${"
// is an error.
func ExpandEnv(s string, lookup func(string) (string, bool)) (string, error) {
	if !strings.Contains(s, "${") {
		return s, nil
	}
	var b strings.Builder
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			b.WriteString(s)
			return b.String(), nil
		}
		if i > 0 && s[i-1] == '$' {
			b.WriteString(s[:i-1])
			b.WriteString("${")
			s = s[i+2:]
			continue
		}
		b.WriteString(s[:i])
		end := strings.IndexByte(s[i+2:], '}')
		if end < 0 {
			return "", fmt.Errorf("unterminated ${ in %q", s)
		}
		name := s[i+2 : i+2+end]
		if name == "" {
			return "", fmt.Errorf("empty ${} in %q", s)
		}
		v, ok := lookup(name)
		if !ok {
			return "", fmt.Errorf("environment variable %s is not set", name)
		}
		b.WriteString(v)
		s = s[i+2+end+1:]
	}
}

// Secret returns the secret given inline (after ${ENV} expansion) or, when
// file is set, the file's content without its trailing newline. Both set
// is an error naming key: one source per secret.
func Secret(key, inline, file string) (string, error) {
	if file == "" {
		return inline, nil
	}
	if inline != "" {
		return "", fmt.Errorf("%s and %sFile: both set, want one", key, key)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("%sFile: %w", key, err)
	}
	s := strings.TrimRight(string(b), "\r\n")
	if s == "" {
		return "", fmt.Errorf("%sFile %s: empty", key, file)
	}
	return s, nil
}
