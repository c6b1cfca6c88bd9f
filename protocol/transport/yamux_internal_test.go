package transport

import (
	"net"
	"reflect"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/burrow-tunnel/burrow/protocol"
	"github.com/hashicorp/yamux"
)

// A stream aborted while the peer's acknowledgement of it is on its way must
// not stay in yamux's table of unacknowledged streams. A reset makes yamux
// forget the stream, the acknowledgement is then ignored when it arrives,
// and the entry stays for the session's lifetime: one per request cancelled
// within a round trip of its start.
func TestAbortBeforeAckLeavesNoRecord(t *testing.T) {
	c1, c2 := net.Pipe()
	gate := make(chan struct{}) // holds back what the acceptor sends
	opener, err := newYamuxSession(c1, true)
	if err != nil {
		t.Fatal(err)
	}
	defer opener.Close()
	acceptor, err := newYamuxSession(&gatedConn{Conn: c2, open: gate}, false)
	if err != nil {
		t.Fatal(err)
	}
	defer acceptor.Close()

	st, err := opener.OpenStream(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Write([]byte{'h'}); err != nil {
		t.Fatal(err)
	}
	// Accepting queues the acknowledgement, then waits for it to be sent.
	accepted := make(chan protocol.Stream, 1)
	go func() {
		peer, err := acceptor.AcceptStream(t.Context())
		if err != nil {
			t.Error(err)
		}
		accepted <- peer
	}()
	time.Sleep(100 * time.Millisecond)
	st.Abort()
	close(gate) // the acknowledgement arrives after the abort
	if peer := <-accepted; peer != nil {
		defer peer.Close()
	}

	ys := opener.(*yamuxSession).s
	deadline := time.Now().Add(2 * time.Second)
	for unacked(ys) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d stream(s) still recorded as unacknowledged 2 s after the acknowledgement arrived", unacked(ys))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// gatedConn holds every write until open is closed.
type gatedConn struct {
	net.Conn
	open chan struct{}
}

func (g *gatedConn) Write(p []byte) (int, error) {
	<-g.open
	return g.Conn.Write(p)
}

// unacked is the size of yamux's table of streams opened and not yet
// acknowledged (protocol.Session.inflight), read under the session's own lock.
func unacked(s *yamux.Session) int {
	v := reflect.ValueOf(s).Elem()
	mu := (*sync.Mutex)(unsafe.Pointer(v.FieldByName("streamLock").UnsafeAddr()))
	mu.Lock()
	defer mu.Unlock()
	return v.FieldByName("inflight").Len()
}
