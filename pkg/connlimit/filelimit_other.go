//go:build !unix

package connlimit

import "errors"

// FileLimit is not known on this platform.
func FileLimit() (uint64, error) {
	return 0, errors.New("the open files limit is not known on this platform")
}
