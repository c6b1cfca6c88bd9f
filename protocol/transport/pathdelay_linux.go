package transport

import (
	"time"

	"golang.org/x/sys/unix"

	"github.com/burrow-tunnel/burrow/protocol"
)

// tcpPathDelay reads TCP_INFO of the socket fd.
func tcpPathDelay(fd uintptr) protocol.PathDelay {
	ti, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	if err != nil {
		return protocol.PathDelay{}
	}
	return protocol.PathDelay{
		RTT:       time.Duration(ti.Rtt) * time.Microsecond,
		MinRTT:    time.Duration(ti.Min_rtt) * time.Microsecond,
		Delivered: ti.Bytes_acked,
	}
}
