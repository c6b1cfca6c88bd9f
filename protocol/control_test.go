package protocol_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/burrow-tunnel/burrow/protocol"
)

var (
	testHello = &protocol.Hello{
		Version:  protocol.Version,
		Features: []string{"f1", "f2"},
		Token:    "s3cr3t-token",
		Agent:    "nas",
		Routes:   []protocol.Route{{Host: "stash.example.com"}, {Host: "example.com", Prefix: "/stash"}},
	}
	testWelcome = &protocol.Welcome{
		Version:   protocol.Version,
		Features:  []string{"f1"},
		SessionID: "0123456789abcdef",
		Agent:     "nas",
		Accepted: []protocol.AcceptedRoute{
			{ID: 1, Host: "stash.example.com", PublicURLs: []string{"https://stash.example.com", "http://stash.example.com"}},
			{ID: 1<<32 - 1, Host: "example.com", Prefix: "/stash", PublicURLs: []string{"https://example.com/stash"}},
		},
		Refused:         []protocol.RefusedRoute{{Host: "other.example.com", Reason: "not allowed for this agent"}},
		HeartbeatMillis: 10000,
	}
	testReject = protocol.Reject{Code: protocol.RejectVersion, Message: "this relay speaks version 1", Version: protocol.Version}
)

// frame builds a control frame by hand: type, big-endian length, body.
func frame(t protocol.MsgType, body []byte) []byte {
	b := []byte{byte(t)}
	b = binary.BigEndian.AppendUint32(b, uint32(len(body)))
	return append(b, body...)
}

func writeMessage(t *testing.T, w io.Writer, mt protocol.MsgType, v any) {
	t.Helper()
	if err := protocol.WriteMessage(w, mt, v); err != nil {
		t.Fatalf("WriteMessage(%s): %v", mt, err)
	}
}

func TestControlRoundTrip(t *testing.T) {
	// Several messages back to back on one stream: each read takes exactly its own frame.
	var buf bytes.Buffer
	writeMessage(t, &buf, protocol.MsgHello, testHello)
	writeMessage(t, &buf, protocol.MsgWelcome, testWelcome)
	writeMessage(t, &buf, protocol.MsgReject, testReject)
	buf.WriteString("trailing bytes")

	h, err := protocol.ReadHello(&buf)
	if err != nil {
		t.Fatalf("ReadHello: %v", err)
	}
	if !reflect.DeepEqual(h, testHello) {
		t.Errorf("Hello round trip:\n got %+v\nwant %+v", h, testHello)
	}

	w, err := protocol.ReadAnswer(&buf)
	if err != nil {
		t.Fatalf("ReadAnswer(welcome): %v", err)
	}
	if !reflect.DeepEqual(w, testWelcome) {
		t.Errorf("Welcome round trip:\n got %+v\nwant %+v", w, testWelcome)
	}

	w, err = protocol.ReadAnswer(&buf)
	if w != nil {
		t.Errorf("ReadAnswer(reject) returned a Welcome: %+v", w)
	}
	rerr, ok := errors.AsType[*protocol.RejectError](err)
	if !ok {
		t.Fatalf("ReadAnswer(reject): %v, want a *RejectError", err)
	}
	if rerr.Reject != testReject {
		t.Errorf("Reject round trip: got %+v, want %+v", rerr.Reject, testReject)
	}
	if msg := rerr.Error(); !strings.Contains(msg, testReject.Code) || !strings.Contains(msg, testReject.Message) {
		t.Errorf("RejectError.Error() = %q, want code and message", msg)
	}

	if rest := buf.String(); rest != "trailing bytes" {
		t.Errorf("bytes left after the frames: %q", rest)
	}
}

func TestWriteMessageFrame(t *testing.T) {
	var buf bytes.Buffer
	writeMessage(t, &buf, protocol.MsgReject, protocol.Reject{Code: "c", Message: "m"})
	want := frame(protocol.MsgReject, []byte(`{"code":"c","message":"m","version":0}`))
	if !bytes.Equal(buf.Bytes(), want) {
		t.Errorf("WriteMessage wrote %q, want %q", buf.Bytes(), want)
	}

	tp, body, err := protocol.ReadFrame(bytes.NewReader(frame(9, []byte("raw, not JSON"))))
	if err != nil || tp != 9 || string(body) != "raw, not JSON" {
		t.Errorf("ReadFrame = %v, %q, %v", tp, body, err)
	}
}

func TestReadFrameSizeLimit(t *testing.T) {
	// Exactly MaxMessageSize is allowed.
	max := frame(protocol.MsgHello, bytes.Repeat([]byte{'x'}, protocol.MaxMessageSize))
	if _, body, err := protocol.ReadFrame(bytes.NewReader(max)); err != nil || len(body) != protocol.MaxMessageSize {
		t.Errorf("ReadFrame of MaxMessageSize: %d bytes, %v", len(body), err)
	}

	for _, n := range []uint32{protocol.MaxMessageSize + 1, 1 << 31, 1<<32 - 1} {
		hdr := []byte{byte(protocol.MsgHello)}
		hdr = binary.BigEndian.AppendUint32(hdr, n)
		// The body is never there: the length alone must be refused, before any
		// read or allocation of the body.
		r := &countingReader{r: bytes.NewReader(hdr)}
		_, _, err := protocol.ReadFrame(r)
		if !errors.Is(err, protocol.ErrMessageTooLarge) {
			t.Errorf("length %d: %v, want ErrMessageTooLarge", n, err)
		}
		if r.n != len(hdr) {
			t.Errorf("length %d: read %d bytes, want only the %d-byte header", n, r.n, len(hdr))
		}
	}

	// No allocation anywhere near the announced size.
	hdr := binary.BigEndian.AppendUint32([]byte{byte(protocol.MsgHello)}, 1<<32-1)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 100 {
		protocol.ReadFrame(bytes.NewReader(hdr))
	}
	runtime.ReadMemStats(&after)
	if perCall := (after.TotalAlloc - before.TotalAlloc) / 100; perCall > 4<<10 {
		t.Errorf("ReadFrame allocated %d bytes per oversize frame", perCall)
	}

	// The writer refuses too, and writes nothing.
	var buf bytes.Buffer
	big := &protocol.Hello{Token: strings.Repeat("x", protocol.MaxMessageSize)}
	if err := protocol.WriteMessage(&buf, protocol.MsgHello, big); !errors.Is(err, protocol.ErrMessageTooLarge) {
		t.Errorf("WriteMessage of an oversize Hello: %v, want ErrMessageTooLarge", err)
	}
	if buf.Len() != 0 {
		t.Errorf("WriteMessage wrote %d bytes of an oversize message", buf.Len())
	}
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

func TestReadWrongMessage(t *testing.T) {
	welcome := frame(protocol.MsgWelcome, []byte(`{}`))
	hello := frame(protocol.MsgHello, []byte(`{}`))
	unknown := frame(42, []byte(`{}`))

	for name, b := range map[string][]byte{"welcome": welcome, "reject": frame(protocol.MsgReject, []byte(`{}`)), "unknown": unknown} {
		if _, err := protocol.ReadHello(bytes.NewReader(b)); !errors.Is(err, protocol.ErrUnexpectedMessage) {
			t.Errorf("ReadHello(%s): %v, want ErrUnexpectedMessage", name, err)
		}
	}
	for name, b := range map[string][]byte{"hello": hello, "unknown": unknown} {
		if _, err := protocol.ReadAnswer(bytes.NewReader(b)); !errors.Is(err, protocol.ErrUnexpectedMessage) {
			t.Errorf("ReadAnswer(%s): %v, want ErrUnexpectedMessage", name, err)
		}
	}
}

func TestReadControlMalformed(t *testing.T) {
	valid := frame(protocol.MsgHello, []byte(`{"version":1,"token":"t","routes":[]}`))
	tests := []struct {
		name string
		in   []byte
		want error // nil: any error but the sentinels below
	}{
		{"empty", nil, io.EOF},
		{"short header", valid[:3], io.ErrUnexpectedEOF},
		{"short body", valid[:len(valid)-1], io.ErrUnexpectedEOF},
		{"bad JSON", frame(protocol.MsgHello, []byte(`{"version":`)), nil},
		{"wrong JSON type", frame(protocol.MsgHello, []byte(`{"version":"one"}`)), nil},
		{"not an object", frame(protocol.MsgHello, []byte(`[1,2]`)), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := protocol.ReadHello(bytes.NewReader(tt.in))
			if err == nil || h != nil {
				t.Fatalf("ReadHello = %+v, %v; want an error", h, err)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("ReadHello: %v, want %v", err, tt.want)
			}
			for _, sentinel := range []error{protocol.ErrMessageTooLarge, protocol.ErrUnexpectedMessage} {
				if errors.Is(err, sentinel) {
					t.Errorf("ReadHello: %v, must not be %v", err, sentinel)
				}
			}
			if _, err := protocol.ReadAnswer(bytes.NewReader(tt.in)); err == nil {
				t.Error("ReadAnswer: no error")
			}
		})
	}
}

func TestMsgTypeString(t *testing.T) {
	for mt, want := range map[protocol.MsgType]string{protocol.MsgHello: "hello", protocol.MsgWelcome: "welcome", protocol.MsgReject: "reject", 200: "type(200)"} {
		if got := mt.String(); got != want {
			t.Errorf("MsgType(%d).String() = %q, want %q", uint8(mt), got, want)
		}
	}
}
