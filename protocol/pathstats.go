package protocol

import "time"

// PathStats is what a QUIC session knows of its network path.
type PathStats struct {
	// PacketsSent counts every packet sent, retransmissions included.
	PacketsSent uint64
	// PacketsLost counts the packets declared lost (it can fall back when a
	// packet declared lost arrives after all).
	PacketsLost uint64
	SmoothedRTT time.Duration
}

// PathStatser is a session that reports PathStats: QUIC sessions do; on the
// TCP transport the kernel keeps such counts to itself.
type PathStatser interface {
	PathStats() PathStats
}

var _ PathStatser = (*quicSession)(nil)

// PathStats reports the connection's packet counts.
func (s *quicSession) PathStats() PathStats {
	st := s.conn.ConnectionStats()
	return PathStats{PacketsSent: st.PacketsSent, PacketsLost: st.PacketsLost, SmoothedRTT: st.SmoothedRTT}
}
