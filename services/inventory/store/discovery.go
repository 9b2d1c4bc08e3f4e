package store

import (
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Discovery profiles: what session workers learn about discovering the
// devices of one product class (docs/sessions.md, "Discovery that adapts
// to the CPE"), shared by every worker and kept across restarts.
//
// A profile is the merge of observations, each what one discovery showed:
// the largest GetParameterValues batch a device answered (OK) and a batch
// that failed (refused with 9004, or outstanding when the session died).
// Stores keep the largest OK, every failed size and whether a whole-tree
// GetParameterNames ever died, and report the smallest failed size larger
// than OK: a failure at or below a size known to work was not the size's
// fault. Kept this way the merge is commutative and idempotent, so workers
// record without coordinating and a retried write changes nothing.

// ProductClass names a class of devices within a tenant: OUI and product
// class as the devices report them, the OUI in upper case.
type ProductClass struct {
	Tenant       string
	OUI          string
	ProductClass string
}

// DiscoveryObservation is what one discovery showed; zero fields say
// nothing.
type DiscoveryObservation struct {
	GPVBatchOK       int
	GPVBatchFailed   int
	SubtreeGPNFailed bool
}

// DiscoveryProfile is a class's merged observations.
type DiscoveryProfile struct {
	// GPVBatchOK is the largest batch answered.
	GPVBatchOK int
	// GPVBatchFailed is the smallest failed batch larger than GPVBatchOK;
	// 0 when none.
	GPVBatchFailed int
	// SubtreeGPNFailed: a whole-tree GetParameterNames died once.
	SubtreeGPNFailed bool
	// Updated is when an observation was last recorded; zero when none.
	Updated time.Time
}

// Limits of a discovery profile's key and values.
const (
	MaxProductClassLength = 64
	// MaxBatchSize bounds the batch sizes recorded: no sensible batch is
	// larger, and a bound keeps a failed-size set small.
	MaxBatchSize = 1 << 16
)

// NormalizeProductClass checks a class key and returns it with the OUI in
// upper case and white space trimmed.
func NormalizeProductClass(c ProductClass) (ProductClass, error) {
	if err := ValidateTenant(c.Tenant); err != nil {
		return c, err
	}
	c.OUI = strings.ToUpper(strings.TrimSpace(c.OUI))
	c.ProductClass = strings.TrimSpace(c.ProductClass)
	if len(c.OUI) != 6 || strings.Trim(c.OUI, "0123456789ABCDEF") != "" {
		return c, fmt.Errorf("oui %q: want six hexadecimal digits: %w", c.OUI, ErrInvalidArgument)
	}
	if len(c.ProductClass) > MaxProductClassLength || !utf8.ValidString(c.ProductClass) ||
		strings.IndexFunc(c.ProductClass, unicode.IsControl) >= 0 {
		return c, fmt.Errorf("product class %q: want at most %d bytes of UTF-8 without control characters: %w",
			c.ProductClass, MaxProductClassLength, ErrInvalidArgument)
	}
	return c, nil
}

// ValidateObservation checks an observation's sizes.
func ValidateObservation(o DiscoveryObservation) error {
	for _, n := range []int{o.GPVBatchOK, o.GPVBatchFailed} {
		if n < 0 || n > MaxBatchSize {
			return fmt.Errorf("batch size %d: want 0 to %d: %w", n, MaxBatchSize, ErrInvalidArgument)
		}
	}
	return nil
}

// SmallestFailedAbove returns the smallest of failed larger than ok, 0 when
// none: the profile's GPVBatchFailed.
func SmallestFailedAbove(ok int, failed []int) int {
	out := 0
	for _, f := range failed {
		if f > ok && (out == 0 || f < out) {
			out = f
		}
	}
	return out
}
