package protocol

import (
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
)

// Tunnel sockets ask for BBR; where the kernel has it (and root may load it)
// they get it, elsewhere they keep a working default.
func TestTunedTCPAsksForBBR(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Start from Cubic, as on a system whose default it is.
	rc, _ := c.(*net.TCPConn).SyscallConn()
	rc.Control(func(fd uintptr) {
		syscall.SetsockoptString(int(fd), syscall.IPPROTO_TCP, syscall.TCP_CONGESTION, "cubic")
	})
	got := tunedTCP(c)
	avail, _ := os.ReadFile("/proc/sys/net/ipv4/tcp_available_congestion_control")
	t.Logf("congestion control: %q (available: %s)", got, strings.TrimSpace(string(avail)))
	if strings.Contains(string(avail), "bbr") && os.Geteuid() == 0 && got != "bbr" {
		t.Errorf("bbr is available but the socket uses %q", got)
	}
	if got == "" {
		t.Error("could not read the socket's congestion control")
	}
}
