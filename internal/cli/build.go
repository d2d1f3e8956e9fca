package cli

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

// version and revision are set at link time, e.g.
//
//	go build -ldflags "-X github.com/auditpipe/auditpipe/internal/cli.version=v1.2.3 -X github.com/auditpipe/auditpipe/internal/cli.revision=abc123"
//
// Link-time variables are the only way the build can name itself; empty
// ones fall back to the module and VCS stamps of debug.ReadBuildInfo.
var version, revision string

// Build describes the running binary.
type Build struct {
	Version   string
	Revision  string
	GoVersion string
}

// BuildInfo returns the binary's version, VCS revision and Go version.
func BuildInfo() Build {
	b := Build{Version: version, Revision: revision, GoVersion: runtime.Version()}
	if info, ok := debug.ReadBuildInfo(); ok {
		if b.Version == "" && info.Main.Version != "" && info.Main.Version != "(devel)" {
			b.Version = info.Main.Version
		}
		if b.Revision == "" {
			modified := false
			for _, s := range info.Settings {
				switch s.Key {
				case "vcs.revision":
					b.Revision = s.Value
				case "vcs.modified":
					modified = s.Value == "true"
				}
			}
			if modified && b.Revision != "" {
				b.Revision += "-dirty"
			}
		}
	}
	if b.Version == "" {
		b.Version = "devel"
	}
	if b.Revision == "" {
		b.Revision = "unknown"
	}
	return b
}

// String is "<version> (<revision>, <goversion>)".
func (b Build) String() string { return fmt.Sprintf("%s (%s, %s)", b.Version, b.Revision, b.GoVersion) }

// RegisterBuildInfo registers auditpipe_build_info{component,version,
// revision,goversion} 1 on reg.
func RegisterBuildInfo(reg prometheus.Registerer, component string) error {
	b := BuildInfo()
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "auditpipe_build_info",
		Help: "The running binary: its component, version, VCS revision and Go version; always 1.",
		ConstLabels: prometheus.Labels{"component": component, "version": b.Version,
			"revision": b.Revision, "goversion": b.GoVersion},
	})
	g.Set(1)
	if err := reg.Register(g); err != nil {
		return fmt.Errorf("register build info: %w", err)
	}
	return nil
}

// VersionCommand is the "version" subcommand of program name: it prints
// "<name> <version> (<revision>, <goversion>)".
func VersionCommand(name string) Command {
	return Command{Name: "version", Summary: "print the version", Run: func(_ context.Context, args []string, stdout, _ io.Writer) error {
		fs := NewFlagSet(name+" version", "Usage: "+name+" version\n\nPrints the version, VCS revision and Go version.", stdout)
		if err := Parse(fs, args, false); err != nil {
			return err
		}
		_, err := fmt.Fprintf(stdout, "%s %s\n", name, BuildInfo())
		return err
	}}
}
