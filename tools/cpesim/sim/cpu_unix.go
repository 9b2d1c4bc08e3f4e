//go:build unix

package sim

import (
	"syscall"
	"time"
)

// processCPU returns the user and system CPU time the process has used so
// far (getrusage), for the summary's CPU per session.
func processCPU() (user, system time.Duration, ok bool) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, 0, false
	}
	return time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano()), true
}
