//go:build linux

package api

import (
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// The connections a Listen listener accepts have the receive buffer asked
// for (Linux reports twice what was set, for its bookkeeping).
func TestListenSetsTheReceiveBuffer(t *testing.T) {
	const want = 512 << 10
	if b, err := os.ReadFile("/proc/sys/net/core/rmem_max"); err == nil {
		if max, _ := strconv.Atoi(strings.TrimSpace(string(b))); max < want {
			t.Skipf("net.core.rmem_max is %d, below the %d bytes this test sets", max, want)
		}
	}
	sizes := map[int]int{}
	for _, size := range []int{0, want} {
		ln, err := Listen(t.Context(), "127.0.0.1:0", size)
		if err != nil {
			t.Fatal(err)
		}
		client, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		conn, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		rc, err := conn.(*net.TCPConn).SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var got int
		var gerr error
		if err := rc.Control(func(fd uintptr) {
			got, gerr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF)
		}); err != nil || gerr != nil {
			t.Fatal(err, gerr)
		}
		sizes[size] = got
		_ = client.Close()
		_ = conn.Close()
		_ = ln.Close()
	}
	if sizes[want] != 2*want {
		t.Errorf("SO_RCVBUF of an accepted connection = %d, want %d", sizes[want], 2*want)
	}
	if sizes[0] == 2*want {
		t.Errorf("SO_RCVBUF = %d without asking, the same as asked for: the test cannot tell", sizes[0])
	}
}

func TestListenRefusesBadSizes(t *testing.T) {
	for _, size := range []int{-1, MaxReceiveBuffer + 1} {
		if ln, err := Listen(t.Context(), "127.0.0.1:0", size); err == nil {
			_ = ln.Close()
			t.Errorf("Listen with a receive buffer of %d: no error", size)
		}
	}
}
