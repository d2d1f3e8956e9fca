// Package image builds auditpipe's container image without a container
// engine: one layer on an empty base holding the four static binaries, a
// passwd and group file with the nonroot user (65532) and the host's CA
// bundle, written as an OCI image layout and a `docker load` tarball.
//
// The build is reproducible: every timestamp is the given Created time,
// tar entries are sorted and owned by fixed ids, so the same binaries give
// the same digest. deploy/image/Dockerfile builds the same file system for
// users who have a container engine.
package image

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Binaries are the programs in /usr/local/bin; Entrypoint is the image's
// default command.
var Binaries = []string{"auditpipe", "consumer", "processor", "producer"}

// Entrypoint is the image's default command (there is no ENTRYPOINT, so
// `docker run IMAGE processor run ...` works too).
const Entrypoint = "/usr/local/bin/auditpipe"

// NonRoot is the uid and gid the image runs as, distroless' nonroot.
const NonRoot = 65532

// Config says what goes into the image.
type Config struct {
	// BinDir holds the four binaries, built static (CGO_ENABLED=0).
	BinDir string
	// CABundle is copied to /etc/ssl/certs/ca-certificates.crt; empty
	// leaves it out (the stages then need their CA files mounted).
	CABundle string
	// Version, Revision and Source become the org.opencontainers.image
	// labels of the same names.
	Version, Revision, Source string
	// Created is every timestamp in the image (SOURCE_DATE_EPOCH).
	Created time.Time
	// OS and Arch of the binaries.
	OS, Arch string
}

// Build assembles the image.
func Build(cfg Config) (v1.Image, error) {
	if cfg.OS == "" || cfg.Arch == "" {
		return nil, errors.New("image: OS and Arch are required")
	}
	layerTar, err := fileSystem(cfg)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, fmt.Errorf("image: layer: %w", err)
	}
	base := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	base = mutate.ConfigMediaType(base, types.OCIConfigJSON)
	img, err := mutate.Append(base, mutate.Addendum{
		Layer:     layer,
		MediaType: types.OCILayer,
		History: v1.History{
			Created:   v1.Time{Time: cfg.Created},
			CreatedBy: "auditpipe mkimage: /usr/local/bin/{" + joinNames() + "}, /etc/passwd, /etc/group, CA bundle",
		},
	})
	if err != nil {
		return nil, fmt.Errorf("image: append layer: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("image: config: %w", err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = cfg.OS, cfg.Arch
	cf.Created = v1.Time{Time: cfg.Created}
	cf.Config.User = fmt.Sprintf("%d:%d", NonRoot, NonRoot)
	cf.Config.WorkingDir = "/home/nonroot"
	cf.Config.Cmd = []string{Entrypoint}
	cf.Config.Entrypoint = nil
	cf.Config.Env = []string{"PATH=/usr/local/bin", "HOME=/home/nonroot"}
	if cfg.CABundle != "" {
		cf.Config.Env = append(cf.Config.Env, "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt")
	}
	cf.Config.Labels = map[string]string{
		"org.opencontainers.image.version":  cfg.Version,
		"org.opencontainers.image.revision": cfg.Revision,
		"org.opencontainers.image.source":   cfg.Source,
		"org.opencontainers.image.title":    "auditpipe",
		"org.opencontainers.image.licenses": "Apache-2.0",
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("image: set config: %w", err)
	}
	return img, nil
}

func joinNames() string {
	var b bytes.Buffer
	for i, n := range Binaries {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(n)
	}
	return b.String()
}

// entry is one file or directory of the layer.
type entry struct {
	name     string
	mode     int64
	uid, gid int
	dir      bool
	data     []byte
}

// fileSystem is the layer's tar: sorted, fixed owners and times.
func fileSystem(cfg Config) ([]byte, error) {
	entries := []entry{
		{name: "etc/", mode: 0o755, dir: true},
		{name: "etc/passwd", mode: 0o644, data: []byte("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")},
		{name: "etc/group", mode: 0o644, data: []byte("root:x:0:\nnonroot:x:65532:\n")},
		{name: "home/", mode: 0o755, dir: true},
		{name: "home/nonroot/", mode: 0o700, dir: true, uid: NonRoot, gid: NonRoot},
		{name: "tmp/", mode: 0o1777, dir: true},
		{name: "usr/", mode: 0o755, dir: true},
		{name: "usr/local/", mode: 0o755, dir: true},
		{name: "usr/local/bin/", mode: 0o755, dir: true},
	}
	for _, b := range Binaries {
		data, err := os.ReadFile(filepath.Join(cfg.BinDir, b))
		if err != nil {
			return nil, fmt.Errorf("image: binary %s: %w", b, err)
		}
		entries = append(entries, entry{name: "usr/local/bin/" + b, mode: 0o755, data: data})
	}
	if cfg.CABundle != "" {
		data, err := os.ReadFile(cfg.CABundle)
		if err != nil {
			return nil, fmt.Errorf("image: CA bundle: %w", err)
		}
		entries = append(entries,
			entry{name: "etc/ssl/", mode: 0o755, dir: true},
			entry{name: "etc/ssl/certs/", mode: 0o755, dir: true},
			entry{name: "etc/ssl/certs/ca-certificates.crt", mode: 0o644, data: data})
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].name < entries[j].name })

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{
			Name: e.name, Mode: e.mode, Uid: e.uid, Gid: e.gid,
			ModTime: cfg.Created, Format: tar.FormatPAX,
		}
		if e.dir {
			h.Typeflag = tar.TypeDir
		} else {
			h.Typeflag = tar.TypeReg
			h.Size = int64(len(e.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("image: tar %s: %w", e.name, err)
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, fmt.Errorf("image: tar %s: %w", e.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("image: tar: %w", err)
	}
	return buf.Bytes(), nil
}

// WriteLayout writes img as an OCI image layout in dir (replacing what
// was there), tagged ref.
func WriteLayout(dir string, img v1.Image, ref string) error {
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("image: clear %s: %w", dir, err)
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return fmt.Errorf("image: layout %s: %w", dir, err)
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": ref,
	})); err != nil {
		return fmt.Errorf("image: layout %s: %w", dir, err)
	}
	return nil
}

// WriteTarball writes img as a tarball that `docker load` and `podman
// load` read, tagged ref.
func WriteTarball(path string, img v1.Image, ref string) error {
	tag, err := name.NewTag(ref)
	if err != nil {
		return fmt.Errorf("image: tag %q: %w", ref, err)
	}
	if err := tarball.WriteToFile(path, tag, img); err != nil {
		return fmt.Errorf("image: tarball %s: %w", path, err)
	}
	return nil
}

// FirstCABundle returns the first of the usual CA bundle paths that
// exists, or "".
func FirstCABundle() string {
	for _, p := range []string{
		"/etc/ssl/certs/ca-certificates.crt", // Debian, Ubuntu, Alpine
		"/etc/pki/tls/certs/ca-bundle.crt",   // Fedora, RHEL
		"/etc/ssl/cert.pem",                  // macOS, OpenBSD
	} {
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			return p
		}
	}
	return ""
}
