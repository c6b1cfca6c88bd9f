package agent

import (
	"testing"

	"github.com/burrow-tunnel/burrow/protocol"
)

func TestLossMeter(t *testing.T) {
	type step struct {
		sent, lost uint64 // totals so far
		counted    bool
		lossy      bool
	}
	cases := []struct {
		name  string
		steps []step
	}{
		{"clean path", []step{{1000, 0, true, false}, {2000, 1, true, false}, {3000, 1, true, false}, {4000, 1, true, false}}},
		{"slow start loses once", []step{{1000, 80, true, false}, {2000, 80, true, false}, {3000, 81, true, false}, {4000, 81, true, false}}},
		{"lossy path", []step{{1000, 5, true, false}, {2000, 10, true, false}, {3000, 15, true, true}}},
		{"idle checks neither count nor end a streak", []step{{1000, 5, true, false}, {1010, 5, false, false}, {2000, 10, true, false}, {2005, 10, false, false}, {3000, 15, true, true}}},
		{"one quiet check among lossy ones", []step{{1000, 5, true, false}, {2000, 10, true, false}, {3000, 10, true, true}}},
		{"two clean checks in three clear it", []step{{1000, 5, true, false}, {2000, 5, true, false}, {3000, 5, true, false}, {4000, 10, true, false}, {5000, 15, true, true}}},
		{"late arrivals lower the lost count", []step{{1000, 10, true, false}, {2000, 4, true, false}, {3000, 4, true, false}, {4000, 4, true, false}}},
		// A collapsed QUIC sends little, and one check may lose less than
		// lossyShare: the three together still tell.
		{"a quiet check in random loss", []step{{700, 2, true, false}, {1400, 3, true, false}, {2100, 5, true, true}}},
		{"slow start, then a straggler", []step{{30000, 500, true, false}, {60000, 501, true, false}, {90000, 502, true, false}, {120000, 503, true, false}}},
		{"one burst is not a lossy path", []step{{1000, 40, true, false}, {2000, 41, true, false}, {3000, 42, true, false}, {4000, 45, true, false}, {5000, 49, true, true}}},
	}
	for _, tc := range cases {
		m := lossMeter{minPackets: 100}
		for i, s := range tc.steps {
			_, counted, lossy := m.observe(protocol.PathStats{PacketsSent: s.sent, PacketsLost: s.lost})
			if counted != s.counted || lossy != s.lossy {
				t.Errorf("%s, check %d: counted %v lossy %v, want %v %v", tc.name, i+1, counted, lossy, s.counted, s.lossy)
			}
		}
	}
}
