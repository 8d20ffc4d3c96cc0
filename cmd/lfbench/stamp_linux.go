package main

import (
	"io"
	"net"
	"syscall"
	"time"
	"unsafe"
)

// stampConn is a TCP connection read with recvmsg, so that it knows when
// the kernel received the data it returns (SO_TIMESTAMPNS): the time the
// answer reached the client's socket, before the client was scheduled to
// read it.
type stampConn struct {
	*net.TCPConn
	rc  syscall.RawConn
	oob [64]byte
	// last is the kernel's receive time of the newest data read since
	// reset; zero when none was told.
	last time.Time
}

// stamp returns c reading through a stampConn, or c itself and nil where
// the socket cannot tell receive times.
func stamp(c net.Conn) (net.Conn, *stampConn) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c, nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return c, nil
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_TIMESTAMPNS, 1)
	}); err != nil || serr != nil {
		return c, nil
	}
	sc := &stampConn{TCPConn: tc, rc: rc}
	return sc, sc
}

func (c *stampConn) reset() { c.last = time.Time{} }

func (c *stampConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	var n, oobn int
	var rerr error
	err := c.rc.Read(func(fd uintptr) bool {
		for {
			n, oobn, _, _, rerr = syscall.Recvmsg(int(fd), p, c.oob[:], 0)
			if rerr != syscall.EINTR {
				return rerr != syscall.EAGAIN // else wait until readable
			}
		}
	})
	switch {
	case err != nil:
		return 0, err
	case rerr != nil:
		return 0, &net.OpError{Op: "read", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: rerr}
	case n == 0:
		return 0, io.EOF
	}
	if msgs, err := syscall.ParseSocketControlMessage(c.oob[:oobn]); err == nil {
		for _, m := range msgs {
			if m.Header.Level == syscall.SOL_SOCKET && m.Header.Type == syscall.SCM_TIMESTAMPNS &&
				len(m.Data) >= int(unsafe.Sizeof(syscall.Timespec{})) {
				var ts syscall.Timespec
				copy(unsafe.Slice((*byte)(unsafe.Pointer(&ts)), unsafe.Sizeof(ts)), m.Data)
				c.last = time.Unix(ts.Unix())
			}
		}
	}
	return n, nil
}
