package protocol

import (
	"net"
	"syscall"
)

// preferredCongestion is the TCP congestion control the tunnel asks for. BBR
// keeps a long video stream near the link rate where Cubic collapses under
// random loss (measured through 80 ms / 0.5 % loss: Cubic about 1 % of the
// link, BBR about two thirds). Tunnel sockets ask for it one by one, so
// Burrow gets it even where the system default is Cubic; a kernel without
// BBR (or one that does not allow it to this user) keeps its default.
const preferredCongestion = "bbr"

// setCongestion asks for preferredCongestion on a TCP socket, and reports the
// algorithm in use afterwards.
func setCongestion(c syscall.RawConn) string {
	var got string
	_ = c.Control(func(fd uintptr) {
		_ = syscall.SetsockoptString(int(fd), syscall.IPPROTO_TCP, syscall.TCP_CONGESTION, preferredCongestion)
		got, _ = getsockoptString(int(fd), syscall.IPPROTO_TCP, syscall.TCP_CONGESTION)
	})
	return got
}

func getsockoptString(fd, level, opt int) (string, error) {
	var buf [16]byte
	l := uint32(len(buf))
	_, _, e := syscall.Syscall6(syscall.SYS_GETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt),
		uintptr(unsafePointer(&buf[0])), uintptr(unsafePointer(&l)), 0)
	if e != 0 {
		return "", e
	}
	n := int(l)
	for i := 0; i < n; i++ {
		if buf[i] == 0 {
			n = i
			break
		}
	}
	return string(buf[:n]), nil
}

// tunedTCP asks for preferredCongestion on an established connection.
func tunedTCP(c net.Conn) string {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return ""
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return ""
	}
	return setCongestion(rc)
}
