package engine

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
)

// Quirks are what is known in advance about how CPE models must be
// discovered, per OUI and product class: the built-in profiles
// (DefaultQuirks) and an operator's file (-sessions.quirks-file, format in
// docs/sessions.md). What sessions learn on their own (a smaller batch for
// a class whose sessions died in discovery) comes on top, from the
// inventory: a profile's batch size is where learning starts from, never a
// floor.
type Quirks struct {
	// Profiles are matched most specific first (OUI and product class
	// before OUI alone); among equals, the first listed wins. A file's
	// profiles come before the built-in ones.
	Profiles []QuirkProfile `json:"profiles"`
}

// QuirkProfile is what applies to the devices of one OUI, or of one OUI and
// product class.
type QuirkProfile struct {
	// OUI is six hexadecimal digits, compared without regard to case.
	OUI string `json:"oui"`
	// ProductClass, when set, narrows the profile to that product class
	// (compared exactly, white space trimmed); empty matches any.
	ProductClass string `json:"productClass,omitempty"`
	// Note says where the quirk comes from, for people.
	Note      string          `json:"note,omitempty"`
	Discovery DiscoveryQuirks `json:"discovery"`
}

// DiscoveryQuirks shape the tree discovery of matching devices.
type DiscoveryQuirks struct {
	// BatchSize is the most names one GetParameterValues asks for; 0
	// keeps -sessions.discovery-batch-size.
	BatchSize int `json:"batchSize,omitempty"`
	// GPN is how names are listed: GPNSubtree (one GetParameterNames with
	// NextLevel false for the whole tree) or GPNWalk (NextLevel true, one
	// object at a time, for CPEs that cannot list a whole subtree). Empty
	// lets what the class showed decide (subtree until one died).
	GPN string `json:"gpn,omitempty"`
	// Skip turns discovery off for matching devices.
	Skip bool `json:"skip,omitempty"`
}

// GetParameterNames modes of DiscoveryQuirks.GPN.
const (
	GPNSubtree = "subtree"
	GPNWalk    = "walk"
)

// builtinQuirks are the profiles FleetACS knows without configuration.
var builtinQuirks = []QuirkProfile{
	{
		// netcwmp's sample configuration (conf/cwmp.conf) identifies as
		// OUI A00001, product class OT2800; the client crashes on a
		// GetParameterValues of more than 31 names.
		OUI: "A00001", ProductClass: "OT2800", Note: "netcwmp: GetParameterValues of more than 31 names crashes the client",
		Discovery: DiscoveryQuirks{BatchSize: 31},
	},
}

// DefaultQuirks returns the built-in profiles.
func DefaultQuirks() *Quirks {
	return &Quirks{Profiles: append([]QuirkProfile(nil), builtinQuirks...)}
}

// LoadQuirks reads a quirks file and returns its profiles followed by the
// built-in ones.
func LoadQuirks(path string) (*Quirks, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read quirks file: %w", err)
	}
	q, err := ParseQuirks(data)
	if err != nil {
		return nil, fmt.Errorf("quirks file %s: %w", path, err)
	}
	q.Profiles = append(q.Profiles, builtinQuirks...)
	return q, nil
}

// ParseQuirks decodes and checks the JSON of a quirks file. Unknown fields
// are errors: a misspelt quirk must not be silently ignored.
func ParseQuirks(data []byte) (*Quirks, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var q Quirks
	if err := dec.Decode(&q); err != nil {
		return nil, fmt.Errorf("decode quirks: %w", err)
	}
	if dec.More() {
		return nil, errors.New("decode quirks: data after the JSON object")
	}
	var errs []error
	for i := range q.Profiles {
		p := &q.Profiles[i]
		p.OUI = strings.ToUpper(strings.TrimSpace(p.OUI))
		p.ProductClass = strings.TrimSpace(p.ProductClass)
		if len(p.OUI) != 6 || strings.Trim(p.OUI, "0123456789ABCDEF") != "" {
			errs = append(errs, fmt.Errorf("profile %d: oui %q is not six hexadecimal digits", i, p.OUI))
		}
		if p.Discovery.BatchSize < 0 {
			errs = append(errs, fmt.Errorf("profile %d: discovery.batchSize %d is negative", i, p.Discovery.BatchSize))
		}
		switch p.Discovery.GPN {
		case "", GPNSubtree, GPNWalk:
		default:
			errs = append(errs, fmt.Errorf("profile %d: discovery.gpn %q is neither %q nor %q", i, p.Discovery.GPN, GPNSubtree, GPNWalk))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &q, nil
}

// Match returns the profile for a device, the zero profile when none
// applies.
func (q *Quirks) Match(oui, productClass string) QuirkProfile {
	if q == nil {
		return QuirkProfile{}
	}
	oui = strings.ToUpper(strings.TrimSpace(oui))
	productClass = strings.TrimSpace(productClass)
	var byOUI *QuirkProfile
	for i := range q.Profiles {
		p := &q.Profiles[i]
		if p.OUI != oui {
			continue
		}
		if p.ProductClass == productClass && p.ProductClass != "" {
			return *p
		}
		if p.ProductClass == "" && byOUI == nil {
			byOUI = p
		}
	}
	if byOUI != nil {
		return *byOUI
	}
	return QuirkProfile{}
}
