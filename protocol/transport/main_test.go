package transport_test

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// quic-go prints once per process that it could not raise the UDP buffer
	// sizes; on a test machine that is noise.
	os.Setenv("QUIC_GO_DISABLE_RECEIVE_BUFFER_WARNING", "true")
	if os.Getenv(peerEnv) != "" {
		os.Exit(runPeer())
	}
	goleak.VerifyTestMain(m)
}
