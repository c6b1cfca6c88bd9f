package relay

import "net"

// publicUnsent caps what the socket of one public connection holds that it
// has not sent yet (TCP_NOTSENT_LOWAT, Linux). The kernel would otherwise
// let a visitor that reads nothing park megabytes in the relay's socket
// (send buffers grow to net.ipv4.tcp_wmem's maximum), and the agent would
// push that much up the home link for it. What is in flight to the visitor
// is still bounded by its receive window, as for any TCP peer.
const publicUnsent = 64 << 10

// unsentCapped is a public listener whose connections hold at most
// publicUnsent bytes unsent.
type unsentCapped struct{ net.Listener }

func (l unsentCapped) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		capUnsent(tc, publicUnsent)
	}
	return c, err
}
