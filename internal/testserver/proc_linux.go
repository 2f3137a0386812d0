package testserver

import "syscall"

// sysProcAttr runs the server as cred, in its own process group, and has
// the kernel kill it when the test binary dies.
func sysProcAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: cred, Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
