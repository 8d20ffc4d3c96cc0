//go:build unix

package tokens

import (
	"os"
	"syscall"
)

// lock takes an exclusive lock (flock) on the file at path, creating it,
// so that two ledgerctl runs do not change the tokens file at once.
func lock(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

// chownLike gives f to the owner of dir when run as root: the data
// directory belongs to filterd's user, which must read the tokens file.
func chownLike(f *os.File, dir string) {
	if os.Geteuid() != 0 {
		return
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		_ = f.Chown(int(st.Uid), int(st.Gid))
	}
}
