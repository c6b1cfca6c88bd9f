//go:build !linux

package transport

import "net"

// withGRO returns the socket as it is: UDP GRO is Linux's.
func withGRO(pc net.PacketConn) net.PacketConn { return pc }
