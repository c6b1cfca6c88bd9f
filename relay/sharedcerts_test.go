package relay_test

import (
	"bufio"
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/burrow-tunnel/burrow/internal/redistest"
	"github.com/burrow-tunnel/burrow/internal/relaytest"
	"github.com/burrow-tunnel/burrow/internal/testutil"
	"github.com/burrow-tunnel/burrow/relay"
)

// TestSharedCertificatesThroughRedis: two relay processes share one Redis
// and one ACME CA (pebble). Both start at once: one order per name, the
// second relay serves the certificate the first obtained, and each
// challenge is answered by whichever relay pebble reaches, the one that did
// not start it reading the token from Redis. With Redis stopped both keep
// serving and say so once; with Redis back, certificates renew.
//
// The relays are separate processes, as in production: certmagic keeps
// challenge tokens and queued jobs in process-wide memory, which relays in
// one process would share without Redis.
func TestSharedCertificatesThroughRedis(t *testing.T) {
	rds := redistest.Start(t)
	p := newPebble(t, 45*time.Second)
	ips := []net.IP{net.IPv4(127, 0, 0, 1), net.IPv4(127, 0, 0, 2)}
	// pebble validates each challenge three times; each lookup of a name
	// answers the next relay's address, so every challenge reaches both.
	p.alternate(ips...)
	httpPort, httpsPort := freePortOn(t, ips), freePortOn(t, ips)
	p.start(httpPort, httpsPort)
	hosts := []string{"stash.example.test", "photos.example.test"}

	var relays []*relayProcess
	for i, ip := range ips {
		relays = append(relays, startRelayProcess(t, fmt.Sprintf("relay %c", 'A'+i), childRelay{
			HTTP:       net.JoinHostPort(ip.String(), strconv.Itoa(httpPort)),
			HTTPS:      net.JoinHostPort(ip.String(), strconv.Itoa(httpsPort)),
			Hosts:      hosts,
			StateDir:   t.TempDir(),
			Redis:      rds.Addr,
			CA:         p.URL,
			CARoot:     p.WFERoot,
			RenewCheck: 250 * time.Millisecond,
			RedisWatch: 100 * time.Millisecond,
		}))
	}
	for _, r := range relays {
		r.waitListening(t)
	}
	roots := p.Roots()

	first := map[string]*x509.Certificate{}
	for _, h := range hosts {
		a := waitForCert(t, relays[0].https, h, roots)
		b := waitForCert(t, relays[1].https, h, roots)
		if a.SerialNumber.Cmp(b.SerialNumber) != 0 {
			t.Errorf("%s: the relays serve two certificates (serials %v and %v), want the one in Redis", h, a.SerialNumber, b.SerialNumber)
		}
		if n := p.ordersFor(h); n != 1 {
			t.Errorf("%s: %d orders at the CA, want exactly 1 for both relays", h, n)
		}
		first[h] = a
	}
	distributed := 0
	for _, r := range relays {
		served := r.logLines("served key authentication")
		if len(served) == 0 {
			t.Errorf("%s answered no challenge; pebble reaches both relays", r.name)
		}
		for _, l := range served {
			if strings.Contains(l, "distributed=true") {
				distributed++
			}
		}
	}
	if distributed == 0 {
		t.Errorf("no relay answered a challenge from the token in Redis (challenges validated: %v)", p.Challenges())
	}

	// Redis goes away: each relay says so once and serves what it holds.
	rds.Stop()
	for _, r := range relays {
		testutil.WaitFor(t, 20*time.Second, r.name+" to log that Redis is unreachable", func() bool {
			return len(r.logLines("certificate store unreachable")) > 0
		})
	}
	// Let each relay find Redis gone at many more pings (every 100 ms):
	// still one line each.
	time.Sleep(time.Second)
	for _, r := range relays {
		for _, h := range hosts {
			c, err := servedCert(r.https, h, roots)
			if err != nil {
				t.Errorf("%s, Redis stopped: no certificate for %s: %v", r.name, h, err)
			} else if c.SerialNumber.Cmp(first[h].SerialNumber) != 0 {
				t.Errorf("%s, Redis stopped: serves serial %v for %s, want the cached %v", r.name, c.SerialNumber, h, first[h].SerialNumber)
			}
		}
	}
	// Back, empty (the test's Redis keeps nothing on disk): the relays say so
	// once, and the renewals that follow obtain new certificates through it.
	rds.Start()
	for _, r := range relays {
		testutil.WaitFor(t, 20*time.Second, r.name+" to log that Redis is back", func() bool {
			return len(r.logLines("certificate store reachable again")) > 0
		})
		if n := len(r.logLines("certificate store unreachable")); n != 1 {
			t.Errorf("%s logged the outage %d times, want once", r.name, n)
		}
	}
	for _, h := range hosts {
		testutil.WaitFor(t, 60*time.Second, "both relays serving one renewed certificate for "+h, func() bool {
			a, errA := servedCert(relays[0].https, h, roots)
			b, errB := servedCert(relays[1].https, h, roots)
			return errA == nil && errB == nil && a.SerialNumber.Cmp(first[h].SerialNumber) != 0 &&
				a.SerialNumber.Cmp(b.SerialNumber) == 0
		})
		if n := p.ordersFor(h); n != 2 {
			t.Errorf("%s: %d orders at the CA after the renewal, want 2 (one renewal for both relays)", h, n)
		}
	}
}

// freePortOn finds a port number free for TCP and UDP on every one of ips.
func freePortOn(t *testing.T, ips []net.IP) int {
	t.Helper()
	for range 50 {
		ln, err := net.Listen("tcp", net.JoinHostPort(ips[0].String(), "0"))
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		closers := []io.Closer{ln}
		free := true
		for _, ip := range ips {
			addr := net.JoinHostPort(ip.String(), strconv.Itoa(port))
			if !ip.Equal(ips[0]) {
				l, err := net.Listen("tcp", addr)
				if err != nil {
					free = false
					break
				}
				closers = append(closers, l)
			}
			u, err := net.ListenPacket("udp", addr)
			if err != nil {
				free = false
				break
			}
			closers = append(closers, u)
		}
		for _, c := range closers {
			c.Close()
		}
		if free {
			return port
		}
	}
	t.Fatalf("no port free on all of %v", ips)
	return 0
}

// relayChildEnv holds a childRelay in JSON when this test binary runs as a relay.
const relayChildEnv = "BURROW_TEST_RELAY_CHILD"

// childRelay is the relay a process started by startRelayProcess runs.
type childRelay struct {
	HTTP, HTTPS string
	Hosts       []string
	StateDir    string
	Redis       string
	CA, CARoot  string
	RenewCheck  time.Duration
	RedisWatch  time.Duration
}

// runRelayChild runs the relay that the environment describes until SIGTERM.
func runRelayChild(spec string) int {
	var c childRelay
	if err := json.Unmarshal([]byte(spec), &c); err != nil {
		fmt.Fprintln(os.Stderr, "relay child:", err)
		return 2
	}
	host, _, _ := net.SplitHostPort(c.HTTP)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s, err := relay.New(relay.Config{
		Tunnel: relay.TunnelConfig{Listen: net.JoinHostPort(host, "0")},
		Public: relay.PublicConfig{HTTP: c.HTTP, HTTPS: c.HTTPS},
		TLS: relay.TLSConfig{
			ACME:    relay.ACMEConfig{CA: c.CA, CARoot: c.CARoot, Email: "owner@example.test"},
			Storage: relay.StorageConfig{Redis: relay.RedisStorageConfig{Address: c.Redis, KeyPrefix: relay.DefaultRedisKeyPrefix}},
		},
		StateDir: c.StateDir,
		Agents:   []relay.AgentGrant{relaytest.Grant("nas", "test-token", c.Hosts...)},
	}, log)
	if err != nil {
		log.Error("relay child", "err", err)
		return 1
	}
	s.SetACMETestOptions(relay.ACMETestOptions{RenewCheckInterval: c.RenewCheck, DisableARI: true, RedisWatch: c.RedisWatch})
	if err := s.Listen(); err != nil {
		log.Error("relay child", "err", err)
		return 1
	}
	fmt.Println("listening")
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	if err := s.Run(ctx); err != nil {
		log.Error("relay child", "err", err)
		return 1
	}
	return 0
}

// relayProcess is this test binary running as one relay.
type relayProcess struct {
	name      string
	https     string
	log       *testutil.SyncBuffer
	cmd       *exec.Cmd
	listening chan error
	exited    chan struct{}
}

// startRelayProcess starts a relay process; waitListening waits for its listeners.
func startRelayProcess(t *testing.T, name string, c childRelay) *relayProcess {
	t.Helper()
	spec, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	r := &relayProcess{name: name, https: c.HTTPS, log: &testutil.SyncBuffer{}, listening: make(chan error, 1), exited: make(chan struct{})}
	r.cmd = exec.Command(os.Args[0], "-test.run=^$")
	r.cmd.Env = append(os.Environ(), relayChildEnv+"="+string(spec))
	r.cmd.Stderr = r.log
	out, err := r.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		line, err := bufio.NewReader(out).ReadString('\n')
		if err == nil && line != "listening\n" {
			err = fmt.Errorf("said %q", line)
		}
		r.listening <- err
		_, _ = io.Copy(io.Discard, out)
		_ = r.cmd.Wait()
		close(r.exited)
	}()
	t.Cleanup(func() {
		_ = r.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-r.exited:
		case <-time.After(20 * time.Second):
			t.Errorf("%s did not stop within 20s of SIGTERM", r.name)
			_ = r.cmd.Process.Kill()
			<-r.exited
		}
		if t.Failed() {
			t.Logf("%s log:\n%s", r.name, r.log)
		}
	})
	return r
}

func (r *relayProcess) waitListening(t *testing.T) {
	t.Helper()
	select {
	case err := <-r.listening:
		if err != nil {
			t.Fatalf("%s did not start: %v\n%s", r.name, err, r.log)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not start within 30s:\n%s", r.name, r.log)
	}
}

// logLines are the relay's log lines that contain s.
func (r *relayProcess) logLines(s string) []string {
	var lines []string
	for _, l := range strings.Split(r.log.String(), "\n") {
		if strings.Contains(l, s) {
			lines = append(lines, l)
		}
	}
	return lines
}

// TestRelayStartedWhileRedisDown: a relay that starts while Redis is
// unreachable obtains its certificates once Redis is back, without a restart.
func TestRelayStartedWhileRedisDown(t *testing.T) {
	rds := redistest.Start(t)
	rds.Stop()
	p := newPebble(t, 90*24*time.Hour)
	ips := []net.IP{net.IPv4(127, 0, 0, 1)}
	httpPort, httpsPort := freePortOn(t, ips), freePortOn(t, ips)
	p.start(httpPort, httpsPort)
	r := startRelayProcess(t, "relay", childRelay{
		HTTP:       net.JoinHostPort("127.0.0.1", strconv.Itoa(httpPort)),
		HTTPS:      net.JoinHostPort("127.0.0.1", strconv.Itoa(httpsPort)),
		Hosts:      []string{"stash.example.test"},
		StateDir:   t.TempDir(),
		Redis:      rds.Addr,
		CA:         p.URL,
		CARoot:     p.WFERoot,
		RenewCheck: 250 * time.Millisecond,
		RedisWatch: 100 * time.Millisecond,
	})
	r.waitListening(t)
	testutil.WaitFor(t, 20*time.Second, "the relay to log that Redis is unreachable", func() bool {
		return len(r.logLines("certificate store unreachable")) > 0
	})
	if _, err := servedCert(r.https, "stash.example.test", p.Roots()); err == nil {
		t.Fatal("a certificate is served while Redis, where it would be kept, has never been reachable")
	}
	rds.Start()
	waitForCert(t, r.https, "stash.example.test", p.Roots())
	if n := p.ordersFor("stash.example.test"); n != 1 {
		t.Errorf("%d orders, want 1", n)
	}
}

// TestRedisPasswordFile: a password file that cannot be read stops the relay
// at start with an error that names the key.
func TestRedisPasswordFile(t *testing.T) {
	for name, body := range map[string]*string{"missing": nil, "empty": new(string)} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			pass := dir + "/redis.pass"
			if body != nil {
				if err := os.WriteFile(pass, []byte(*body+"\n"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			s, err := relay.New(relay.Config{
				Tunnel:   relay.TunnelConfig{Listen: "127.0.0.1:0"},
				Public:   relay.PublicConfig{HTTPS: "127.0.0.1:0"},
				StateDir: dir,
				TLS: relay.TLSConfig{
					ACME:    relay.ACMEConfig{CA: "https://127.0.0.1:9/dir"},
					Storage: relay.StorageConfig{Redis: relay.RedisStorageConfig{Address: "127.0.0.1:9", PasswordFile: pass, KeyPrefix: "burrow"}},
				},
			}, testLogger(t, "relay"))
			if err != nil {
				t.Fatal(err)
			}
			err = s.Listen()
			if err == nil || !strings.Contains(err.Error(), "tls.storage.redis.password_file") {
				t.Fatalf("Listen with a %s password file: %v, want an error naming tls.storage.redis.password_file", name, err)
			}
		})
	}
}
