package transport

import (
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// setCongestion asks the kernel for congestion control name on the TCP socket fd.
func setCongestion(fd uintptr, name string) error {
	if err := syscall.SetsockoptString(int(fd), syscall.IPPROTO_TCP, syscall.TCP_CONGESTION, name); err != nil {
		return fmt.Errorf("TCP congestion control %q: %w", name, err)
	}
	return nil
}

// CongestionUsable reports whether TCP sockets of this process may use the
// congestion control name: the kernel must have it (built in, or a module
// that root may load), and an unprivileged process needs it listed in
// net.ipv4.tcp_allowed_congestion_control.
func CongestionUsable(name string) error {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer syscall.Close(fd)
	return setCongestion(uintptr(fd), name)
}

// setNotSentLowat caps the bytes a TCP socket holds that it has not sent yet.
func setNotSentLowat(fd uintptr, n int) error {
	return syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, unix.TCP_NOTSENT_LOWAT, n)
}
