package transport

import (
	"fmt"
	"net"
	"strings"
	"syscall"
)

// quicBufferSize is the UDP socket buffer quic-go asks for (7 MiB).
const quicBufferSize = 7 << 20

// UDPBufferAdvice says how to lift the kernel's cap on UDP socket buffers
// when it keeps QUIC below the 7 MiB quic-go asks for (small buffers drop
// bursts and cap QUIC's throughput), or "" when the buffers are granted.
// It tries what quic-go tries: the plain setting, then the privileged one.
func UDPBufferAdvice() string {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return ""
	}
	defer c.Close()
	rc, err := c.SyscallConn()
	if err != nil {
		return ""
	}
	var small []string
	for _, opt := range []struct {
		name       string
		set, force int
	}{
		{"receive", syscall.SO_RCVBUF, syscall.SO_RCVBUFFORCE},
		{"send", syscall.SO_SNDBUF, syscall.SO_SNDBUFFORCE},
	} {
		var got int
		_ = rc.Control(func(fd uintptr) {
			_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, opt.set, quicBufferSize)
			got, _ = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, opt.set)
			if got/2 < quicBufferSize {
				_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, opt.force, quicBufferSize)
				got, _ = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, opt.set)
			}
		})
		// The kernel reports twice the usable size.
		if got/2 < quicBufferSize {
			small = append(small, fmt.Sprintf("%s buffer %d KiB", opt.name, got/2/1024))
		}
	}
	if len(small) == 0 {
		return ""
	}
	return fmt.Sprintf("the kernel caps UDP socket buffers (%s; QUIC wants 7 MiB), which limits QUIC's speed: "+
		"run `sysctl -w net.core.rmem_max=7500000 net.core.wmem_max=7500000` and add both to /etc/sysctl.d/ to keep them", strings.Join(small, ", "))
}
