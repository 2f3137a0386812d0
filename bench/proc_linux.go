//go:build linux

package main

import "syscall"

// childAttr makes a helper process die with this one.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
