package datamodel

import (
	"reflect"
	"strings"
	"testing"
)

// TestParseBBF reads a small document with the constructs the loader
// relies on: named data types with base chains, lists, enumerations,
// ranges, defaults, removed items and self-closing tags.
func TestParseBBF(t *testing.T) {
	doc := `<?xml version="1.0"?>
<!-- comment <object name="X."> -->
<dm:document xmlns:dm="urn:broadband-forum-org:cwmp:datamodel-1-14">
  <dataType name="Base"><string><size maxLength="8"/></string></dataType>
  <dataType name="Derived" base="Base"/>
  <model name="Test:1.0">
    <object name="Test." access="readOnly" minEntries="1" maxEntries="1">
      <description>Root &amp; <![CDATA[<stuff>]]></description>
      <parameter name="Name" access="readWrite" forcedInform="true" activeNotify="forceEnabled">
        <syntax><dataType ref="Derived"/></syntax>
      </parameter>
      <parameter name="Mode" access="readWrite">
        <syntax><string><enumeration value="A"/><enumeration value="B"/></string><default type="object" value="B"/></syntax>
      </parameter>
      <parameter name="Modes" access="readOnly">
        <syntax><list><size maxLength="64"/></list><string><size maxLength="4"/></string></syntax>
      </parameter>
      <parameter name="Level" access="readWrite">
        <syntax><int><range minInclusive="-5" maxInclusive="5"/></int></syntax>
      </parameter>
      <parameter name="Gone" access="readOnly" status="deleted"><syntax><int/></syntax></parameter>
      <parameter name="RowNumberOfEntries" access="readOnly"><syntax><unsignedInt/></syntax></parameter>
    </object>
    <object name="Test.Row.{i}." access="readWrite" numEntriesParameter="RowNumberOfEntries" minEntries="0" maxEntries="unbounded">
      <parameter name="Enable" access="readWrite"><syntax><boolean/></syntax></parameter>
    </object>
    <object name="Test.Old." access="readOnly" status="obsoleted" minEntries="1" maxEntries="1"/>
  </model>
</dm:document>`
	m, err := ParseBBF([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if m.Name != "Test:1.0" || m.Root != "Test." || m.NumObjects() != 2 {
		t.Fatalf("model %s root %s objects %d", m.Name, m.Root, m.NumObjects())
	}
	root, _ := m.Object("Test.")
	if len(root.Params) != 5 {
		t.Fatalf("params %d, want 5 (deleted one left out)", len(root.Params))
	}
	name, mode, modes, level := root.Params[0], root.Params[1], root.Params[2], root.Params[3]
	if name.Type != "xsd:string" || name.DataType != "Derived" || name.MaxLen != 8 || !name.ForcedInform || !name.Writable || name.ActiveNotify != "forceEnabled" {
		t.Errorf("Name %+v", *name)
	}
	if mode.Default != "B" || !mode.HasDefault || len(mode.Enum) != 2 {
		t.Errorf("Mode %+v", *mode)
	}
	if !modes.List || modes.MaxLen != 64 || modes.Type != "xsd:string" {
		t.Errorf("Modes %+v", *modes)
	}
	if level.Type != "xsd:int" || level.Min != -5 || level.Max != 5 {
		t.Errorf("Level %+v", *level)
	}
	row, ok := m.Object("Test.Row.{i}.")
	if !ok || !row.Table || !row.Writable || row.NumEntries != "RowNumberOfEntries" {
		t.Errorf("Row %+v", row)
	}
	if _, err := ParseBBF([]byte(`<document><dataType name="A" base="B"/></document>`)); err == nil {
		t.Error("a document without a model parsed")
	}
}

// TestTableRoundTrip: a model written as a table reads back equal, with
// text that needs escaping in names, defaults and enumerations.
func TestTableRoundTrip(t *testing.T) {
	m := &Model{Name: "Test:1.0", Root: "Test.", objects: map[string]*ObjectDef{
		"Test.": {Path: "Test.", Params: []*ParamDef{
			{Name: "A", Type: "xsd:string", Writable: true, ForcedInform: true, ActiveNotify: "canDeny", DataType: "Alias",
				Default: "tab\there\\n", HasDefault: true, Enum: []string{"x", "", "new\nline\r"}, MaxLen: 64},
			{Name: "B", Type: "xsd:int", Min: -5, HasMin: true, Max: 0, HasMax: true, Hidden: true, Secured: true, List: true},
			{Name: "C", Type: "xsd:unsignedLong", HasDefault: true},
		}},
		"Test.Row.{i}.": {Path: "Test.Row.{i}.", Table: true, Writable: true, NumEntries: "RowNumberOfEntries"},
	}}
	table := MarshalTable(m, "first line\n\nthird line")
	if !strings.HasPrefix(string(table), "# first line\n#\n# third line\n"+tableMagic+"\n") {
		t.Fatalf("table does not start with the notice and the format line:\n%s", table)
	}
	got, err := UnmarshalTable(table)
	if err != nil {
		t.Fatalf("UnmarshalTable: %v\n%s", err, table)
	}
	if !reflect.DeepEqual(got, m) {
		t.Errorf("round trip changed the model\nwant %+v\ngot  %+v\n%s", m, got, table)
	}
	again, err := Compress(table)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := Decompress(again)
	if err != nil || string(plain) != string(table) {
		t.Errorf("compression round trip: %v", err)
	}
}

// TestUnmarshalTableRejects: damaged tables are errors that say where.
func TestUnmarshalTableRejects(t *testing.T) {
	good := tableMagic + "\nmodel\tT:1\tT.\no\tT.\t\t\n"
	if _, err := UnmarshalTable([]byte(good)); err != nil {
		t.Fatalf("minimal table: %v", err)
	}
	for name, doc := range map[string]string{
		"no format line":              "model\tT:1\tT.\n",
		"other format":                "fleetacs-datamodel-table\t2\n",
		"no model":                    tableMagic + "\n",
		"no root object":              tableMagic + "\nmodel\tT:1\tT.\no\tT.X.\t\t\n",
		"parameter before any object": tableMagic + "\nmodel\tT:1\tT.\np\tA\tstring\t\t\t\t\t\t\t\n",
		"short parameter":             good + "p\tA\tstring\n",
		"unknown flag":                good + "p\tA\tstring\tz\t\t\t\t\t\t\n",
		"bad number":                  good + "p\tA\tint\t\t\t\tx\t\t\t\n",
		"bad escape":                  good + "p\tA\\q\tint\t\t\t\t\t\t\t\n",
		"duplicate object":            good + "o\tT.\t\t\n",
	} {
		if _, err := UnmarshalTable([]byte(doc)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestLicenseNotice finds the license text in a BBF header comment and
// refuses a document without one.
func TestLicenseNotice(t *testing.T) {
	doc := "<?xml version=\"1.0\"?>\n<!--\n  Title\n\n  Copyright (c) 2010, Broadband Forum\n\n  Redistribution ...\n  license grant are also deemed granted under this license.\n\n  Comments ...\n-->\n<document/>"
	got, err := licenseNotice([]byte(doc))
	want := "Copyright (c) 2010, Broadband Forum\n\nRedistribution ...\nlicense grant are also deemed granted under this license.\n"
	if err != nil || got != want {
		t.Errorf("licenseNotice = %q, %v; want %q", got, err, want)
	}
	if _, err := licenseNotice([]byte("<!-- Copyright (c) 2010 but no license -->")); err == nil {
		t.Error("a header without the license text was accepted")
	}
}
