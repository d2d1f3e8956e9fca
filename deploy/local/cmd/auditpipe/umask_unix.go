//go:build unix

package main

import "syscall"

// privateUmask sets the process umask to 077 and returns a function that
// restores the previous one. The data directory's libraries create files
// with fixed modes (kfake 0644 and 0755, SQLite 0644); under this umask
// they come out 0600 and 0700. The umask is process-wide, which is why the
// command sets it and the allinone package (a library) does not.
func privateUmask() func() {
	old := syscall.Umask(0o077)
	return func() { syscall.Umask(old) }
}
