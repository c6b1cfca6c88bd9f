package memsession_test

import (
	"errors"
	"io"
	"testing"
	"testing/synctest"
	"time"

	"github.com/burrow-tunnel/burrow/internal/memsession"
	"github.com/burrow-tunnel/burrow/protocol"
)

// What one end opens the other accepts; each direction closes on its own;
// closing either session ends both and their streams.
func TestPair(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := memsession.Pair()
		sa, err := a.OpenStream(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		sb, err := b.AcceptStream(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			sa.Write([]byte("hello"))
			sa.CloseWrite()
		}()
		got, err := io.ReadAll(sb)
		if string(got) != "hello" || err != nil {
			t.Fatalf("read %q, %v", got, err)
		}
		if b.BytesReceived() != 5 || a.BytesReceived() != 0 {
			t.Errorf("received %d and %d, want 0 and 5", a.BytesReceived(), b.BytesReceived())
		}
		go sb.Write([]byte("back"))
		buf := make([]byte, 4)
		if _, err := io.ReadFull(sa, buf); err != nil || string(buf) != "back" {
			t.Fatalf("after CloseWrite, read %q, %v", buf, err)
		}

		sa.SetReadDeadline(time.Now().Add(time.Second))
		start := time.Now()
		if _, err := sa.Read(buf); err == nil || time.Since(start) != time.Second {
			t.Errorf("read past its deadline: %v after %v", err, time.Since(start))
		}

		b.Close()
		<-a.Done()
		if _, err := a.AcceptStream(t.Context()); !errors.Is(err, protocol.ErrSessionClosed) {
			t.Errorf("accept on a closed pair: %v", err)
		}
		if _, err := sb.Write([]byte("x")); err == nil {
			t.Error("write on a stream of a closed pair")
		}
	})
}
