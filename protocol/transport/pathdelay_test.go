package transport_test

import (
	"io"
	"runtime"
	"testing"

	"github.com/burrow-tunnel/burrow/protocol"
)

// A sender's session reports its round trip and what it delivered, on both
// transports: the agent paces bulk streams by them.
func TestPathDelay(t *testing.T) {
	pairs := map[string]func(testing.TB) (protocol.Session, protocol.Session){"quic": quicPair}
	if runtime.GOOS == "linux" {
		pairs["tcp"] = tcpPair // TCP_INFO
	}
	for name, pair := range pairs {
		t.Run(name, func(t *testing.T) {
			d, l := pair(t)
			ost, ast := streamPair(t, d, l)
			go io.Copy(io.Discard, ast)
			if _, err := ost.Write(make([]byte, 4<<20)); err != nil {
				t.Fatal(err)
			}
			pd, ok := d.(protocol.PathDelayer)
			if !ok {
				t.Fatalf("%T reports no PathDelay", d)
			}
			got := pd.PathDelay()
			if got.RTT <= 0 || got.MinRTT < 0 || got.Delivered == 0 {
				t.Fatalf("PathDelay after 4 MiB sent: %+v", got)
			}
		})
	}
}
