//go:build !linux

package protocol

// UDPBufferAdvice is only implemented on Linux.
func UDPBufferAdvice() string { return "" }
