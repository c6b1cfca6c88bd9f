package e2e

import (
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/burrow-tunnel/burrow/internal/testutil"
)

// TestAgentStopLogsNoError: an agent stopped as systemd stops it leaves the
// relay and its own log saying so, not "read control frame: EOF".
func TestAgentStopLogsNoError(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			e := newEnv(t, tr)
			// The agent may have tried before the relay listened: only what follows the stop counts.
			relayFrom, agentFrom := len(e.relayLog.String()), len(e.agentLog.String())
			if err := e.agent.stop(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			testutil.WaitFor(t, 10*time.Second, "the relay to see the agent go", func() bool {
				return strings.Contains(e.relayLog.String(), "agent disconnected")
			})
			for name, log := range map[string]string{"relay": e.relayLog.String()[relayFrom:], "agent": e.agentLog.String()[agentFrom:]} {
				for _, bad := range []string{"EOF", "level=WARN", "level=ERROR", "session ended"} {
					if strings.Contains(log, bad) {
						t.Errorf("the %s's log says %q after a normal stop:\n%s", name, bad, log)
					}
				}
			}
			if line := lineWith(e.relayLog.String(), `msg="agent going away"`); !strings.Contains(line, `reason="agent stopping"`) {
				t.Errorf("the relay did not log why the agent went:\n%s", e.relayLog)
			}
		})
	}
}

// lineWith returns the first line of logs that holds s, or "".
func lineWith(logs, s string) string {
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, s) {
			return l
		}
	}
	return ""
}
