// Package redistest runs a real redis-server (Debian's package) on a free
// loopback port for Burrow's tests: no persistence, killed when the test ends.
package redistest

import (
	"bufio"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/burrow-tunnel/burrow/internal/testutil"
)

// Server is one redis-server process. Stop and Start let a test take it
// away and bring it back on the same address, empty.
type Server struct {
	// Addr is host:port on 127.0.0.1.
	Addr string

	t    testing.TB
	bin  string
	dir  string
	log  *testutil.SyncBuffer
	args []string // more redis-server options
	cmd  *exec.Cmd
	done chan struct{}
}

// Start runs redis-server on a free loopback port until the test ends, with
// args as more options (e.g. "--requirepass", "secret"). It fails the test
// when redis-server is not installed: Burrow's CI installs it (apt-get
// install -y redis-server).
func Start(t testing.TB, args ...string) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server is needed by this test: apt-get install -y redis-server (%v)", err)
	}
	s := &Server{t: t, bin: bin, dir: t.TempDir(), log: &testutil.SyncBuffer{}, args: args}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.Addr = ln.Addr().String()
	ln.Close()
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			t.Logf("redis-server log:\n%s", s.log)
		}
	})
	s.Start()
	return s
}

// Start runs the server again after Stop, on the same address, and waits
// until it answers PING.
func (s *Server) Start() {
	s.t.Helper()
	if s.cmd != nil {
		s.t.Fatal("redistest: Start while the server runs")
	}
	_, port, _ := net.SplitHostPort(s.Addr)
	cmd := exec.Command(s.bin, append([]string{
		"--bind", "127.0.0.1", "--port", port,
		"--save", "", "--appendonly", "no", "--dir", s.dir,
		"--daemonize", "no", "--loglevel", "notice"}, s.args...)...)
	cmd.Stdout, cmd.Stderr = s.log, s.log
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("redis-server: %v", err)
	}
	s.cmd, s.done = cmd, make(chan struct{})
	go func(done chan struct{}) {
		_ = cmd.Wait()
		close(done)
	}(s.done)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := ping(s.Addr); err == nil {
			return
		} else if time.Now().After(deadline) {
			s.t.Fatalf("redis-server on %s does not answer PING: %v\n%s", s.Addr, err, s.log)
		}
		select {
		case <-s.done:
			s.t.Fatalf("redis-server on %s exited at start:\n%s", s.Addr, s.log)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Stop kills the server (SIGKILL, as a crash or an outage would) and waits
// for it to exit; its data is gone.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.done
	s.cmd = nil
}

// ping speaks just enough RESP to check that the server answers (a server
// with a password answers NOAUTH, which will do).
func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("*1\r\n$4\r\nPING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if l := strings.TrimSpace(line); l != "+PONG" && !strings.HasPrefix(l, "-NOAUTH") {
		return fmt.Errorf("PING answered %q", strconv.Quote(line))
	}
	return nil
}
