package main

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// maxImageBytes bounds the compressed image: the three stripped binaries
// come to about a third of it today; a jump past it means something large
// slipped in (debug info, a dynamic build, an extra binary).
const maxImageBytes = 40 << 20

// staticBins builds the image's binaries once per test run, as make image
// does (CGO_ENABLED=0, -trimpath, stripped). FLEETACS_STATIC_BIN_DIR names
// a directory of already built ones instead.
var staticBins = sync.OnceValues(func() (string, error) {
	if d := os.Getenv("FLEETACS_STATIC_BIN_DIR"); d != "" {
		return d, nil
	}
	dir, err := os.MkdirTemp("", "fleetacs-static-")
	if err != nil {
		return "", err
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		return "", err
	}
	for _, p := range []struct{ name, pkg string }{
		{"fleetacs", "./cmd/fleetacs"}, {"fleetctl", "./cmd/fleetctl"}, {"cpesim", "./tools/cpesim"},
	} {
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", filepath.Join(dir, p.name), p.pkg)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", &buildError{p.pkg, err, out}
		}
	}
	return dir, nil
})

type buildError struct {
	pkg string
	err error
	out []byte
}

func (e *buildError) Error() string {
	return "build " + e.pkg + ": " + e.err.Error() + "\n" + string(e.out)
}

func bins(t *testing.T) string {
	t.Helper()
	d, err := staticBins()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestImageReproducible(t *testing.T) {
	src := bins(t)
	// Two copies of the binaries with different mtimes and modes: the
	// image must not see either.
	a, b := t.TempDir(), t.TempDir()
	for i, d := range []string{a, b} {
		for _, n := range defaultBinaries {
			data, err := os.ReadFile(filepath.Join(src, n))
			if err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(d, n)
			if err := os.WriteFile(p, data, os.FileMode(0o700+i*0o55)); err != nil {
				t.Fatal(err)
			}
			mt := time.Date(2001+i*20, 1, 1, 0, 0, 0, 0, time.UTC)
			if err := os.Chtimes(p, mt, mt); err != nil {
				t.Fatal(err)
			}
		}
	}
	outA, outB := filepath.Join(t.TempDir(), "oci"), filepath.Join(t.TempDir(), "oci")
	tarA := filepath.Join(t.TempDir(), "img.tar")
	if err := run(config{binDir: a}, "fleetacs,fleetctl,cpesim", outA, tarA, "fleetacs:test", "1700000000", ""); err != nil {
		t.Fatal(err)
	}
	if err := run(config{binDir: b}, "fleetacs,fleetctl,cpesim", outB, "", "fleetacs:test", "1700000000", ""); err != nil {
		t.Fatal(err)
	}
	imgA, imgB := readLayout(t, outA), readLayout(t, outB)
	dA, dB := digest(t, imgA), digest(t, imgB)
	if dA != dB {
		t.Fatalf("two builds of the same binaries differ: %s and %s", dA, dB)
	}
	// The layout's index itself is byte for byte the same.
	ia, _ := os.ReadFile(filepath.Join(outA, "index.json"))
	ib, _ := os.ReadFile(filepath.Join(outB, "index.json"))
	if !bytes.Equal(ia, ib) || len(ia) == 0 {
		t.Fatalf("index.json differs or is empty:\n%s\n%s", ia, ib)
	}
	// The docker-load tarball holds the same configuration and layer (its
	// manifest is Docker's, so its digest differs).
	ti, err := tarball.ImageFromPath(tarA, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ct, cl := configName(t, ti), configName(t, imgA); ct != cl {
		t.Fatalf("tarball image config %s, layout image config %s", ct, cl)
	}

	// Another creation time is another image: the epoch is really used.
	outC := filepath.Join(t.TempDir(), "oci")
	if err := run(config{binDir: a}, "fleetacs,fleetctl,cpesim", outC, "", "fleetacs:test", "1700000001", ""); err != nil {
		t.Fatal(err)
	}
	if d := digest(t, readLayout(t, outC)); d == dA {
		t.Fatal("a different -epoch gave the same digest")
	}
}

func TestImageContents(t *testing.T) {
	out := filepath.Join(t.TempDir(), "oci")
	if err := run(config{binDir: bins(t)}, "fleetacs,fleetctl,cpesim", out, "", "fleetacs:test", "", "org.opencontainers.image.version=test"); err != nil {
		t.Fatal(err)
	}
	img := readLayout(t, out)
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cf.Config
	if c.User != "65532:65532" {
		t.Errorf("user %q, want 65532:65532", c.User)
	}
	if len(c.Entrypoint) != 1 || c.Entrypoint[0] != "/usr/local/bin/fleetacs" {
		t.Errorf("entrypoint %q", c.Entrypoint)
	}
	if strings.Join(c.Cmd, " ") != "all" || c.WorkingDir != "/var/lib/fleetacs" {
		t.Errorf("cmd %q, working dir %q", c.Cmd, c.WorkingDir)
	}
	if cf.OS != "linux" || cf.Architecture == "" {
		t.Errorf("platform %s/%s", cf.OS, cf.Architecture)
	}
	if c.Labels["org.opencontainers.image.version"] != "test" {
		t.Errorf("labels %v", c.Labels)
	}
	if _, ok := c.ExposedPorts["7547/tcp"]; !ok {
		t.Errorf("exposed ports %v lack 7547/tcp", c.ExposedPorts)
	}
	if !cf.Created.Time.Equal(time.Unix(0, 0)) {
		t.Errorf("created %s, want the epoch 0 default", cf.Created.Time)
	}

	// Size bound on what a registry stores and a node pulls.
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers %d, %v: want one", len(layers), err)
	}
	size, err := layers[0].Size()
	if err != nil {
		t.Fatal(err)
	}
	if size > maxImageBytes {
		t.Errorf("compressed layer %d bytes, over %d", size, maxImageBytes)
	}
	t.Logf("compressed layer: %.1f MiB", float64(size)/(1<<20))

	// The files: every binary, static, owned by root, no shell; the
	// working directory owned by the user.
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	seen := map[string]*tar.Header{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		seen[h.Name] = h
		if !h.ModTime.Equal(time.Unix(0, 0)) || h.Uname != "" || h.Gname != "" {
			t.Errorf("%s: mtime %s, owner names %q/%q: want the epoch and none", h.Name, h.ModTime, h.Uname, h.Gname)
		}
		if strings.HasPrefix(h.Name, "usr/local/bin/") && h.Typeflag == tar.TypeReg {
			data, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			f, err := elf.NewFile(bytes.NewReader(data))
			if err != nil {
				t.Fatalf("%s: %v", h.Name, err)
			}
			for _, p := range f.Progs {
				if p.Type == elf.PT_INTERP {
					t.Errorf("%s has an ELF interpreter: not static", h.Name)
				}
			}
			if h.Uid != 0 || h.Mode != 0o755 {
				t.Errorf("%s: uid %d mode %o, want root-owned 0755 (the user cannot replace it)", h.Name, h.Uid, h.Mode)
			}
		}
	}
	for _, n := range defaultBinaries {
		if seen["usr/local/bin/"+n] == nil {
			t.Errorf("binary %s missing", n)
		}
	}
	for _, sh := range []string{"bin/sh", "usr/bin/sh", "bin/bash"} {
		if seen[sh] != nil {
			t.Errorf("%s present: the image carries no shell", sh)
		}
	}
	if h := seen["var/lib/fleetacs/data/"]; h == nil || h.Uid != uid || h.Mode != 0o700 {
		t.Errorf("data directory %+v: want uid %d mode 0700", h, uid)
	}
	if h := seen["etc/passwd"]; h == nil {
		t.Error("no /etc/passwd")
	}
}

// A binary that needs the dynamic loader would not start on the empty base:
// the build refuses it, as it refuses a missing binary.
func TestImageRefusesDynamicAndMissing(t *testing.T) {
	var dyn string
	for _, p := range []string{"/bin/true", "/usr/bin/true", "/bin/ls", "/usr/bin/env"} {
		f, err := elf.Open(p)
		if err != nil {
			continue
		}
		for _, pr := range f.Progs {
			if pr.Type == elf.PT_INTERP {
				dyn = p
			}
		}
		f.Close()
		if dyn != "" {
			break
		}
	}
	if dyn == "" {
		t.Fatal("no dynamically linked system binary to test with")
	}
	dir := t.TempDir()
	data, err := os.ReadFile(dyn)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "fleetacs"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	_, err = build(config{binDir: dir, binaries: []string{"fleetacs"}})
	if err == nil || !strings.Contains(err.Error(), "dynamically linked") {
		t.Fatalf("dynamic binary: err %v, want dynamically linked", err)
	}
	_, err = build(config{binDir: bins(t), binaries: []string{"fleetacs", "nosuch"}})
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing binary: err %v", err)
	}
	if _, err = build(config{binDir: bins(t), binaries: []string{"fleetctl"}}); err == nil {
		t.Fatal("an image without fleetacs, its entry point, was built")
	}
	if err := os.WriteFile(filepath.Join(dir, "fleetacs"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err = build(config{binDir: dir, binaries: []string{"fleetacs"}}); err == nil || !strings.Contains(err.Error(), "not an ELF") {
		t.Fatalf("script: err %v, want not an ELF", err)
	}
}

func readLayout(t *testing.T, dir string) v1.Image {
	t.Helper()
	p, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Manifests) != 1 {
		t.Fatalf("layout holds %d manifests, want 1", len(m.Manifests))
	}
	if m.Manifests[0].Annotations["org.opencontainers.image.ref.name"] == "" {
		t.Error("the layout's manifest has no ref.name annotation")
	}
	img, err := idx.Image(m.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func digest(t *testing.T, img v1.Image) v1.Hash {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func configName(t *testing.T, img v1.Image) v1.Hash {
	t.Helper()
	d, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	return d
}
