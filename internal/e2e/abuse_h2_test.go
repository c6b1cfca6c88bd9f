package e2e

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// The same attack over HTTP/2: one connection carries a hundred requests for
// the video and reads none of them. Every stream must cost the relay a
// bounded amount of memory and the home uplink a bounded amount of data,
// the site must keep working for everyone else, and limits.stalled_client
// must end each stream. Two such visitors come at once: one that grants no
// flow-control credit (the relay may send it 64 KiB in all), and one that
// grants the largest windows and then reads nothing from its socket, which
// fills the kernel's buffers and blocks the relay's writes to the
// connection itself.
func TestStalledHTTP2StreamsAreBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("two hundred stalled streams and a wait for their timeout")
	}
	const (
		streams      = 100
		stallTimeout = 10 * time.Second
		maxGrowth    = 256 << 20 // relay RSS over its baseline
		maxSent      = 64 << 20  // what the agent pulled from the service
	)
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			// Both attack connections come from 127.0.0.1: room for their
			// two hundred streams, so that none is refused a slot.
			e := newEnvHTTPS(t, tr, fmt.Sprintf("limits:\n  stalled_client: %s\n  streams_per_client: %d\n", stallTimeout, 2*streams+8))
			pid := e.relay.cmd.Process.Pid
			base, fds0 := rssOf(t, pid), fdCount(t, pid)
			heap0 := e.relayHeap()

			// A neighbour from 127.0.0.2, over HTTP/2 too: first on an idle relay.
			neighbour := e.httpsClientFrom("127.0.0.2")
			defer neighbour.CloseIdleConnections()
			small := "https://" + publicHost + "/files/small.bin"
			// As long as the attack is measured, so that both p99s rest on as
			// many requests.
			idle := e.useSite(neighbour, small, time.Now().Add(stallTimeout-time.Second), pid)
			if idle.failures > 0 {
				t.Fatalf("%d of %d requests failed on an idle relay", idle.failures, idle.asked)
			}

			sent0 := e.tunnelReceived()
			window := time.Now().Add(stallTimeout - time.Second)
			sentIn := e.sentUntil(window, sent0)
			noCredit := e.stalledH2("127.0.0.1", streams, 0)
			defer noCredit.Close()
			unread := e.stalledH2("127.0.0.1", streams, maxWindow)
			defer unread.Close()
			attacked := time.Now()

			use := e.useSite(neighbour, small, window, pid)
			sent := <-sentIn
			t.Logf("%s: relay RSS %d MiB at rest, peak %d MiB with 2×%d stalled streams; the agent sent %d MiB up the tunnel within the stall timeout",
				tr, base>>20, use.peakRSS>>20, streams, sent>>20)
			use.check(t, idle)
			if worst := use.percentile(100); worst >= stallTimeout {
				t.Errorf("a request from another address took %v during the attack, as long as the stall timeout", worst)
			}
			if use.peakRSS-base > maxGrowth {
				t.Errorf("relay RSS grew by %d MiB, want at most %d MiB", (use.peakRSS-base)>>20, maxGrowth>>20)
			}
			if sent > maxSent {
				t.Errorf("the agent sent %d MiB for streams that read nothing, want at most %d MiB", sent>>20, maxSent>>20)
			}

			// After the timeout the visitor that grants no credit finds
			// every stream reset (its connection may go on); the one whose
			// socket is full has lost its connection, which no frame could
			// reach any more. Neither reads anything before then.
			time.Sleep(time.Until(attacked.Add(2*stallTimeout + 2*time.Second)))
			deadline := time.Now().Add(5 * time.Second)
			if open, ended := streamsEnd(noCredit, streams, deadline); open > 0 && !ended {
				t.Errorf("%d of %d streams that got no credit still open %v after the attack", open, streams, time.Since(attacked).Round(time.Second))
			}
			if _, ended := streamsEnd(unread, streams, deadline); !ended {
				t.Errorf("the connection whose socket was full still open %v after the attack", time.Since(attacked).Round(time.Second))
			}
			noCredit.Close()
			unread.Close()
			time.Sleep(500 * time.Millisecond) // the relay sees the closes
			if fds := fdCount(t, pid); fds > fds0+8 {
				t.Errorf("relay holds %d file descriptors after the attack, %d before it", fds, fds0)
			}
			e.heapReturns(heap0)
		})
	}
}

// maxWindow is the largest flow-control window HTTP/2 allows.
const maxWindow = 1<<31 - 1

// httpsClientFrom is a client whose connections come from ip and go to the
// relay's public HTTPS port, speaking HTTP/2.
func (e *env) httpsClientFrom(ip string) *http.Client {
	c := clientFrom(ip, e.httpsAddr())
	tr := c.Transport.(*http.Transport)
	tr.TLSClientConfig = &tls.Config{RootCAs: e.roots}
	tr.ForceAttemptHTTP2 = true
	return c
}

// stalledH2 opens an HTTP/2 connection from ip to the relay's HTTPS port
// and asks for the large file on n streams, then reads nothing. A window of
// 0 grants no credit beyond HTTP/2's initial 64 KiB for the connection;
// any other sets every stream's window and the connection's to it.
func (e *env) stalledH2(ip string, n int, window uint32) net.Conn {
	t := e.t
	t.Helper()
	d := &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	c, err := tls.DialWithDialer(d, "tcp", e.httpsAddr(), &tls.Config{
		ServerName: publicHost,
		RootCAs:    e.roots,
		NextProtos: []string{http2.NextProtoTLS},
	})
	if err != nil {
		t.Fatal(err)
	}
	if p := c.ConnectionState().NegotiatedProtocol; p != http2.NextProtoTLS {
		c.Close()
		t.Fatalf("relay negotiated %q, want h2", p)
	}
	fr := http2.NewFramer(c, nil)
	var hdr bytes.Buffer
	enc := hpack.NewEncoder(&hdr)
	err = func() error {
		if _, err := c.Write([]byte(http2.ClientPreface)); err != nil {
			return err
		}
		settings := []http2.Setting{{ID: http2.SettingEnablePush, Val: 0}}
		if window > 0 {
			settings = append(settings, http2.Setting{ID: http2.SettingInitialWindowSize, Val: window})
		}
		if err := fr.WriteSettings(settings...); err != nil {
			return err
		}
		// The relay's SETTINGS are acknowledged unread, as they must be.
		if err := fr.WriteSettingsAck(); err != nil {
			return err
		}
		if window > 0 {
			if err := fr.WriteWindowUpdate(0, window-65535); err != nil {
				return err
			}
		}
		for i := range n {
			hdr.Reset()
			for _, f := range [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", publicHost}, {":path", "/files/large.bin"}} {
				if err := enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]}); err != nil {
					return err
				}
			}
			if err := fr.WriteHeaders(http2.HeadersFrameParam{
				StreamID: uint32(2*i + 1), BlockFragment: hdr.Bytes(), EndStream: true, EndHeaders: true,
			}); err != nil {
				return err
			}
		}
		return nil
	}()
	if err != nil {
		c.Close()
		t.Fatalf("HTTP/2 attack connection: %v", err)
	}
	return c
}

// streamsEnd reads the frames of c, one of stalledH2's connections with n
// streams, until every stream has ended (reset, or its answer complete) or
// the connection has (GOAWAY, or closed), until deadline at most. It returns
// how many streams are still open, and whether the connection ended.
func streamsEnd(c net.Conn, n int, deadline time.Time) (open int, ended bool) {
	_ = c.SetReadDeadline(deadline)
	fr := http2.NewFramer(nil, c)
	done := map[uint32]bool{}
	for len(done) < n {
		f, err := fr.ReadFrame()
		if err != nil {
			var se http2.StreamError
			if errors.As(err, &se) {
				continue // a frame the framer checks and refuses
			}
			return n - len(done), !errors.Is(err, os.ErrDeadlineExceeded)
		}
		switch f := f.(type) {
		case *http2.RSTStreamFrame:
			done[f.StreamID] = true
		case *http2.GoAwayFrame:
			return n - len(done), true
		case *http2.DataFrame:
			if f.StreamEnded() {
				done[f.StreamID] = true
			}
		case *http2.HeadersFrame:
			if f.StreamEnded() {
				done[f.StreamID] = true
			}
		}
	}
	return 0, false
}
