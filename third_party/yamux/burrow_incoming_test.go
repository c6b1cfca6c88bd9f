package yamux

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"time"
)

// With MaxIncomingStreams 1, a stream opened while another is open is reset
// as it arrives, and nothing of its data is buffered, even right after the
// first was accepted (AcceptBacklog alone leaves that slot free). Once the
// first is freed, the peer may open another.
func TestMaxIncomingStreams(t *testing.T) {
	clientConn, serverConn := testConnTCP(t)
	serverConf := testConfNoKeepAlive()
	serverConf.AcceptBacklog = 1
	serverConf.MaxIncomingStreams = 1
	client, server := testClientServerConfig(t, clientConn, serverConn, testConfNoKeepAlive(), serverConf)

	first, err := client.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := first.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	accepted, err := server.AcceptStream()
	if err != nil {
		t.Fatal(err)
	}

	extra, err := client.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	_ = extra.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := extra.Write(make([]byte, initialStreamWindow)); err != nil {
		t.Fatal(err) // the whole initial window goes out before the reset is back
	}
	if _, err := extra.Read(make([]byte, 1)); !errors.Is(err, ErrConnectionReset) {
		t.Fatalf("extra stream: read %v, want ErrConnectionReset", err)
	}
	if n := server.NumStreams(); n != 1 {
		t.Errorf("server holds %d streams, want 1", n)
	}

	// The first stream still works, and freeing it lets the peer open another.
	got := make([]byte, 5)
	if _, err := io.ReadFull(accepted, got); err != nil || !bytes.Equal(got, []byte("hello")) {
		t.Fatalf("first stream: read %q, %v", got, err)
	}
	accepted.Reset()
	_ = first.Reset()
	deadline := time.Now().Add(5 * time.Second)
	for server.NumStreams() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the reset stream is still counted")
		}
		time.Sleep(time.Millisecond)
	}
	next, err := client.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := next.Write([]byte("again")); err != nil {
		t.Fatal(err)
	}
	if _, err := server.AcceptStream(); err != nil {
		t.Fatalf("a stream opened after the first was freed: %v", err)
	}
}
