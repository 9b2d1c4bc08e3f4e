package cwmp

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestVendoredSchemasUnchanged checks the vendored BBF schemas against the
// checksums third_party/bbf-cwmp/SOURCES.md records, so that an edited copy
// (the XSD tests would then check against something the BBF never
// published) fails here rather than passing silently.
func TestVendoredSchemasUnchanged(t *testing.T) {
	if os.Getenv(EnvBBFSchemaDir) != "" {
		t.Skipf("%s names another copy of the schemas; the vendored one is not in use", EnvBBFSchemaDir)
	}
	dir := xsdSchemaDir(t)
	f, err := os.Open(filepath.Join(dir, "SOURCES.md"))
	if err != nil {
		t.Fatalf("open the record of the vendored schemas: %v", err)
	}
	defer f.Close()
	want := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// | `cwmp-1-0.xsd` | 49652 | `<sha256>` | ... |
		cells := strings.Split(sc.Text(), "|")
		if len(cells) < 5 {
			continue
		}
		name := strings.Trim(strings.TrimSpace(cells[1]), "`")
		sum := strings.Trim(strings.TrimSpace(cells[3]), "`")
		if strings.HasSuffix(name, ".xsd") && len(sum) == 64 {
			want[name] = sum
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("read SOURCES.md: %v", err)
	}
	for _, name := range bbfSchemaFiles {
		sum, ok := want[name]
		if !ok {
			t.Errorf("SOURCES.md records no checksum for %s", name)
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatalf("read %s: %v", name, err)
		}
		got := sha256.Sum256(b)
		if hex.EncodeToString(got[:]) != sum {
			t.Errorf("%s has sha256 %x; SOURCES.md records %s: the vendored copy was changed", name, got, sum)
		}
	}
}

// TestSchemaDirNamesMissingFile: without the schemas, the XSD tests say
// which file is missing and where they looked for it.
func TestSchemaDirNamesMissingFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "cwmp-1-0.xsd"), []byte("<x/>"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv(EnvBBFSchemaDir, dir)
	_, err := findSchemaDir()
	if err == nil {
		t.Fatal("a directory without cwmp-1-1.xsd was accepted")
	}
	for _, want := range []string{"cwmp-1-1.xsd", filepath.Join(dir, "cwmp-1-1.xsd"), EnvBBFSchemaDir} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}

	// Without the override, a checkout lacking the vendored copy names the
	// repository path.
	os.Unsetenv(EnvBBFSchemaDir)
	root := t.TempDir()
	pkgDir := filepath.Join(root, "pkg", "cwmp")
	if err := os.MkdirAll(pkgDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "go.work"), []byte("go 1.26\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(pkgDir)
	_, err = findSchemaDir()
	if err == nil {
		t.Fatal("a repository without third_party/bbf-cwmp was accepted")
	}
	if want := filepath.Join(root, "third_party", "bbf-cwmp", "cwmp-1-0.xsd"); !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not name %q", err, want)
	}
}
