//go:build unix

package sqlitestore_test

import (
	"syscall"
	"time"
)

// processCPU is the CPU time (user and system) the process has used so
// far. Benchmarks report it per operation beside wall time because the
// machine they run on is shared: wall time measures the neighbours too.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
