// Command imagebuild builds the FleetACS container image without a Docker
// engine: one layer holding the static binaries of a directory (fleetacs,
// fleetctl, cpesim), a passwd/group naming the non-root user 65532, its
// working directory and, when given, a CA bundle, on an empty base. Every
// file has a fixed owner, mode and modification time, so the same binaries
// give the same image digest wherever and whenever it is built. It writes an
// OCI image layout (for skopeo, crane, containerd or a registry push) and
// optionally a tarball that `docker load` reads.
//
//	go run ./deploy/imagebuild -bin bin/static -out bin/image/oci -tarball bin/image/fleetacs.tar
//
// The image matches the Dockerfile's (docs/deploy.md, "Image").
package main

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The image's fixed facts, shared with the Dockerfile.
const (
	uid        = 65532
	gid        = 65532
	user       = "65532:65532"
	binDir     = "usr/local/bin"
	workDir    = "/var/lib/fleetacs"
	entrypoint = "/usr/local/bin/fleetacs"
)

// defaultBinaries are the programs every image carries.
var defaultBinaries = []string{"fleetacs", "fleetctl", "cpesim"}

// exposedPorts are the Dockerfile's EXPOSE list.
var exposedPorts = []string{"7547/tcp", "7548/tcp", "9100/tcp", "9300/tcp", "9301/tcp", "9380/tcp", "3478/udp"}

// config says what goes into the image.
type config struct {
	binDir   string    // directory holding the binaries
	binaries []string  // their names
	caFile   string    // CA bundle copied to /etc/ssl/certs/ca-certificates.crt ("" none)
	created  time.Time // creation time and every file's mtime
	labels   map[string]string
}

func main() {
	var (
		cfg      config
		bins     string
		outDir   string
		tarPath  string
		tag      string
		epochStr string
		labels   string
	)
	flag.StringVar(&cfg.binDir, "bin", "bin/static", "directory of the static binaries")
	flag.StringVar(&bins, "binaries", strings.Join(defaultBinaries, ","), "binaries to put in "+binDir+", comma-separated; the first is not special, the entry point is always fleetacs")
	flag.StringVar(&cfg.caFile, "ca-file", "", "PEM CA bundle installed as /etc/ssl/certs/ca-certificates.crt (empty: none; the image then trusts no public CA)")
	flag.StringVar(&outDir, "out", "bin/image/oci", "directory of the OCI image layout written (replaced)")
	flag.StringVar(&tarPath, "tarball", "", "also write a docker-load tarball here (empty: none)")
	flag.StringVar(&tag, "tag", "fleetacs:dev", "image reference named in the layout's index and the tarball")
	flag.StringVar(&epochStr, "epoch", os.Getenv("SOURCE_DATE_EPOCH"), "Unix time of the image's creation and its files' mtimes (default $SOURCE_DATE_EPOCH, else 0)")
	flag.StringVar(&labels, "labels", "", "extra image labels, key=value comma-separated (org.opencontainers.image.version=..., ...)")
	flag.Parse()
	if err := run(cfg, bins, outDir, tarPath, tag, epochStr, labels); err != nil {
		fmt.Fprintln(os.Stderr, "imagebuild:", err)
		os.Exit(1)
	}
}

func run(cfg config, bins, outDir, tarPath, tag, epochStr, labels string) error {
	var epoch int64
	if epochStr != "" {
		var err error
		if epoch, err = strconv.ParseInt(epochStr, 10, 64); err != nil || epoch < 0 {
			return fmt.Errorf("-epoch %q: want a Unix time in seconds", epochStr)
		}
	}
	cfg.created = time.Unix(epoch, 0).UTC()
	for _, b := range strings.Split(bins, ",") {
		if b = strings.TrimSpace(b); b != "" {
			cfg.binaries = append(cfg.binaries, b)
		}
	}
	cfg.labels = map[string]string{}
	for _, kv := range strings.Split(labels, ",") {
		if kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return fmt.Errorf("-labels: %q is not key=value", kv)
		}
		cfg.labels[k] = v
	}
	ref, err := name.ParseReference(tag)
	if err != nil {
		return fmt.Errorf("-tag: %w", err)
	}
	img, err := build(cfg)
	if err != nil {
		return err
	}
	if err := writeLayout(img, outDir, ref.Name()); err != nil {
		return err
	}
	if tarPath != "" {
		if err := os.MkdirAll(filepath.Dir(tarPath), 0o755); err != nil {
			return err
		}
		if err := tarball.WriteToFile(tarPath, ref, img); err != nil {
			return fmt.Errorf("write %s: %w", tarPath, err)
		}
	}
	d, err := img.Digest()
	if err != nil {
		return err
	}
	fmt.Printf("%s %s\n", ref.Name(), d)
	return nil
}

// build makes the image.
func build(cfg config) (v1.Image, error) {
	if len(cfg.binaries) == 0 || !contains(cfg.binaries, "fleetacs") {
		return nil, errors.New("the binaries must include fleetacs, the entry point")
	}
	arch := ""
	type file struct {
		name string
		data []byte
	}
	var files []file
	for _, b := range cfg.binaries {
		if strings.ContainsAny(b, `/\`) || b == "." || b == ".." {
			return nil, fmt.Errorf("binary name %q: want a plain file name", b)
		}
		p := filepath.Join(cfg.binDir, b)
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		a, err := checkStatic(p, data)
		if err != nil {
			return nil, err
		}
		if arch != "" && a != arch {
			return nil, fmt.Errorf("%s is built for %s, the others for %s", p, a, arch)
		}
		arch = a
		files = append(files, file{b, data})
	}
	sort.Slice(files, func(i, j int) bool { return files[i].name < files[j].name })

	var ca []byte
	if cfg.caFile != "" {
		var err error
		if ca, err = os.ReadFile(cfg.caFile); err != nil {
			return nil, fmt.Errorf("-ca-file: %w", err)
		}
	}

	// The layer, in a fixed order with fixed metadata.
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	hdr := func(name string, typ byte, mode int64, owner int, size int) error {
		return tw.WriteHeader(&tar.Header{
			Typeflag: typ, Name: name, Mode: mode, Size: int64(size),
			Uid: owner, Gid: owner, ModTime: cfg.created, Format: tar.FormatPAX,
		})
	}
	dir := func(name string, mode int64, owner int) error { return hdr(name+"/", tar.TypeDir, mode, owner, 0) }
	reg := func(name string, mode int64, data []byte) error {
		if err := hdr(name, tar.TypeReg, mode, 0, len(data)); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	passwd := []byte("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/var/lib/fleetacs:/sbin/nologin\n")
	group := []byte("root:x:0:\nnonroot:x:65532:\n")
	steps := []func() error{
		func() error { return dir("etc", 0o755, 0) },
		func() error { return reg("etc/group", 0o644, group) },
		func() error { return reg("etc/passwd", 0o644, passwd) },
	}
	if ca != nil {
		steps = append(steps,
			func() error { return dir("etc/ssl", 0o755, 0) },
			func() error { return dir("etc/ssl/certs", 0o755, 0) },
			func() error { return reg("etc/ssl/certs/ca-certificates.crt", 0o644, ca) },
		)
	}
	steps = append(steps,
		func() error { return dir("tmp", 0o1777, 0) },
		func() error { return dir("usr", 0o755, 0) },
		func() error { return dir("usr/local", 0o755, 0) },
		func() error { return dir(binDir, 0o755, 0) },
	)
	for _, f := range files {
		steps = append(steps, func() error { return reg(binDir+"/"+f.name, 0o755, f.data) })
	}
	steps = append(steps,
		func() error { return dir("var", 0o755, 0) },
		func() error { return dir("var/lib", 0o755, 0) },
		func() error { return dir(strings.TrimPrefix(workDir, "/"), 0o755, uid) },
		func() error { return dir(strings.TrimPrefix(workDir, "/")+"/data", 0o700, uid) },
	)
	for _, s := range steps {
		if err := s(); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	layerBytes := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerBytes)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}

	base := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	base = mutate.ConfigMediaType(base, types.OCIConfigJSON)
	img, err := mutate.Append(base, mutate.Addendum{
		Layer:     layer,
		MediaType: types.OCILayer,
		History: v1.History{
			Created:   v1.Time{Time: cfg.created},
			CreatedBy: "deploy/imagebuild: " + strings.Join(cfg.binaries, " "),
			Comment:   "static FleetACS binaries",
		},
	})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Architecture = arch
	cf.OS = "linux"
	cf.Created = v1.Time{Time: cfg.created}
	cf.Config.User = user
	cf.Config.Entrypoint = []string{entrypoint}
	cf.Config.Cmd = []string{"all"}
	cf.Config.WorkingDir = workDir
	cf.Config.Env = []string{"PATH=/usr/local/bin"}
	cf.Config.ExposedPorts = map[string]struct{}{}
	for _, p := range exposedPorts {
		cf.Config.ExposedPorts[p] = struct{}{}
	}
	cf.Config.Labels = map[string]string{
		"org.opencontainers.image.title":       "FleetACS",
		"org.opencontainers.image.description": "TR-069 (CWMP) ACS: fleetacs, fleetctl, cpesim",
	}
	for k, v := range cfg.labels {
		cf.Config.Labels[k] = v
	}
	return mutate.ConfigFile(img, cf)
}

// checkStatic refuses a binary that is not a statically linked ELF
// executable (one with an interpreter or needed shared libraries would not
// start on the empty base), and returns its architecture as Go names it.
func checkStatic(path string, data []byte) (string, error) {
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return "", fmt.Errorf("%s: not an ELF executable: %w", path, err)
	}
	defer f.Close()
	if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		return "", fmt.Errorf("%s: ELF type %s, want an executable", path, f.Type)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return "", fmt.Errorf("%s is dynamically linked (it names an interpreter): build it with CGO_ENABLED=0", path)
		}
	}
	if libs, err := f.ImportedLibraries(); err == nil && len(libs) > 0 {
		return "", fmt.Errorf("%s needs shared libraries %v: build it with CGO_ENABLED=0", path, libs)
	}
	switch f.Machine {
	case elf.EM_X86_64:
		return "amd64", nil
	case elf.EM_AARCH64:
		return "arm64", nil
	case elf.EM_386:
		return "386", nil
	case elf.EM_ARM:
		return "arm", nil
	case elf.EM_PPC64:
		return "ppc64le", nil
	case elf.EM_S390:
		return "s390x", nil
	case elf.EM_RISCV:
		return "riscv64", nil
	}
	return "", fmt.Errorf("%s: ELF machine %s not supported", path, f.Machine)
}

// writeLayout writes img as the only image of an OCI layout at dir,
// replacing what was there.
func writeLayout(img v1.Image, dir, ref string) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return fmt.Errorf("write %s: %w", dir, err)
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": ref,
	})); err != nil {
		return fmt.Errorf("write %s: %w", dir, err)
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
