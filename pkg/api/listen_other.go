//go:build !unix

package api

import "syscall"

// receiveBuffer leaves the socket as it is where SO_RCVBUF is not set the
// Unix way.
func receiveBuffer(int) func(network, address string, rc syscall.RawConn) error { return nil }
