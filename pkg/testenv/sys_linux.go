package testenv

import "syscall"

// childAttr runs a child as cred (when set) and has the kernel SIGKILL it when
// the spawner thread, and so the test binary, dies: servers must not outlive
// the tests even when the binary crashes or is killed. Go sets the
// parent-death signal after switching user, which would otherwise clear it.
func childAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGKILL}
}

// memDir returns /dev/shm when it is a tmpfs with at least 1 GiB free, else
// "". PostgreSQL's initdb and JetStream write tens of megabytes; on this
// project's shared-disk machines that took seconds where memory takes a
// fraction of one.
func memDir() string {
	const dir = "/dev/shm"
	const tmpfsMagic = 0x01021994
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil || st.Type != tmpfsMagic {
		return ""
	}
	if uint64(st.Bavail)*uint64(st.Bsize) < 1<<30 {
		return ""
	}
	return dir
}
