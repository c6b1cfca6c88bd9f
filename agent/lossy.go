package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/burrow-tunnel/burrow/protocol"
	"github.com/burrow-tunnel/burrow/protocol/transport"
)

// Moving off a lossy path (transport auto only).
//
// quic-go's only congestion controller is Cubic, which reads every lost
// packet as congestion: on a path that loses packets at random (Wi-Fi, 4G,
// a poor DSL line) a video crawls at a few percent of the link (80 ms RTT,
// 0.5 % loss, 200 Mbit/s: 2 % of the link) while TCP with BBR keeps most of
// it (66 %). The agent is the sender of every download, so it watches its
// QUIC session's packet counts: when at least lossyShare of the packets sent
// are declared lost in lossyChecks checks running, each with at least
// lossyPacketsPerSecond × the check interval sent, it moves to TCP with BBR.
// On a clean path Cubic loses next to nothing once past slow start, and
// the agent paces its bulk streams below the point where the router's queue
// overflows; slow start may lose a burst once, in one check. So a path that
// keeps losing is lossy, not merely busy.
//
// The checks come every DefaultLossCheck, and the path is judged on the
// last lossyChecks of them together: each must have lost something (at
// least lossyShare/4 of what it sent: the odd packet does not make a
// streak), and all but the one that lost most must together have lost at
// least lossyShare (slow start's one burst does not make a lossy path). Judged check by check, a collapsed QUIC sends so few packets
// in a short check that a lossy path often shows less than lossyShare in
// one of them, and the streak starts over.
const (
	lossyShare  = 0.002
	lossyChecks = 3
	// DefaultLossCheck is how often auto checks QUIC's loss unless
	// configured: a lossy path is left within about lossyChecks of them,
	// while a video plays at a few percent of the link meanwhile.
	DefaultLossCheck = 2 * time.Second
	// lossyPacketsPerSecond is the least traffic a check counts with (about
	// 0.5 Mbit/s): an idle tunnel's keepalives tell nothing of the path.
	lossyPacketsPerSecond = 50
	// lossyHold is how long the agent stays on TCP before a reconnect tries
	// QUIC again.
	lossyHold = 30 * time.Minute
	// drainFor bounds how long the old session keeps serving its streams
	// (a playing video) once the new one is up; a player then resumes its
	// video with a Range request, over the new session.
	drainFor = 30 * time.Second
	// lossyDialTimeout bounds the TCP dial that leaves a lossy path: the
	// session being left waits for it.
	lossyDialTimeout = 10 * time.Second
	// lossyCC is the congestion control the agent asks for on the TCP
	// socket it moves to.
	lossyCC = "bbr"
)

// errLossySwitch ends a QUIC session that the agent leaves for TCP.
var errLossySwitch = errors.New("moving to TCP: the QUIC path loses too many packets")

// lossMeter decides from successive PathStats whether a path is lossy.
type lossMeter struct {
	minPackets uint64 // the least a check must have sent to count
	last       protocol.PathStats
	recent     []lossCheck // the last lossyChecks checks that counted
}

// lossCheck is what one check counted.
type lossCheck struct{ sent, lost uint64 }

// observe takes the session's counts at one check and reports the share of
// packets lost since the last check, whether the check counted (enough
// packets were sent), and whether the path is now deemed lossy.
func (m *lossMeter) observe(st protocol.PathStats) (share float64, counted, lossy bool) {
	sent := st.PacketsSent - m.last.PacketsSent
	var lost uint64
	if st.PacketsLost > m.last.PacketsLost {
		lost = st.PacketsLost - m.last.PacketsLost
	}
	m.last = st
	if sent < m.minPackets {
		// Too little traffic to judge: the streak neither grows nor ends.
		return 0, false, false
	}
	share = float64(lost) / float64(sent)
	if len(m.recent) == lossyChecks {
		m.recent = append(m.recent[:0], m.recent[1:]...)
	}
	m.recent = append(m.recent, lossCheck{sent, lost})
	if len(m.recent) < lossyChecks {
		return share, true, false
	}
	// All but the worst check, and all but one of them losing: one burst,
	// or a quiet check, does not decide.
	var all lossCheck
	worst, losing := 0, 0
	for i, c := range m.recent {
		all.sent += c.sent
		all.lost += c.lost
		if float64(c.lost) >= lossyShare/4*float64(c.sent) {
			losing++
		}
		if c.lost*m.recent[worst].sent > m.recent[worst].lost*c.sent {
			worst = i
		}
	}
	all.sent -= m.recent[worst].sent
	all.lost -= m.recent[worst].lost
	return share, true, losing >= lossyChecks-1 && float64(all.lost) >= lossyShare*float64(all.sent)
}

// watchLoss checks sess every interval until ctx ends and returns nil, or
// until the path proves lossy and returns errLossySwitch.
func watchLoss(ctx context.Context, log *slog.Logger, sess protocol.PathStatser, interval time.Duration) error {
	m := lossMeter{minPackets: uint64(max(1, interval.Seconds()) * lossyPacketsPerSecond), last: sess.PathStats()}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		st := sess.PathStats()
		share, counted, lossy := m.observe(st)
		if counted {
			log.Debug("QUIC path loss", "lost_share", fmt.Sprintf("%.3f%%", share*100), "checks", len(m.recent), "rtt", st.SmoothedRTT.Round(time.Millisecond))
		}
		if lossy {
			log.Warn("QUIC is losing packets on this path; moving to TCP with BBR, which keeps its speed under random loss",
				"lost_share", fmt.Sprintf("%.2f%%", share*100), "checks", lossyChecks, "back_to_quic_after", lossyHold)
			return errLossySwitch
		}
	}
}

// lossyFallback says whether this agent can move off a lossy QUIC path:
// only TCP with BBR does better there (TCP with Cubic collapses just the
// same), so it needs BBR, on the socket or as the system's default.
func lossyFallback() (cc string, err error) {
	if err := transport.CongestionUsable(lossyCC); err != nil {
		return "", fmt.Errorf("%w (load it with `modprobe tcp_bbr`, or set `sysctl net.ipv4.tcp_congestion_control=bbr`)", err)
	}
	return lossyCC, nil
}
