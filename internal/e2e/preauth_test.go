package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/yamux"
	"github.com/quic-go/quic-go"

	"github.com/burrow-tunnel/burrow/protocol"
)

// These tests play peers on the tunnel port that have no token, or a wrong
// one, against the relay process: what they can make it hold, what they
// make it log, and how fast they may try.

// stream is a stream a test peer opened: a *quic.Stream or a *yamux.Stream.
type stream interface {
	io.ReadWriteCloser
	SetDeadline(time.Time) error
}

// peer is a tunnel connection made by the test itself, not by an agent, so
// that it can do what an agent never does.
type peer struct {
	open  func() (stream, error) // opens a stream without waiting for the relay's leave
	close func()
}

// dialPeer connects to the relay's tunnel port at addr from the local IP
// address from, over transport, and completes the TLS handshake. It does not
// check the relay's certificate: it plays an attacker as often as an agent.
func dialPeer(ctx context.Context, transport, from, addr string) (*peer, error) {
	tlsConf := &tls.Config{InsecureSkipVerify: true, NextProtos: []string{protocol.ALPN}}
	if transport == "quic" {
		udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(from)})
		if err != nil {
			return nil, err
		}
		raddr, err := net.ResolveUDPAddr("udp", addr)
		if err != nil {
			udp.Close()
			return nil, err
		}
		tr := &quic.Transport{Conn: udp}
		conn, err := tr.Dial(ctx, raddr, tlsConf, &quic.Config{HandshakeIdleTimeout: 5 * time.Second})
		if err != nil {
			tr.Close()
			udp.Close()
			return nil, err
		}
		return &peer{
			open: func() (stream, error) { return conn.OpenStream() },
			close: func() {
				conn.CloseWithError(0, "")
				tr.Close()
				udp.Close()
			},
		}, nil
	}
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	tc := tls.Client(c, tlsConf)
	if err := tc.HandshakeContext(ctx); err != nil {
		c.Close()
		return nil, err
	}
	conf := yamux.DefaultConfig()
	conf.EnableKeepAlive = false
	conf.LogOutput = io.Discard
	sess, err := yamux.Client(tc, conf)
	if err != nil {
		c.Close()
		return nil, err
	}
	return &peer{
		open:  func() (stream, error) { return sess.OpenStream() },
		close: func() { sess.Close() },
	}, nil
}

// hello plays an agent's handshake over p with token, asking for a dry run
// of the route publicHost, and returns the relay's answer.
func (p *peer) hello(token string) (*protocol.Welcome, error) {
	st, err := p.open()
	if err != nil {
		return nil, err
	}
	defer st.Close()
	_ = st.SetDeadline(time.Now().Add(10 * time.Second))
	h := protocol.Hello{Version: protocol.Version, Features: []string{protocol.FeatureDryRun}, Token: token, Agent: "nas",
		Routes: []protocol.Route{{Host: publicHost}}}
	if err := protocol.WriteMessage(st, protocol.MsgHello, &h); err != nil {
		return nil, err
	}
	return protocol.ReadAnswer(st)
}

// tunnelAddr is the relay's tunnel address.
func (e *env) tunnelAddr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(e.tunnelPort)) }

// vmRSS is the resident memory of process pid.
func vmRSS(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// TestPreAuthMemory: 50 peers without a token each open as many streams as
// the relay lets them and fill them before any Hello, over each transport.
// The relay process (its resident memory, read from /proc) may grow by at
// most 16 MiB while they hold on, within the relay's handshake timeout.
//
// The relay runs as its own process so that its memory is measured as a
// VPS pays for it: the Go heap with the collector's headroom, goroutine
// stacks, and what quic-go and crypto/tls keep outside Go's accounting of
// live objects. A few peers make the same attack first, and go, so that
// what the relay allocates once (buffer pools, the collector's first
// headroom) is not counted against the fifty.
func TestPreAuthMemory(t *testing.T) {
	const (
		peers     = 50
		warmUp    = 5
		budget    = 16 << 20 // the growth allowed for all of them
		attackFor = 6 * time.Second
	)
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			// No handshake limit: 50 handshakes from one address would
			// otherwise mostly be refused, and this is about each one's cost.
			e := newEnvWith(t, tr, "limits:\n  handshakes_per_minute: 0\n")
			pid := e.relay.cmd.Process.Pid
			a := preAuthAttack(t, e, warmUp, time.Now().Add(time.Second))
			a.close()
			time.Sleep(time.Second)
			base, err := vmRSS(pid)
			if err != nil {
				t.Fatal(err)
			}

			// Sample the relay's memory until the peers are gone.
			var peak int64
			stopSampling := make(chan struct{})
			sampled := make(chan struct{})
			go func() {
				defer close(sampled)
				tick := time.NewTicker(50 * time.Millisecond)
				defer tick.Stop()
				for {
					if rss, err := vmRSS(pid); err == nil {
						peak = max(peak, rss)
					}
					select {
					case <-stopSampling:
						return
					case <-tick.C:
					}
				}
			}()
			deadline := time.Now().Add(attackFor)
			a = preAuthAttack(t, e, peers, deadline)
			time.Sleep(time.Until(deadline) + 500*time.Millisecond)
			close(stopSampling)
			<-sampled
			a.close()

			growth := peak - base
			t.Logf("%s: %d peers connected, and opened %d streams (the relay may reset them at once); relay RSS %.1f MiB before, peak %.1f MiB: +%.1f MiB",
				tr, len(a.peers), a.streams, float64(base)/(1<<20), float64(peak)/(1<<20), float64(growth)/(1<<20))
			if len(a.peers) < peers*9/10 {
				t.Fatalf("only %d of %d peers connected", len(a.peers), peers)
			}
			if growth > budget {
				t.Errorf("relay memory grew by %.1f MiB for %d unauthenticated peers, want at most %d MiB",
					float64(growth)/(1<<20), peers, budget>>20)
			}
		})
	}
}

// attack is what preAuthAttack's peers hold.
type attack struct {
	peers   []*peer
	streams int
}

func (a *attack) close() {
	for _, p := range a.peers {
		p.close()
	}
}

// preAuthAttack connects n peers without a token to e's relay over its
// transport. Each opens 16 streams, as far as the relay lets it: on the
// first, the control stream, it writes the largest Hello the relay reads,
// all but its last byte; on each other, 1 MiB. Writes stop at deadline. It
// returns once every peer has written what it could.
func preAuthAttack(t *testing.T, e *env, n int, deadline time.Time) *attack {
	const streams, perStream = 16, 1 << 20
	var (
		wg                 sync.WaitGroup
		mu                 sync.Mutex
		a                  attack
		filler             = make([]byte, perStream)
		helloHeader        [5]byte
		helloBodyAllButOne = make([]byte, protocol.MaxMessageSize-1)
	)
	helloHeader[0] = byte(protocol.MsgHello)
	binary.BigEndian.PutUint32(helloHeader[1:], protocol.MaxMessageSize)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			p, err := dialPeer(ctx, e.transport, "127.0.0.1", e.tunnelAddr())
			if err != nil {
				t.Logf("dial: %v", err)
				return
			}
			mu.Lock()
			a.peers = append(a.peers, p)
			mu.Unlock()
			var writes sync.WaitGroup
			for i := range streams {
				st, err := p.open()
				if err != nil {
					break // the relay allows no more
				}
				mu.Lock()
				a.streams++
				mu.Unlock()
				writes.Add(1)
				go func() {
					defer writes.Done()
					_ = st.SetDeadline(deadline)
					if i == 0 {
						_, _ = st.Write(helloHeader[:])
						_, _ = st.Write(helloBodyAllButOne)
						return
					}
					_, _ = st.Write(filler)
				}()
			}
			writes.Wait()
		}()
	}
	wg.Wait()
	return &a
}

// TestBadTokenFlood: 500 handshakes with a wrong token, from one address,
// in a few seconds. Each gets a Reject that says why, and the relay's log
// gets a bounded number of lines: the first at once, with its reason.
func TestBadTokenFlood(t *testing.T) {
	const tries, workers, maxLines = 500, 8, 5
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			e := newEnvWith(t, tr, "limits:\n  handshakes_per_minute: 0\n")
			before := len(e.relayLog.String())
			start := time.Now()
			var (
				wg               sync.WaitGroup
				mu               sync.Mutex
				rejected, failed int
				lastErr          error
			)
			work := make(chan struct{}, tries)
			for range tries {
				work <- struct{}{}
			}
			close(work)
			for range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range work {
						err := func() error {
							ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
							defer cancel()
							p, err := dialPeer(ctx, tr, "127.0.0.1", e.tunnelAddr())
							if err != nil {
								return err
							}
							defer p.close()
							_, err = p.hello("not-the-token")
							return err
						}()
						var rj *protocol.RejectError
						mu.Lock()
						if errors.As(err, &rj) && rj.Reject.Code == protocol.RejectBadToken && strings.Contains(rj.Reject.Message, "invalid token") {
							rejected++
						} else {
							failed++
							lastErr = err
						}
						mu.Unlock()
					}
				}()
			}
			wg.Wait()
			took := time.Since(start)
			time.Sleep(200 * time.Millisecond) // the last lines reach the relay's log
			var lines []string
			for l := range strings.Lines(e.relayLog.String()[before:]) {
				if !strings.Contains(l, "level=DEBUG") {
					lines = append(lines, strings.TrimSpace(l))
				}
			}
			t.Logf("%s: %d tries in %v: %d rejected as invalid token, %d failed otherwise; %d relay log lines above debug",
				tr, tries, took.Round(time.Millisecond), rejected, failed, len(lines))
			if rejected < tries*95/100 {
				t.Errorf("only %d of %d tries got a Reject for their token (last other outcome: %v)", rejected, tries, lastErr)
			}
			if len(lines) > maxLines {
				t.Errorf("%d relay log lines for the flood, want at most %d; the first ones:\n%s",
					len(lines), maxLines, strings.Join(lines[:min(len(lines), 10)], "\n"))
			}
			if len(lines) == 0 || !strings.Contains(lines[0], "invalid token") || !strings.Contains(lines[0], "agents[].token_sha256") {
				t.Errorf("the flood's first log line does not say why the token was refused: %q", lines)
			}
		})
	}
}

// TestHandshakeRateLimit: with the default limit (60 a minute, 6 at once),
// a burst of 20 handshakes from 127.0.0.1 is refused beyond the limit, and
// before any TLS work; an agent connecting from 127.0.0.2 meanwhile is
// welcomed.
func TestHandshakeRateLimit(t *testing.T) {
	const burst, tries = 6, 20
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			e := newEnvWith(t, tr, "limits:\n  handshakes_per_minute: 60\n")
			var done, refused int
			var errs []string
			for range tries {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				p, err := dialPeer(ctx, tr, "127.0.0.1", e.tunnelAddr())
				cancel()
				if err != nil {
					refused++
					errs = append(errs, err.Error())
					if tr == "quic" {
						var te *quic.TransportError
						if !errors.As(err, &te) || te.ErrorCode != quic.ConnectionRefused {
							t.Errorf("QUIC handshake refused with %v, want CONNECTION_REFUSED (before TLS)", err)
						}
					}
					continue
				}
				done++
				p.close()
			}
			t.Logf("%s: %d of %d handshakes from 127.0.0.1 done, %d refused (first error: %v)", tr, done, tries, refused, first(errs))
			// The agent's handshake spent one of the burst, and one comes back
			// per second. Over QUIC, the last three pass only after proving
			// their address (a Retry).
			if done < burst-1 || done > burst {
				t.Errorf("%d of %d handshakes done in a burst, want %d (or %d, with one back)", done, tries, burst-1, burst)
			}

			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			p, err := dialPeer(ctx, tr, "127.0.0.2", e.tunnelAddr())
			if err != nil {
				t.Fatalf("an agent from 127.0.0.2: %v", err)
			}
			defer p.close()
			w, err := p.hello(e.token)
			if err != nil || len(w.Accepted) != 1 {
				t.Fatalf("an agent from 127.0.0.2: welcome %+v, %v; want its route accepted", w, err)
			}
			if n := strings.Count(e.relayLog.String(), "tunnel handshake refused"); n < 1 || n > 2 {
				t.Errorf("%d log lines for the refused handshakes, want the first at once (and perhaps one sum)", n)
			}
		})
	}
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}
