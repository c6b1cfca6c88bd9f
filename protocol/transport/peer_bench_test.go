package transport_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/burrow-tunnel/burrow/protocol"
	"github.com/burrow-tunnel/burrow/protocol/transport"
)

// peerEnv makes the test binary a receiving peer for
// BenchmarkStreamThroughputTwoProcesses instead of running tests.
const peerEnv = "BURROW_BENCH_PEER"

// peerLifetime bounds a peer process, whatever happens to its parent.
const peerLifetime = 2 * time.Minute

// BenchmarkStreamThroughputTwoProcesses moves bytes through one stream of a
// loopback session whose far end is another process, as the agent and relay
// are: the tunnel's ceiling between two processes, before any HTTP. Reports
// MB/s and the CPU both processes spend per GiB (cpu-s/GiB), and each one's
// share (sender-, receiver-).
func BenchmarkStreamThroughputTwoProcesses(b *testing.B) {
	for _, name := range []string{"quic", "tcp"} {
		b.Run(name, func(b *testing.B) {
			addr, tlsConf, peer := startPeer(b)
			ctx, cancel := context.WithTimeout(b.Context(), peerLifetime)
			defer cancel()
			var (
				s   protocol.Session
				err error
			)
			if name == "quic" {
				s, err = transport.DialQUIC(ctx, addr, tlsConf)
			} else {
				s, err = transport.DialTCP(ctx, addr, tlsConf)
			}
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			st, err := s.OpenStream(ctx)
			if err != nil {
				b.Fatal(err)
			}
			// Write as the agent does: 256 KiB at a time.
			const chunk = 256 << 10
			buf := make([]byte, chunk)
			b.SetBytes(chunk)
			cpu0 := cpuTime()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := st.Write(buf); err != nil {
					b.Fatal(err)
				}
			}
			if err := st.CloseWrite(); err != nil {
				b.Fatal(err)
			}
			// The peer closes its side once it has read everything.
			if _, err := io.Copy(io.Discard, st); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			sender := cpuTime() - cpu0
			received, receiver, err := peer.result()
			if err != nil {
				b.Fatal(err)
			}
			if want := int64(b.N) * chunk; received != want {
				b.Fatalf("peer received %d bytes, want %d", received, want)
			}
			perGiB := func(d time.Duration) float64 { return d.Seconds() * float64(1<<30) / float64(received) }
			b.ReportMetric(perGiB(sender+receiver), "cpu-s/GiB")
			b.ReportMetric(perGiB(sender), "sender-cpu-s/GiB")
			b.ReportMetric(perGiB(receiver), "receiver-cpu-s/GiB")
			st.Close()
		})
	}
}

// peerProc is a running receiving peer.
type peerProc struct {
	cmd *exec.Cmd
	out *bufio.Scanner
}

// startPeer runs this test binary as a receiving peer and returns its
// tunnel address and a TLS configuration that trusts its certificate.
func startPeer(b *testing.B) (string, *tls.Config, *peerProc) {
	b.Helper()
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$", "-test.bench=^$")
	cmd.Env = append(os.Environ(), peerEnv+"=1")
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	p := &peerProc{cmd: cmd, out: bufio.NewScanner(stdout)}
	b.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	// First line: "listening ADDR CERT" with the certificate in base64 DER.
	if !p.out.Scan() {
		b.Fatalf("peer did not start: %v", p.out.Err())
	}
	f := strings.Fields(p.out.Text())
	if len(f) != 3 || f[0] != "listening" {
		b.Fatalf("peer said %q", p.out.Text())
	}
	der, err := base64.StdEncoding.DecodeString(f[2])
	if err != nil {
		b.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		b.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return f[1], &tls.Config{RootCAs: pool, ServerName: "localhost", NextProtos: []string{protocol.ALPN}}, p
}

// result reads the peer's report: the bytes it received and the CPU it spent
// from accepting the session until it had read them all.
func (p *peerProc) result() (int64, time.Duration, error) {
	if !p.out.Scan() {
		return 0, 0, fmt.Errorf("peer ended without a report: %v", p.out.Err())
	}
	var (
		n   int64
		cpu time.Duration
	)
	if _, err := fmt.Sscanf(p.out.Text(), "received %d cpu %d", &n, &cpu); err != nil {
		return 0, 0, fmt.Errorf("peer: %s", p.out.Text())
	}
	return n, cpu, nil
}

// runPeer is the receiving peer: it accepts one session and one stream,
// reads the stream to its end as the relay does (64 KiB at a time), reports,
// and closes. It returns the process's exit code.
func runPeer() int {
	ctx, cancel := context.WithTimeout(context.Background(), peerLifetime)
	defer cancel()
	fail := func(err error) int {
		fmt.Printf("error %v\n", err)
		return 1
	}
	cert, _ := testCert()
	l, err := transport.Listen("127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}}, slog.New(slog.DiscardHandler))
	if err != nil {
		return fail(err)
	}
	defer l.Close()
	fmt.Printf("listening %s %s\n", l.Addr(), base64.StdEncoding.EncodeToString(cert.Certificate[0]))
	s, err := l.Accept(ctx)
	if err != nil {
		return fail(err)
	}
	defer s.Close()
	cpu0 := cpuTime()
	st, err := s.AcceptStream(ctx)
	if err != nil {
		return fail(err)
	}
	n, err := io.CopyBuffer(struct{ io.Writer }{io.Discard}, st, make([]byte, 64<<10))
	cpu := cpuTime() - cpu0
	if err != nil {
		return fail(err)
	}
	if err := st.Close(); err != nil {
		return fail(err)
	}
	fmt.Printf("received %d cpu %d\n", n, cpu)
	// Wait for the sender to hang up, so that the stream's close reaches it.
	select {
	case <-s.Done():
	case <-ctx.Done():
	}
	return 0
}
