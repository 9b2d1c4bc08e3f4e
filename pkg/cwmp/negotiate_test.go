package cwmp

import (
	"errors"
	"testing"
)

func TestNegotiateVersion(t *testing.T) {
	all := "1.0,1.1,1.2,1.3,1.4"
	cases := []struct {
		name      string
		ns        string
		version   Version // used when ns is ""
		supported string
		timeout   uint32
		want      Negotiation
		err       error
	}{
		{name: "1.0 namespace", ns: NS1_0, want: Negotiation{V1_0, NS1_0, ""}},
		{name: "1.1 namespace", ns: NS1_1, want: Negotiation{V1_1, NS1_1, ""}},
		{name: "1.2 namespace", ns: NS1_2, want: Negotiation{V1_2, NS1_2, ""}},
		{name: "1.2 namespace with SessionTimeout is 1.3", ns: NS1_2, timeout: 60, want: Negotiation{V1_3, NS1_2, ""}},
		{name: "non-standard 1-3 URI kept", ns: NS1_3, want: Negotiation{V1_4, NS1_3, ""}},
		{name: "non-standard 1-4 URI kept", ns: NS1_4, want: Negotiation{V1_4, NS1_4, ""}},
		{name: "future 1-7 URI answered in 1-2", ns: "urn:dslforum-org:cwmp-1-7", want: Negotiation{V1_4, NS1_2, ""}},
		{name: "no namespace uses Version", version: V1_1, want: Negotiation{V1_1, NS1_1, ""}},

		{name: "1.4 negotiation picks highest", ns: NS1_2, supported: all, want: Negotiation{V1_4, NS1_2, "1.4"}},
		{name: "1.4 negotiation, non-standard URI", ns: NS1_4, supported: all, want: Negotiation{V1_4, NS1_4, "1.4"}},
		{name: "list capped by namespace 1-0", ns: NS1_0, supported: "1.0,1.4", want: Negotiation{V1_0, NS1_0, ""}},
		{name: "list capped by namespace 1-1", ns: NS1_1, supported: "1.4,1.1,1.0", want: Negotiation{V1_1, NS1_1, ""}},
		{name: "list with future and spaces", ns: NS1_2, supported: " 1.3 , 1.5,2.0", want: Negotiation{V1_3, NS1_2, "1.3"}},
		{name: "list picks older namespace", ns: NS1_2, supported: "1.1", want: Negotiation{V1_1, NS1_1, ""}},
		{name: "list ignores garbage", ns: NS1_2, supported: "x,,1.2", want: Negotiation{V1_2, NS1_2, "1.2"}},

		{name: "8006: nothing common", ns: NS1_2, supported: "2.0,1.5", err: ErrVersionIncompatible},
		{name: "8006: only newer than namespace", ns: NS1_0, supported: "1.2,1.4", err: ErrVersionIncompatible},
		{name: "8006: not a cwmp namespace", ns: "urn:example:other", err: ErrVersionIncompatible},
		{name: "8006: cwmp-1-x", ns: "urn:dslforum-org:cwmp-1-x", err: ErrVersionIncompatible},
		{name: "8006: version out of range", version: 9, err: ErrVersionIncompatible},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := &Envelope{Namespace: c.ns, Version: c.version, Body: testInform()}
			e.Header.SupportedCWMPVersions = c.supported
			e.Header.SessionTimeout = c.timeout
			got, err := NegotiateVersion(e)
			if !errors.Is(err, c.err) {
				t.Fatalf("error %v, want %v", err, c.err)
			}
			if err == nil && got != c.want {
				t.Fatalf("got %+v, want %+v", got, c.want)
			}
		})
	}
}

// Whatever the CPE sends, the answer is never in a newer namespace than its
// own, and UseCWMPVersion appears exactly when SupportedCWMPVersions did and
// the namespace of the answer can carry it (1.2 and later).
func TestNegotiateNeverNewer(t *testing.T) {
	lists := []string{"", "1.0", "1.1", "1.2", "1.3", "1.4", "1.0,1.4", "1.4,1.2", "2.0"}
	for _, ns := range []string{NS1_0, NS1_1, NS1_2, NS1_3, NS1_4} {
		ceiling, _ := namespaceCeiling(ns)
		for _, l := range lists {
			e := &Envelope{Namespace: ns, Body: testInform()}
			e.Header.SupportedCWMPVersions = l
			n, err := NegotiateVersion(e)
			if err != nil {
				continue
			}
			if n.Version > ceiling {
				t.Errorf("ns %s list %q: version %s above %s", ns, l, n.Version, ceiling)
			}
			rv, ok := VersionOfNamespace(n.Namespace)
			cv, _ := VersionOfNamespace(ns)
			if !ok || rv > cv {
				t.Errorf("ns %s list %q: reply namespace %s newer", ns, l, n.Namespace)
			}
			if (l != "" && n.Version >= V1_2) != (n.UseCWMPVersion != "") {
				t.Errorf("ns %s list %q: UseCWMPVersion %q", ns, l, n.UseCWMPVersion)
			}
		}
	}
}
