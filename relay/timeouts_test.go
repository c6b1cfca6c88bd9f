package relay_test

import (
	"testing"
	"time"
)

// Streams have no deadline: a 2-hour video or an HLS segment that takes 15 s
// before its headers must not be cut; only slow request headers are.
func TestNoTimeoutOnStreams(t *testing.T) {
	h := startRelay(t, []string{"stash.example.com"})
	to := h.relay.ProxyTimeouts()
	if to.ResponseHeader != 0 && to.ResponseHeader < 120*time.Second {
		t.Errorf("response header timeout %v is below 120 s", to.ResponseHeader)
	}
	if to.Read != 0 || to.Write != 0 {
		t.Errorf("public server has read/write timeouts %v/%v", to.Read, to.Write)
	}
	if to.ReadHeader == 0 || to.ReadHeader > 30*time.Second {
		t.Errorf("ReadHeaderTimeout %v does not guard against slow headers", to.ReadHeader)
	}
}
