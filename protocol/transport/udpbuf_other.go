//go:build !linux

package transport

// UDPBufferAdvice is only implemented on Linux.
func UDPBufferAdvice() string { return "" }
