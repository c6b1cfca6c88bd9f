package wanemu

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

// helperEnv makes the test binary act as a traffic endpoint instead of
// running tests, so a test can start it inside a namespace with Command.
const helperEnv = "WANEMU_TEST_HELPER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		if err := runHelper(mode, os.Getenv("WANEMU_TEST_ADDR"), os.Getenv("WANEMU_TEST_DURATION")); err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	// The timing tests measure the link, not the machine's other load: CI
	// runs other packages' tests alongside.
	if os.Geteuid() == 0 {
		if err := SetProcessNice(-10); err != nil {
			fmt.Fprintln(os.Stderr, "wanemu: raising priority:", err)
		}
	}
	goleak.VerifyTestMain(m)
}

// runHelper is a TCP sink ("sink": accept one connection, read it to EOF,
// print "bytes seconds") or a TCP source ("source": dial, write for the
// duration). Both have a hard time limit so a broken test cannot leave them
// running.
func runHelper(mode, addr, dur string) error {
	d, err := time.ParseDuration(dur)
	if err != nil {
		return err
	}
	time.AfterFunc(d+15*time.Second, func() { os.Exit(2) })
	switch mode {
	case "sink":
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return err
		}
		fmt.Println("ready")
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		start := time.Now()
		n, err := io.Copy(io.Discard, c)
		fmt.Println(n, time.Since(start).Seconds())
		return err
	case "source":
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return err
		}
		buf := make([]byte, 256<<10)
		for end := time.Now().Add(d); time.Now().Before(end); {
			if _, err := c.Write(buf); err != nil {
				return err
			}
		}
		return c.Close()
	}
	return fmt.Errorf("unknown mode %q", mode)
}

// requireLinkSupport skips when the machine cannot host a link at all.
func requireLinkSupport(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("wanemu: needs root to create network namespaces and TUN devices")
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skipf("wanemu: needs /dev/net/tun: %v", err)
	}
}

var (
	addrA = netip.MustParsePrefix("10.233.0.1/24")
	addrB = netip.MustParsePrefix("10.233.0.2/24")
)

var linkSeq atomic.Int32

// newTestLink starts a link with namespaces unique to this process and test,
// removed when the test ends.
func newTestLink(t *testing.T, p Profile, seed uint64) *Link {
	t.Helper()
	requireLinkSupport(t)
	id := fmt.Sprintf("bw-%d-%d", os.Getpid(), linkSeq.Add(1))
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	l, err := New(ctx, Config{
		A:       Side{Namespace: id + "-relay", Addr: addrA},
		B:       Side{Namespace: id + "-agent", Addr: addrB},
		Profile: p,
		Seed:    seed,
		Logger:  slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		for _, ns := range []string{l.cfg.A.Namespace, l.cfg.B.Namespace} {
			if _, err := os.Stat(netnsDir + "/" + ns); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("namespace %s left behind: %v", ns, err)
			}
		}
	})
	return l
}

// listenUDP opens a UDP socket on addr inside ns.
func listenUDP(t *testing.T, ns string, addr netip.AddrPort) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	err := InNamespace(ns, func() (err error) {
		c, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr))
		return err
	})
	if err != nil {
		t.Fatalf("listen udp in %s: %v", ns, err)
	}
	t.Cleanup(func() { c.Close() })
	// A receive buffer past net.core.rmem_max (root may), so a reader
	// starved of CPU on a busy machine does not drop what the link carried.
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	rc.Control(func(fd uintptr) {
		err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20)
	})
	if err != nil {
		t.Fatalf("SO_RCVBUFFORCE: %v", err)
	}
	return c
}

// udpEcho answers every datagram on c until c is closed; the returned
// function closes c and waits for the echo to stop.
func udpEcho(c *net.UDPConn) (stop func()) {
	var wg sync.WaitGroup
	wg.Go(func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			c.WriteToUDPAddrPort(buf[:n], from)
		}
	})
	return func() { c.Close(); wg.Wait() }
}

// startHelper runs the test binary as a traffic endpoint inside ns.
func startHelper(t *testing.T, ctx context.Context, ns, mode, addr string, d time.Duration) (*os.Process, *bufio.Reader, func() error) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := Command(ctx, ns, exe)
	cmd.Env = append(os.Environ(), helperEnv+"="+mode, "WANEMU_TEST_ADDR="+addr, "WANEMU_TEST_DURATION="+d.String())
	cmd.Stderr = t.Output()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s helper: %v", mode, err)
	}
	return cmd.Process, bufio.NewReader(out), cmd.Wait
}

// parseSink reads the sink's "bytes seconds" line.
func parseSink(r *bufio.Reader) (bytes int64, secs float64, err error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return 0, 0, fmt.Errorf("sink result: %w", err)
	}
	f := strings.Fields(line)
	if len(f) != 2 {
		return 0, 0, fmt.Errorf("sink result %q", line)
	}
	if bytes, err = strconv.ParseInt(f[0], 10, 64); err != nil {
		return 0, 0, err
	}
	secs, err = strconv.ParseFloat(f[1], 64)
	return bytes, secs, err
}
