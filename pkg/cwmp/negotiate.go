package cwmp

import (
	"errors"
	"strconv"
	"strings"
)

// ErrVersionIncompatible means the CPE offered no CWMP version FleetACS can
// speak without answering in a namespace newer than the one the CPE used. The
// session answers such an Inform with fault 8006 (docs/protocol.md §1.2).
var ErrVersionIncompatible = errors.New("cwmp: no CWMP version in common with the CPE")

// Negotiation is the outcome of CWMP version negotiation for one session.
type Negotiation struct {
	// Version is the version both sides use for the rest of the session.
	Version Version
	// Namespace is the exact cwmp namespace URI of every ACS envelope of
	// the session: never newer than the one the CPE's Inform used, and the
	// CPE's own non-standard cwmp-1-3/cwmp-1-4 URI when it used one.
	Namespace string
	// UseCWMPVersion is the value of the UseCWMPVersion header of the
	// InformResponse, "" when the header must not be sent (the CPE sent no
	// SupportedCWMPVersions).
	UseCWMPVersion string
}

// nsPrefix is what every cwmp namespace URI starts with.
const nsPrefix = "urn:dslforum-org:cwmp-1-"

// namespaceCeiling returns the newest version the ACS may use when the CPE
// wrote its Inform in namespace ns. cwmp-1-2 covers 1.2 to 1.4 (1.3 and 1.4
// kept the 1.2 namespace), and so do the non-standard cwmp-1-3/cwmp-1-4 URIs
// and any future cwmp-1-N: answering such a CPE in cwmp-1-2 is answering in
// an older namespace, which the rules allow. ok is false for a URI that is
// not a cwmp namespace at all.
func namespaceCeiling(ns string) (ceiling Version, ok bool) {
	switch ns {
	case NS1_0:
		return V1_0, true
	case NS1_1:
		return V1_1, true
	case NS1_2, NS1_3, NS1_4:
		return MaxVersion, true
	}
	minor, found := strings.CutPrefix(ns, nsPrefix)
	if !found {
		return 0, false
	}
	if n, err := strconv.Atoi(minor); err == nil && n > int(MaxVersion) {
		return MaxVersion, true
	}
	return 0, false
}

// NegotiateVersion picks the CWMP version and namespace of a session from the
// CPE's Inform envelope, following docs/protocol.md §1.2:
//
//   - With SupportedCWMPVersions (1.4): the highest listed version FleetACS
//     implements that is not newer than the Inform's namespace allows, sent
//     back as UseCWMPVersion when it is 1.2 or later (older namespaces
//     cannot carry the header; their URI says the version). Entries
//     FleetACS does not know (a future 1.5, garbage) are skipped; nothing
//     usable means ErrVersionIncompatible.
//   - Without it: the version the namespace implies (cwmp-1-0 is 1.0,
//     cwmp-1-1 is 1.1, cwmp-1-2 is 1.2, or 1.3 when a SessionTimeout header
//     came along, which only 1.3+ defines; cwmp-1-3/cwmp-1-4 mean 1.4), and no
//     UseCWMPVersion.
//
// The reply namespace is the CPE's own URI unless the negotiated version is
// older than it (then that version's standard URI) or the URI is a future
// cwmp-1-N (then cwmp-1-2). An envelope built in Go without a Namespace is
// taken to use env.Version's standard namespace.
func NegotiateVersion(env *Envelope) (Negotiation, error) {
	cpeNS := env.Namespace
	if cpeNS == "" {
		if env.Version > MaxVersion {
			return Negotiation{}, ErrVersionIncompatible
		}
		cpeNS = env.Version.Namespace()
	}
	ceiling, ok := namespaceCeiling(cpeNS)
	if !ok {
		return Negotiation{}, ErrVersionIncompatible
	}

	var n Negotiation
	if list := env.Header.SupportedCWMPVersions; strings.TrimSpace(list) != "" {
		best, found := Version(0), false
		for item := range strings.SplitSeq(list, ",") {
			v, err := ParseVersion(item)
			if err != nil || v > ceiling {
				continue
			}
			if !found || v > best {
				best, found = v, true
			}
		}
		if !found {
			return Negotiation{}, ErrVersionIncompatible
		}
		n.Version = best
		if best >= V1_2 {
			// The header exists only in the cwmp-1-2 namespace (the 1.4
			// schema); a 1.0 or 1.1 choice is told by the reply's
			// namespace alone, as before 1.4.
			n.UseCWMPVersion = best.String()
		}
	} else {
		switch cpeNS {
		case NS1_0:
			n.Version = V1_0
		case NS1_1:
			n.Version = V1_1
		case NS1_2:
			n.Version = V1_2
			if env.Header.SessionTimeout > 0 {
				n.Version = V1_3
			}
		default:
			n.Version = MaxVersion
		}
	}

	switch {
	case n.Version < V1_2:
		// Older than or equal to what the CPE used: the standard URI of
		// that version (equal to cpeNS when the versions match).
		n.Namespace = n.Version.Namespace()
	case cpeNS == NS1_3 || cpeNS == NS1_4:
		// Mirror the CPE's non-standard URI exactly: it is the one the CPE
		// is known to parse.
		n.Namespace = cpeNS
	default:
		n.Namespace = NS1_2
	}
	return n, nil
}
