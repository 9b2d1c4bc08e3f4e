//go:build unix && !linux

package testenv

import "syscall"

// childAttr runs a child as cred (when set). Without a parent-death signal on
// this system, a crashed test binary can leave its servers running; Main
// stops them on every normal exit.
func childAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: cred}
}

// memDir finds no memory file system to prefer on this system.
func memDir() string { return "" }
