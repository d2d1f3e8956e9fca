package image

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// repoRoot is the repository's root directory (this package is
// deploy/image).
func repoRoot(t *testing.T) string {
	t.Helper()
	abs, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

// fakeBinaries writes small stand-ins for the four binaries.
func fakeBinaries(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, b := range Binaries {
		if err := os.WriteFile(filepath.Join(dir, b), []byte("binary "+b), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func testConfig(binDir string) Config {
	return Config{
		BinDir: binDir, Version: "v1.2.3", Revision: "abc123", Source: "https://github.com/auditpipe/auditpipe",
		Created: time.Unix(1700000000, 0).UTC(), OS: "linux", Arch: runtime.GOARCH,
	}
}

func fileSHA(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// TestReproducible builds the image twice from the same binaries, in two
// layouts and tarballs, and wants the same digest and the same bytes.
func TestReproducible(t *testing.T) {
	bin := fakeBinaries(t)
	dir := t.TempDir()
	var digests []v1.Hash
	var tars []string
	for i := range 2 {
		cfg := testConfig(bin)
		cfg.CABundle = FirstCABundle()
		img, err := Build(cfg)
		if err != nil {
			t.Fatal(err)
		}
		d, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		digests = append(digests, d)
		lay := filepath.Join(dir, "layout", string(rune('a'+i)))
		if err := WriteLayout(lay, img, "example.com/auditpipe:test"); err != nil {
			t.Fatal(err)
		}
		tp := filepath.Join(dir, string(rune('a'+i))+".tar")
		if err := WriteTarball(tp, img, "example.com/auditpipe:test"); err != nil {
			t.Fatal(err)
		}
		tars = append(tars, tp)
		// Sleep past a second boundary: a timestamp taken from the clock
		// anywhere in the build would change the second digest.
		time.Sleep(1100 * time.Millisecond)
	}
	if digests[0] != digests[1] {
		t.Fatalf("digests differ: %s, %s", digests[0], digests[1])
	}
	if a, b := fileSHA(t, tars[0]), fileSHA(t, tars[1]); a != b {
		t.Fatalf("tarballs differ: %s, %s", a, b)
	}
	if a, b := fileSHA(t, filepath.Join(dir, "layout", "a", "index.json")), fileSHA(t, filepath.Join(dir, "layout", "b", "index.json")); a != b {
		t.Fatalf("layout indexes differ")
	}
	// A different binary must give a different digest, or the check above
	// proves nothing.
	if err := os.WriteFile(filepath.Join(bin, "producer"), []byte("other"), 0o755); err != nil {
		t.Fatal(err)
	}
	img, err := Build(testConfig(bin))
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := img.Digest(); d == digests[0] {
		t.Fatal("changing a binary did not change the digest")
	}
}

// TestImageContents checks the config (user, command, labels, timestamps)
// and the file system (sorted, owners, modes) of the tarball's image.
func TestImageContents(t *testing.T) {
	bin := fakeBinaries(t)
	img, err := Build(testConfig(bin))
	if err != nil {
		t.Fatal(err)
	}
	tp := filepath.Join(t.TempDir(), "img.tar")
	if err := WriteTarball(tp, img, "example.com/auditpipe:test"); err != nil {
		t.Fatal(err)
	}
	loaded, err := tarball.ImageFromPath(tp, nil)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := loaded.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Config.User != "65532:65532" {
		t.Errorf("user %q", cf.Config.User)
	}
	if strings.Join(cf.Config.Cmd, " ") != Entrypoint || len(cf.Config.Entrypoint) != 0 {
		t.Errorf("cmd %q entrypoint %q", cf.Config.Cmd, cf.Config.Entrypoint)
	}
	for k, want := range map[string]string{
		"org.opencontainers.image.version":  "v1.2.3",
		"org.opencontainers.image.revision": "abc123",
		"org.opencontainers.image.source":   "https://github.com/auditpipe/auditpipe",
	} {
		if cf.Config.Labels[k] != want {
			t.Errorf("label %s = %q, want %q", k, cf.Config.Labels[k], want)
		}
	}
	if !cf.Created.Time.Equal(time.Unix(1700000000, 0)) || cf.OS != "linux" {
		t.Errorf("created %v os %s", cf.Created, cf.OS)
	}
	files := layerFiles(t, loaded)
	var names []string
	for _, f := range files {
		names = append(names, f.hdr.Name)
		if !f.hdr.ModTime.Equal(time.Unix(1700000000, 0)) {
			t.Errorf("%s: mtime %v", f.hdr.Name, f.hdr.ModTime)
		}
	}
	for i := 1; i < len(names); i++ {
		if names[i-1] >= names[i] {
			t.Errorf("tar entries not sorted: %q before %q", names[i-1], names[i])
		}
	}
	byName := map[string]layerFile{}
	for _, f := range files {
		byName[f.hdr.Name] = f
	}
	for _, b := range Binaries {
		f, ok := byName["usr/local/bin/"+b]
		if !ok || f.hdr.Mode != 0o755 || string(f.data) != "binary "+b {
			t.Errorf("usr/local/bin/%s: %+v", b, f.hdr)
		}
	}
	if !strings.Contains(string(byName["etc/passwd"].data), "nonroot:x:65532:65532:") {
		t.Errorf("passwd: %q", byName["etc/passwd"].data)
	}
	if h := byName["home/nonroot/"].hdr; h == nil || h.Uid != NonRoot {
		t.Errorf("home/nonroot not owned by %d", NonRoot)
	}
}

type layerFile struct {
	hdr  *tar.Header
	data []byte
}

func layerFiles(t *testing.T, img v1.Image) []layerFile {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != 1 {
		t.Fatalf("%d layers, want 1", len(layers))
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var out []layerFile
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if _, err := io.Copy(&buf, tr); err != nil {
			t.Fatal(err)
		}
		out = append(out, layerFile{h, buf.Bytes()})
	}
}

// makeVar returns the value of the Makefile's variable name, with
// $(VERSION) and $(REVISION) replaced by version and revision.
func makeVar(t *testing.T, name, version, revision string) string {
	t.Helper()
	mk, err := os.ReadFile(filepath.Join(repoRoot(t), "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^` + name + ` :?= (.*)$`).FindSubmatch(mk)
	if m == nil {
		t.Fatalf("Makefile: no %s", name)
	}
	return strings.NewReplacer("$(VERSION)", version, "$(REVISION)", revision).Replace(string(m[1]))
}

// TestEntrypointRuns builds the four binaries as `make image` does (static,
// with the Makefile's IMAGE_LDFLAGS), puts them in an image layout, opens
// the layout again, extracts each binary and runs its `version`, which
// must print the version and revision the ldflags stamped in: a renamed
// variable in internal/cli or a typo in the Makefile leaves "devel".
func TestEntrypointRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binaries")
	}
	const version, revision = "v9.8.7-test", "0123456789abcdef0123456789abcdef01234567"
	ldflags := makeVar(t, "IMAGE_LDFLAGS", version, revision)
	for _, v := range []string{"version", "revision"} {
		x := "-X github.com/auditpipe/auditpipe/internal/cli." + v + "="
		if !strings.Contains(ldflags, x) || !strings.Contains(makeVar(t, "LDFLAGS", version, revision), x) {
			t.Fatalf("Makefile: LDFLAGS and IMAGE_LDFLAGS must both set %s", x)
		}
	}
	bin := t.TempDir()
	build := exec.Command("go", "build", "-trimpath", "-buildvcs=false", "-ldflags", ldflags, "-o", bin+string(filepath.Separator),
		"./producer/cmd/producer", "./processor/cmd/processor", "./consumer/cmd/consumer", "./deploy/local/cmd/auditpipe")
	build.Dir = repoRoot(t)
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	img, err := Build(testConfig(bin))
	if err != nil {
		t.Fatal(err)
	}
	lay := filepath.Join(t.TempDir(), "layout")
	if err := WriteLayout(lay, img, "example.com/auditpipe:test"); err != nil {
		t.Fatal(err)
	}

	p, err := layout.FromPath(lay)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 || im.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != "example.com/auditpipe:test" {
		t.Fatalf("layout index: %+v", im.Manifests)
	}
	opened, err := p.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := opened.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Config.Cmd[0] != "/usr/local/bin/auditpipe" {
		t.Errorf("image command %q, want /usr/local/bin/auditpipe", cf.Config.Cmd)
	}
	files := map[string][]byte{}
	for _, f := range layerFiles(t, opened) {
		files[f.hdr.Name] = f.data
	}
	for _, b := range Binaries {
		exe, ok := files["usr/local/bin/"+b]
		if !ok {
			t.Errorf("/usr/local/bin/%s is not in the layer", b)
			continue
		}
		path := filepath.Join(t.TempDir(), b)
		if err := os.WriteFile(path, exe, 0o755); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(path, "version").CombinedOutput()
		if err != nil {
			t.Errorf("%s version: %v\n%s", b, err, out)
			continue
		}
		want := fmt.Sprintf("%s %s (%s, %s)\n", b, version, revision, runtime.Version())
		if string(out) != want {
			t.Errorf("%s version printed %q, want %q", b, out, want)
		}
	}
}
