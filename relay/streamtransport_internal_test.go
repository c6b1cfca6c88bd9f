package relay

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/burrow-tunnel/burrow/protocol"
	"github.com/burrow-tunnel/burrow/protocol/transport"
)

// An agent that cannot reach its service answers the stream with that status
// and closes it. Over QUIC its close also tells the relay to stop sending,
// and when that arrives before the relay has written the request, the write
// fails first. The relay must still report the agent's status (the visitor
// gets the "service not answering" page), not the failed write (a tunnel
// error page).
func TestStatusBeforeRequestIsWritten(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	relaySide, agentSide := quicSessions(t, ctx)

	agentDone := make(chan error, 1)
	go func() {
		st, err := agentSide.AcceptStream(ctx)
		if err != nil {
			agentDone <- err
			return
		}
		defer st.Close()
		if _, err := protocol.ReadStreamHeader(st); err != nil {
			agentDone <- err
			return
		}
		agentDone <- protocol.WriteStatus(st, protocol.StatusServiceUnreachable, "connection refused")
	}()

	tr := &streamTransport{idleTimeout: time.Minute, maxIdle: 1, dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		st, err := relaySide.OpenStream(ctx)
		if err != nil {
			return nil, err
		}
		hdr, _ := protocol.StreamHeader{Kind: protocol.KindHTTP, RouteID: 1}.AppendBinary(nil)
		if _, err := st.Write(hdr); err != nil {
			return nil, err
		}
		if err := <-agentDone; err != nil {
			return nil, err
		}
		// Wait until the agent's stop-sending has arrived: from then on a
		// write fails.
		for {
			if _, err := st.Write(nil); err != nil {
				break
			}
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(time.Millisecond):
			}
		}
		return &statusConn{Stream: st}, nil
	}}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://r1.route.invalid/", nil)
	resp, err := tr.RoundTrip(req)
	if err == nil {
		resp.Body.Close()
		t.Fatal("RoundTrip succeeded, want the agent's status")
	}
	var st *protocol.StatusError
	if !errors.As(err, &st) || st.Code != protocol.StatusServiceUnreachable {
		t.Errorf("RoundTrip: %v, want the agent's service-unreachable status", err)
	}
}

// quicSessions is a QUIC session over loopback: the relay's side, with the
// relay's self-signed identity, and the agent's, which trusts it.
func quicSessions(t *testing.T, ctx context.Context) (relaySide, agentSide protocol.Session) {
	t.Helper()
	cert, err := LoadTunnelCertificate(TunnelConfig{}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	l, err := transport.Listen("127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	agentSide, err = transport.DialQUIC(ctx, l.Addr().String(), &tls.Config{RootCAs: pool, ServerName: leaf.DNSNames[0], NextProtos: []string{protocol.ALPN}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { agentSide.Close() })
	relaySide, err = l.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { relaySide.Close() })
	return relaySide, agentSide
}
