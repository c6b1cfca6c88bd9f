package transport_test

import (
	"io"
	"syscall"
	"testing"
	"time"

	"github.com/burrow-tunnel/burrow/protocol"
)

// BenchmarkStreamThroughput moves bytes through one stream of a loopback
// session: the tunnel's ceiling before any HTTP. Reports MB/s.
func BenchmarkStreamThroughput(b *testing.B) {
	pairs := map[string]func(testing.TB) (protocol.Session, protocol.Session){"quic": quicPair, "tcp": tcpPair}
	for _, name := range []string{"quic", "tcp"} {
		b.Run(name, func(b *testing.B) {
			dialer, listener := pairs[name](b)
			const chunk = 64 << 10
			b.SetBytes(chunk)
			ctx := b.Context()
			done := make(chan error, 1)
			go func() {
				st, err := listener.AcceptStream(ctx)
				if err != nil {
					done <- err
					return
				}
				// Read as the relay and agent do: 64 KiB at a time.
				_, err = io.CopyBuffer(struct{ io.Writer }{io.Discard}, st, make([]byte, 64<<10))
				st.Close()
				done <- err
			}()
			st, err := dialer.OpenStream(ctx)
			if err != nil {
				b.Fatal(err)
			}
			buf := make([]byte, chunk)
			cpu0 := cpuTime()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := st.Write(buf); err != nil {
					b.Fatal(err)
				}
			}
			st.CloseWrite()
			if err := <-done; err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			// CPU time is steadier than wall time on a shared machine.
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N*chunk)*float64(1<<30)/1e9, "cpu-s/GiB")
			st.Close()
		})
	}
}

// cpuTime is the process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
