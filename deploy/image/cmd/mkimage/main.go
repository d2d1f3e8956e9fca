// Command mkimage writes auditpipe's container image from prebuilt static
// binaries, as an OCI image layout and a `docker load` tarball, without a
// container engine or registry. `make image` runs it.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"time"

	"github.com/auditpipe/auditpipe/deploy/image"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "mkimage:", err)
		}
		os.Exit(2)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("mkimage", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := image.Config{OS: "linux", Arch: runtime.GOARCH}
	fs.StringVar(&cfg.BinDir, "bin-dir", "", "`directory` with the static binaries auditpipe, consumer, processor, producer (required)")
	fs.StringVar(&cfg.CABundle, "ca-bundle", image.FirstCABundle(), "CA bundle `file` for /etc/ssl/certs/ca-certificates.crt; empty leaves it out")
	fs.StringVar(&cfg.Version, "version", "dev", "org.opencontainers.image.version")
	fs.StringVar(&cfg.Revision, "revision", "", "org.opencontainers.image.revision (the git commit)")
	fs.StringVar(&cfg.Source, "source", "https://github.com/auditpipe/auditpipe", "org.opencontainers.image.source")
	fs.StringVar(&cfg.Arch, "arch", cfg.Arch, "GOARCH the binaries were built for")
	epoch := fs.String("source-date-epoch", os.Getenv("SOURCE_DATE_EPOCH"), "unix `seconds` used as every timestamp (default $SOURCE_DATE_EPOCH, else 0)")
	ref := fs.String("ref", "ghcr.io/auditpipe/auditpipe:dev", "image `reference` recorded in the layout and tarball")
	layoutDir := fs.String("layout", "", "OCI image layout `directory` to write (replaced)")
	tarPath := fs.String("tar", "", "`file` for the docker-load tarball; empty writes none")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if cfg.BinDir == "" || *layoutDir == "" {
		return errors.New("--bin-dir and --layout are required")
	}
	secs := int64(0)
	if *epoch != "" {
		n, err := strconv.ParseInt(*epoch, 10, 64)
		if err != nil {
			return fmt.Errorf("--source-date-epoch: %w", err)
		}
		secs = n
	}
	cfg.Created = time.Unix(secs, 0).UTC()
	img, err := image.Build(cfg)
	if err != nil {
		return err
	}
	if err := image.WriteLayout(*layoutDir, img, *ref); err != nil {
		return err
	}
	if *tarPath != "" {
		if err := image.WriteTarball(*tarPath, img, *ref); err != nil {
			return err
		}
	}
	digest, err := img.Digest()
	if err != nil {
		return fmt.Errorf("digest: %w", err)
	}
	fmt.Fprintf(stdout, "%s %s\n", *ref, digest)
	return nil
}
