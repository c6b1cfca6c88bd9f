package transport

import "github.com/burrow-tunnel/burrow/protocol"

var _ protocol.PathStatser = (*quicSession)(nil)

// protocol.PathStats reports the connection's packet counts.
func (s *quicSession) PathStats() protocol.PathStats {
	st := s.conn.ConnectionStats()
	return protocol.PathStats{PacketsSent: st.PacketsSent, PacketsLost: st.PacketsLost, SmoothedRTT: st.SmoothedRTT}
}
