package cwmp

import (
	"encoding/json"
	"reflect"
	"testing"
)

// TestEncodeDecodeRoundTrip encodes every fixture (every method in every
// version, header variants, escaping-heavy text, empty lists, optional
// fields left out) and decodes it again: the decoded envelope must equal
// the original. What encoding fills in by design is applied to the
// expectation first: the namespace chosen from the version, and the version
// the decoder can tell from the namespace and headers (1.2, 1.3 and 1.4
// share a namespace, docs/protocol.md §1.1).
func TestEncodeDecodeRoundTrip(t *testing.T) {
	for _, f := range encAllFixtures() {
		t.Run(f.name, func(t *testing.T) {
			out, err := Encode(f.env)
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			got, err := Decode(out)
			if err != nil {
				t.Fatalf("Decode: %v\n%s", err, out)
			}
			want := *f.env
			if want.Namespace == "" {
				want.Namespace = want.Version.Namespace()
			}
			// The 1.4 version headers make a cwmp-1-2 message a 1.4 one
			// whatever version it negotiates (docs/protocol.md §1.2).
			v14 := want.Header.SupportedCWMPVersions != "" || want.Header.UseCWMPVersion != ""
			if !namespaceFits(got.Namespace, got.Version) || (got.Version > want.Version && !(v14 && got.Version == V1_4)) {
				t.Errorf("decoded version %s with namespace %s; encoded %s", got.Version, got.Namespace, want.Version)
			}
			want.Version = got.Version
			encNormalize(reflect.ValueOf(&want).Elem())
			encNormalize(reflect.ValueOf(got).Elem())
			if !reflect.DeepEqual(&want, got) {
				w, _ := json.MarshalIndent(encDump(&want), "", "  ")
				g, _ := json.MarshalIndent(encDump(got), "", "  ")
				t.Errorf("round trip changed the envelope\nwant %s\ngot  %s\nwire:\n%s", w, g, out)
			}
		})
	}
}

// TestRoundTripFillsDefaults pins what encoding fills in for empty fields.
func TestRoundTripFillsDefaults(t *testing.T) {
	out, err := Encode(&Envelope{Version: V1_0, Body: &SetParameterValues{
		ParameterList: []ParameterValue{{Name: "A", Value: "v"}},
	}})
	if err != nil {
		t.Fatalf("Encode: %v", err)
	}
	env, err := Decode(out)
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if env.Namespace != NS1_0 || env.Header.HasID {
		t.Errorf("namespace %q, HasID %v; want %s and no ID", env.Namespace, env.Header.HasID, NS1_0)
	}
	spv, ok := env.Body.(*SetParameterValues)
	if !ok || len(spv.ParameterList) != 1 || spv.ParameterList[0].Type != "xsd:string" {
		t.Errorf("an untyped value must come back as xsd:string: %+v", env.Body)
	}

	out, err = Encode(&Envelope{Version: V1_0, Body: &TransferComplete{CommandKey: "k"}})
	if err != nil {
		t.Fatalf("Encode: %v", err)
	}
	env, err = Decode(out)
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	tc, ok := env.Body.(*TransferComplete)
	if !ok || tc.StartTime != UnknownTime || tc.CompleteTime != UnknownTime {
		t.Errorf("empty times must come back as the Unknown Time: %+v", env.Body)
	}

	// A CPE that used the non-standard cwmp-1-4 URI is answered in kind.
	out, err = Encode(&Envelope{Version: V1_4, Namespace: NS1_4, Body: &InformResponse{MaxEnvelopes: 1}})
	if err != nil {
		t.Fatalf("Encode: %v", err)
	}
	env, err = Decode(out)
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if env.Namespace != NS1_4 || env.Version != V1_4 {
		t.Errorf("namespace %q version %s, want %s and 1.4", env.Namespace, env.Version, NS1_4)
	}

	out, err = Encode(&Envelope{Version: V1_2, Body: &Fault{Code: 9005}})
	if err != nil {
		t.Fatalf("Encode: %v", err)
	}
	env, err = Decode(out)
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	fl, ok := env.Body.(*Fault)
	if !ok || fl.SOAPCode != "Client" || fl.SOAPString != "CWMP fault" || fl.Code != 9005 {
		t.Errorf("fault defaults: %+v", env.Body)
	}
}

// encNormalize makes empty slices nil, so that "no items" compares equal
// however it was built.
func encNormalize(v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			encNormalize(v.Elem())
		}
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			if v.Field(i).CanSet() {
				encNormalize(v.Field(i))
			}
		}
	case reflect.Slice:
		if v.Len() == 0 {
			if v.CanSet() {
				v.Set(reflect.Zero(v.Type()))
			}
			return
		}
		for i := 0; i < v.Len(); i++ {
			encNormalize(v.Index(i))
		}
	}
}

// encDump shows an envelope with its body's type for failure messages.
func encDump(env *Envelope) any {
	return struct {
		Envelope *Envelope
		BodyType string
	}{env, reflect.TypeOf(env.Body).String()}
}
