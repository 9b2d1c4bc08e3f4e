package testenv

import "syscall"

// childAttr runs a child as cred (when set) and has the kernel SIGKILL it when
// the spawner thread, and so the test binary, dies: servers must not outlive
// the tests even when the binary crashes or is killed. Go sets the
// parent-death signal after switching user, which would otherwise clear it.
func childAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGKILL}
}
