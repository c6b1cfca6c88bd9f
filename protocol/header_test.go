package protocol_test

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/burrow-tunnel/burrow/protocol"
)

func TestStreamHeaderRoundTrip(t *testing.T) {
	for _, h := range []protocol.StreamHeader{
		{Kind: protocol.KindHTTP, RouteID: 1, Client: "203.0.113.7:51234"},
		{Kind: protocol.KindTCP, RouteID: 1<<32 - 1, Client: "[2001:db8::1]:443"},
		{Kind: protocol.KindHTTP, RouteID: 0},
		{Kind: protocol.KindTCP, RouteID: 7, Client: strings.Repeat("a", protocol.MaxAddrLen)},
	} {
		b, err := h.AppendBinary([]byte("prefix"))
		if err != nil {
			t.Fatalf("AppendBinary(%+v): %v", h, err)
		}
		if !bytes.HasPrefix(b, []byte("prefix")) {
			t.Fatalf("AppendBinary dropped what it appended to: %q", b)
		}
		// The raw bytes of the stream follow the header, and must stay unread.
		r := bytes.NewReader(append(b[len("prefix"):], "GET / HTTP/1.1\r\n"...))
		got, err := protocol.ReadStreamHeader(r)
		if err != nil {
			t.Fatalf("ReadStreamHeader(%+v): %v", h, err)
		}
		if got != h {
			t.Errorf("round trip: got %+v, want %+v", got, h)
		}
		if rest, _ := io.ReadAll(r); string(rest) != "GET / HTTP/1.1\r\n" {
			t.Errorf("after the header of %+v: %q", h, rest)
		}
	}
}

// TestStreamHeaderWire pins the encoding: magic, version, kind, route id (big endian), address length, address.
func TestStreamHeaderWire(t *testing.T) {
	b, err := protocol.StreamHeader{Kind: protocol.KindTCP, RouteID: 0x01020304, Client: "1.2.3.4:5"}.AppendBinary(nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []byte("BRW\x01\x02\x01\x02\x03\x04\x091.2.3.4:5")
	if !bytes.Equal(b, want) {
		t.Errorf("encoded %q, want %q", b, want)
	}
}

func TestStreamHeaderErrors(t *testing.T) {
	good, err := protocol.StreamHeader{Kind: protocol.KindHTTP, RouteID: 3, Client: "198.51.100.1:1"}.AppendBinary(nil)
	if err != nil {
		t.Fatal(err)
	}
	with := func(i int, v byte) []byte {
		b := bytes.Clone(good)
		b[i] = v
		return b
	}
	tests := []struct {
		name string
		in   []byte
		want error // nil: any error
	}{
		{"empty", nil, io.EOF},
		{"short", good[:6], io.ErrUnexpectedEOF},
		{"short address", good[:len(good)-1], io.ErrUnexpectedEOF},
		{"HTTP instead", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), protocol.ErrBadMagic},
		{"bad magic", with(2, 'X'), protocol.ErrBadMagic},
		{"version 2", with(3, 2), protocol.ErrUnsupportedVersion},
		{"version 0", with(3, 0), protocol.ErrUnsupportedVersion},
		{"kind 0", with(4, 0), nil},
		{"kind 3", with(4, 3), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := protocol.ReadStreamHeader(bytes.NewReader(tt.in))
			if err == nil {
				t.Fatalf("ReadStreamHeader = %+v, want an error", h)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("ReadStreamHeader: %v, want %v", err, tt.want)
			}
			if h != (protocol.StreamHeader{}) {
				t.Errorf("ReadStreamHeader returned %+v with its error", h)
			}
		})
	}
}

func TestStreamHeaderAddressTooLong(t *testing.T) {
	h := protocol.StreamHeader{Kind: protocol.KindHTTP, RouteID: 1, Client: strings.Repeat("a", protocol.MaxAddrLen+1)}
	b, err := h.AppendBinary([]byte("prefix"))
	if err == nil {
		t.Fatal("AppendBinary with a 256-byte address succeeded")
	}
	if string(b) != "prefix" {
		t.Errorf("AppendBinary changed its buffer on error: %q", b)
	}
}

func TestStatusRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	if err := protocol.WriteStatus(&buf, protocol.StatusOK, "ignored"); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), []byte{0}) {
		t.Errorf("StatusOK encoded as %q, want one zero byte", buf.Bytes())
	}
	if err := protocol.ReadStatus(&buf); err != nil {
		t.Errorf("ReadStatus(OK): %v", err)
	}

	long := strings.Repeat("m", protocol.MaxStatusMessage+100)
	for _, tt := range []struct {
		code      uint8
		msg, want string
	}{
		{protocol.StatusUnknownRoute, "route 9", "route 9"},
		{protocol.StatusServiceUnreachable, "dial tcp 127.0.0.1:9999: connection refused", "dial tcp 127.0.0.1:9999: connection refused"},
		{protocol.StatusServiceUnreachable, "", ""},
		{protocol.StatusRefused, "Stash has no login", "Stash has no login"},
		{200, long, long[:protocol.MaxStatusMessage]}, // truncated by the writer
	} {
		buf.Reset()
		if err := protocol.WriteStatus(&buf, tt.code, tt.msg); err != nil {
			t.Fatal(err)
		}
		buf.WriteString("service bytes")
		err := protocol.ReadStatus(&buf)
		se, ok := errors.AsType[*protocol.StatusError](err)
		if !ok {
			t.Fatalf("ReadStatus(%d): %v, want a *StatusError", tt.code, err)
		}
		if se.Code != tt.code || se.Message != tt.want {
			t.Errorf("ReadStatus: code %d message %q, want %d %q", se.Code, se.Message, tt.code, tt.want)
		}
		if se.Error() == "" || !strings.Contains(se.Error(), tt.want) {
			t.Errorf("StatusError.Error() = %q", se.Error())
		}
		if buf.String() != "service bytes" {
			t.Errorf("after the status: %q", buf.String())
		}
	}
}

func TestReadStatusErrors(t *testing.T) {
	for _, tt := range []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, io.EOF},
		{"short length", []byte{1, 0}, io.ErrUnexpectedEOF},
		{"short message", []byte{1, 0, 5, 'a'}, io.ErrUnexpectedEOF},
		// 1025 > MaxStatusMessage: refused on the length, whatever follows.
		{"message too long", append([]byte{1, 0x04, 0x01}, make([]byte, 1025)...), nil},
		{"message far too long", []byte{1, 0xff, 0xff}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := protocol.ReadStatus(bytes.NewReader(tt.in))
			if err == nil {
				t.Fatal("no error")
			}
			if _, ok := errors.AsType[*protocol.StatusError](err); ok {
				t.Errorf("ReadStatus: %v; a broken status is not a StatusError", err)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("ReadStatus: %v, want %v", err, tt.want)
			}
		})
	}
}
