//go:build !linux

package protocol

import "net"

// tunedTCP is a no-op where TCP_CONGESTION does not exist.
func tunedTCP(net.Conn) string { return "" }
