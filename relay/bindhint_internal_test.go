package relay

import (
	"errors"
	"net"
	"os"
	"syscall"
	"testing"
)

func TestBindHint(t *testing.T) {
	denied := &net.OpError{Op: "listen", Net: "tcp", Err: os.NewSyscallError("bind", syscall.EACCES)}
	want := " (ports below 1024 need root or the CAP_NET_BIND_SERVICE capability: in a systemd unit, " +
		"AmbientCapabilities=CAP_NET_BIND_SERVICE; by hand, sudo setcap cap_net_bind_service=+ep $(command -v burrow); " +
		"or use a port above 1023 for :443)"
	if got := bindHint(":443", denied); got != want {
		t.Errorf("hint %q", got)
	}
	for _, c := range []struct {
		addr string
		err  error
	}{{":8443", denied}, {":443", errors.New("address already in use")}, {":0", denied}} {
		if got := bindHint(c.addr, c.err); got != "" {
			t.Errorf("bindHint(%q, %v) = %q, want none", c.addr, c.err, got)
		}
	}
}
