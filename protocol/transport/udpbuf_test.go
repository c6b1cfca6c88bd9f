package transport_test

import (
	"os"
	"strings"
	"testing"

	"github.com/burrow-tunnel/burrow/protocol/transport"
)

// As root the privileged setting always succeeds; otherwise the advice, when
// given, must name the sysctl that fixes it.
func TestUDPBufferAdvice(t *testing.T) {
	advice := transport.UDPBufferAdvice()
	if os.Geteuid() == 0 && advice != "" {
		t.Errorf("root got advice: %s", advice)
	}
	if advice != "" && !strings.Contains(advice, "net.core.rmem_max") {
		t.Errorf("advice without the fix: %s", advice)
	}
	t.Logf("advice: %q", advice)
}
