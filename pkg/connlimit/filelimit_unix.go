//go:build unix

package connlimit

import (
	"fmt"
	"syscall"
)

// FileLimit raises the process's soft limit of open files to its hard
// limit and returns it. The Go runtime already does this at start on
// Linux (since Go 1.19); doing it here keeps the caps right wherever it
// does not.
func FileLimit() (uint64, error) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, fmt.Errorf("read the open files limit: %w", err)
	}
	if rl.Cur < rl.Max {
		raised := rl
		raised.Cur = rl.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised); err == nil {
			rl = raised
		}
	}
	return uint64(rl.Cur), nil
}
