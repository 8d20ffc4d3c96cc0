//go:build unix

package embedded

import (
	"os"
	"syscall"
)

// unlock drops bbolt's lock on f (flock), which a memory map of f keeps
// after f is closed.
func unlock(f *os.File) { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN) }
