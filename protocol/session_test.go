package protocol_test

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"testing/synctest"
	"time"

	"github.com/burrow-tunnel/burrow/protocol"
)

// readErr reads one byte from c in a goroutine.
func readErr(c net.Conn) <-chan error {
	ch := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 1))
		ch <- err
	}()
	return ch
}

func TestGuardHandshake(t *testing.T) {
	t.Run("deadline", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			a, b := net.Pipe()
			defer b.Close()
			defer protocol.GuardHandshake(t.Context(), pipeStream{a})()
			start := time.Now()
			if err := <-readErr(a); !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("read ended with %v, want the handshake deadline", err)
			}
			if took := time.Since(start); took != protocol.HandshakeTimeout {
				t.Errorf("the handshake was cut after %v, want %v", took, protocol.HandshakeTimeout)
			}
		})
	})
	t.Run("stopping", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			a, b := net.Pipe()
			defer b.Close()
			ctx, cancel := context.WithCancel(t.Context())
			defer protocol.GuardHandshake(ctx, pipeStream{a})()
			errc := readErr(a)
			time.Sleep(time.Second)
			cancel()
			synctest.Wait()
			select {
			case err := <-errc:
				if !errors.Is(err, io.ErrClosedPipe) {
					t.Errorf("read ended with %v, want the stream closed", err)
				}
			default:
				t.Fatal("stopping did not end the handshake at once")
			}
		})
	})
	t.Run("done", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			a, b := net.Pipe()
			defer a.Close()
			defer b.Close()
			ctx, cancel := context.WithCancel(t.Context())
			protocol.GuardHandshake(ctx, pipeStream{a})()
			cancel() // after the handshake, stopping is the session's business
			errc := readErr(a)
			time.Sleep(10 * protocol.HandshakeTimeout)
			synctest.Wait()
			select {
			case err := <-errc:
				t.Fatalf("a session's control stream ended after the handshake: %v", err)
			default:
			}
			b.Write([]byte{1})
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
		})
	})
}
