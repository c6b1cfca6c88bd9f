//go:build !linux

package transport

import "github.com/burrow-tunnel/burrow/protocol"

// tcpPathDelay knows nothing of the socket off Linux.
func tcpPathDelay(uintptr) protocol.PathDelay { return protocol.PathDelay{} }
