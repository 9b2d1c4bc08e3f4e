package sim

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fleetacs/fleetacs/tools/cpesim/internal/datamodel"
)

// TestBuiltinModels: the embedded tables decode into the models the
// simulator expects, with the facts it relies on (forced Inform
// parameters, tables with their NumberOfEntries parameter, writable
// tables, secured values).
func TestBuiltinModels(t *testing.T) {
	for _, tc := range []struct {
		dm           DataModel
		name, root   string
		minObjects   int
		forced, secr string
		table        string
	}{
		{TR181, "Device:2.17", "Device.", 700, "Device.ManagementServer.ConnectionRequestURL", "Device.ManagementServer.Password", "Device.NAT.PortMapping.{i}."},
		{TR098, "InternetGatewayDevice:1.14", "InternetGatewayDevice.", 150, "InternetGatewayDevice.DeviceInfo.SoftwareVersion", "InternetGatewayDevice.ManagementServer.Password",
			"InternetGatewayDevice.WANDevice.{i}.WANConnectionDevice.{i}.WANIPConnection.{i}.PortMapping.{i}."},
	} {
		m, err := loadModel(tc.dm)
		if err != nil {
			t.Fatalf("%s: %v", tc.dm, err)
		}
		if m.Name != tc.name || m.Root != tc.root || m.NumObjects() < tc.minObjects {
			t.Errorf("%s: model %s root %s with %d objects", tc.dm, m.Name, m.Root, m.NumObjects())
		}
		if p := param(t, m, tc.forced); !p.ForcedInform || p.Type != "xsd:string" {
			t.Errorf("%s: %+v is not a forced Inform string", tc.forced, *p)
		}
		if p := param(t, m, tc.secr); !p.Secured && !p.Hidden {
			t.Errorf("%s: %+v reads in clear", tc.secr, *p)
		}
		o, ok := m.Object(tc.table)
		if !ok || !o.Table || !o.Writable || o.NumEntries == "" {
			t.Errorf("%s: %+v, want a writable table with a NumberOfEntries parameter", tc.table, o)
		}
		again, err := loadModel(tc.dm)
		if err != nil || again != m {
			t.Errorf("%s decoded twice", tc.dm)
		}
	}
	if _, err := loadModel("tr069"); err == nil {
		t.Error("unknown model loaded")
	}
}

func param(t *testing.T, m *Model, path string) *ParamDef {
	t.Helper()
	i := strings.LastIndexByte(path, '.')
	objPath, name := path[:i+1], path[i+1:]
	o, ok := m.Object(objPath)
	if !ok {
		t.Fatalf("no object %s", objPath)
	}
	for _, p := range o.Params {
		if p.Name == name {
			return p
		}
	}
	t.Fatalf("no parameter %s", path)
	return nil
}

// TestBuiltinModelsUpToDate regenerates the tables from the BBF data-model
// XML and compares them with the committed ones. The XML is not part of the
// repository: it is read from $FLEETACS_BBF_DIR, else from shared/tr069
// beside the repository root, and only this check is skipped when it is in
// neither place.
func TestBuiltinModelsUpToDate(t *testing.T) {
	dir := os.Getenv("FLEETACS_BBF_DIR")
	if dir == "" {
		dir = filepath.Join(filepath.Dir(repoRootForTest(t)), "shared", "tr069")
	}
	for _, src := range datamodel.Sources {
		if _, err := os.Stat(filepath.Join(dir, src.File)); err != nil {
			t.Skipf("BBF data-model XML %s not found in %s (set FLEETACS_BBF_DIR to its directory): cannot check that sim/datamodels is up to date", src.File, dir)
		}
	}
	for _, src := range datamodel.Sources {
		want, err := datamodel.Generate(dir, src)
		if err != nil {
			t.Fatal(err)
		}
		gz, err := datamodelFS.ReadFile("datamodels/" + src.Table)
		if err != nil {
			t.Fatal(err)
		}
		got, err := datamodel.Decompress(gz)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("sim/datamodels/%s is stale: run `make datamodels` at the repository root and commit the result", src.Table)
		}
	}
}

func repoRootForTest(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for dir := wd; ; {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatalf("no go.work at or above %s", wd)
		}
		dir = parent
	}
}
