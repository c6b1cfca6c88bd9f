package transport

import (
	"syscall"

	"github.com/burrow-tunnel/burrow/protocol"
)

var (
	_ protocol.PathDelayer = (*quicSession)(nil)
	_ protocol.PathDelayer = (*yamuxSession)(nil)
)

// PathDelay reports quic-go's RTT estimates and the bytes sent and not lost.
func (s *quicSession) PathDelay() protocol.PathDelay {
	st := s.conn.ConnectionStats()
	var delivered uint64
	if st.BytesSent > st.BytesLost {
		delivered = st.BytesSent - st.BytesLost
	}
	return protocol.PathDelay{RTT: st.SmoothedRTT, MinRTT: st.MinRTT, Delivered: delivered}
}

// PathDelay reports the kernel's view of the tunnel's TCP socket (TCP_INFO),
// or nothing where it keeps that to itself.
func (s *yamuxSession) PathDelay() protocol.PathDelay {
	tb, ok := s.conn.(*tlsBatch)
	if !ok {
		return protocol.PathDelay{}
	}
	sc, ok := tb.raw.Conn.(syscall.Conn)
	if !ok {
		return protocol.PathDelay{}
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return protocol.PathDelay{}
	}
	var d protocol.PathDelay
	_ = rc.Control(func(fd uintptr) { d = tcpPathDelay(fd) })
	return d
}
