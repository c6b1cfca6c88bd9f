package protocol_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	"github.com/burrow-tunnel/burrow/protocol"
)

// The decoders read bytes from the other side of the tunnel. Each fuzz target
// checks that a decoder never panics and that whatever it accepts encodes back
// to something it decodes to the same value. The seed corpus is in
// testdata/fuzz/<target>; more seeds are added below.

func addControlSeeds(f *testing.F) {
	for _, m := range []struct {
		t protocol.MsgType
		v any
	}{
		{protocol.MsgHello, testHello},
		{protocol.MsgHello, protocol.Hello{}},
		{protocol.MsgWelcome, testWelcome},
		{protocol.MsgReject, testReject},
	} {
		var buf bytes.Buffer
		if err := protocol.WriteMessage(&buf, m.t, m.v); err != nil {
			f.Fatal(err)
		}
		f.Add(buf.Bytes())
	}
	f.Add(frame(protocol.MsgHello, []byte(`{"version":1,"features":[],"token":"\u00e9\ud800","routes":null}`)))
	f.Add(frame(protocol.MsgWelcome, []byte(`{"accepted":[{"id":4294967296}]}`)))
	f.Add(frame(protocol.MsgReject, []byte(`null`)))
	f.Add([]byte{1, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{})
}

// reencode is the JSON encoding of v, which must succeed for any decoded value.
func reencode(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("re-encoding %+v: %v", v, err)
	}
	return b
}

func FuzzReadFrame(f *testing.F) {
	addControlSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		mt, body, err := protocol.ReadFrame(r)
		if err != nil {
			return
		}
		if len(body) > protocol.MaxMessageSize {
			t.Fatalf("accepted a body of %d bytes", len(body))
		}
		// The frame is exactly the bytes read, and decodes again to the same.
		enc := frame(mt, body)
		if consumed := len(data) - r.Len(); !bytes.Equal(enc, data[:consumed]) {
			t.Fatalf("re-encoded frame %q differs from the %d bytes read", enc, consumed)
		}
		mt2, body2, err := protocol.ReadFrame(bytes.NewReader(enc))
		if err != nil || mt2 != mt || !bytes.Equal(body2, body) {
			t.Fatalf("second decode: %v %q %v, want %v %q", mt2, body2, err, mt, body)
		}
	})
}

func FuzzReadHello(f *testing.F) {
	addControlSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := protocol.ReadHello(bytes.NewReader(data))
		if err != nil {
			if h != nil {
				t.Fatalf("ReadHello returned %+v with error %v", h, err)
			}
			return
		}
		var buf bytes.Buffer
		if err := protocol.WriteMessage(&buf, protocol.MsgHello, h); err != nil {
			if errors.Is(err, protocol.ErrMessageTooLarge) {
				return // JSON escaping can grow a body near the limit
			}
			t.Fatalf("WriteMessage(%+v): %v", h, err)
		}
		h2, err := protocol.ReadHello(&buf)
		if err != nil {
			t.Fatalf("decoding the re-encoded Hello: %v", err)
		}
		// Compare encodings: equal up to nil versus empty for omitempty lists.
		if a, b := reencode(t, h), reencode(t, h2); !bytes.Equal(a, b) {
			t.Fatalf("Hello changed in a round trip:\n%s\n%s", a, b)
		}
	})
}

func FuzzReadAnswer(f *testing.F) {
	addControlSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		w, err := protocol.ReadAnswer(bytes.NewReader(data))
		if (w == nil) == (err == nil) {
			t.Fatalf("ReadAnswer = %+v, %v: want exactly one of them", w, err)
		}
		var buf bytes.Buffer
		if err != nil {
			rerr, ok := errors.AsType[*protocol.RejectError](err)
			if !ok {
				return
			}
			if err := protocol.WriteMessage(&buf, protocol.MsgReject, rerr.Reject); err != nil {
				if errors.Is(err, protocol.ErrMessageTooLarge) {
					return
				}
				t.Fatalf("WriteMessage(%+v): %v", rerr.Reject, err)
			}
			_, err2 := protocol.ReadAnswer(&buf)
			rerr2, ok := errors.AsType[*protocol.RejectError](err2)
			if !ok || rerr2.Reject != rerr.Reject {
				t.Fatalf("Reject changed in a round trip: %+v, then %v", rerr.Reject, err2)
			}
			return
		}
		if err := protocol.WriteMessage(&buf, protocol.MsgWelcome, w); err != nil {
			if errors.Is(err, protocol.ErrMessageTooLarge) {
				return
			}
			t.Fatalf("WriteMessage(%+v): %v", w, err)
		}
		w2, err := protocol.ReadAnswer(&buf)
		if err != nil {
			t.Fatalf("decoding the re-encoded Welcome: %v", err)
		}
		if a, b := reencode(t, w), reencode(t, w2); !bytes.Equal(a, b) {
			t.Fatalf("Welcome changed in a round trip:\n%s\n%s", a, b)
		}
	})
}

func FuzzReadStreamHeader(f *testing.F) {
	for _, h := range []protocol.StreamHeader{
		{Kind: protocol.KindHTTP, RouteID: 1, Client: "203.0.113.7:51234"},
		{Kind: protocol.KindTCP, RouteID: 1<<32 - 1, Client: "[2001:db8::1]:443"},
		{Kind: protocol.KindHTTP},
	} {
		b, err := h.AppendBinary(nil)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add(append(b, "GET / HTTP/1.1\r\n"...))
	}
	f.Add([]byte("BRW\x01\x01\x00\x00\x00\x01\xff"))
	f.Add([]byte("BRW\x02\x01\x00\x00\x00\x01\x00"))
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		h, err := protocol.ReadStreamHeader(r)
		if err != nil {
			if h != (protocol.StreamHeader{}) {
				t.Fatalf("ReadStreamHeader returned %+v with error %v", h, err)
			}
			return
		}
		if h.Kind != protocol.KindHTTP && h.Kind != protocol.KindTCP {
			t.Fatalf("accepted kind %d", h.Kind)
		}
		// The encoding is canonical: it is exactly the bytes read.
		b, err := h.AppendBinary(nil)
		if err != nil {
			t.Fatalf("AppendBinary(%+v): %v", h, err)
		}
		if consumed := len(data) - r.Len(); !bytes.Equal(b, data[:consumed]) {
			t.Fatalf("re-encoded header %q differs from the %d bytes read", b, consumed)
		}
		h2, err := protocol.ReadStreamHeader(bytes.NewReader(b))
		if err != nil || h2 != h {
			t.Fatalf("second decode: %+v, %v; want %+v", h2, err, h)
		}
	})
}

func FuzzReadStatus(f *testing.F) {
	f.Add([]byte{protocol.StatusOK})
	f.Add([]byte{protocol.StatusOK, 'H', 'T', 'T', 'P'})
	f.Add([]byte{protocol.StatusUnknownRoute, 0, 7, 'r', 'o', 'u', 't', 'e', ' ', '9'})
	f.Add([]byte{protocol.StatusServiceUnreachable, 0, 0})
	f.Add([]byte{protocol.StatusServiceUnreachable, 0x04, 0x01})
	f.Add([]byte{255, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		err := protocol.ReadStatus(r)
		var code uint8
		var msg string
		switch se, ok := errors.AsType[*protocol.StatusError](err); {
		case err == nil:
			code = protocol.StatusOK
		case ok:
			if se.Code == protocol.StatusOK || len(se.Message) > protocol.MaxStatusMessage {
				t.Fatalf("accepted %+v", se)
			}
			code, msg = se.Code, se.Message
		default:
			return
		}
		var buf bytes.Buffer
		if err := protocol.WriteStatus(&buf, code, msg); err != nil {
			t.Fatal(err)
		}
		if consumed := len(data) - r.Len(); !bytes.Equal(buf.Bytes(), data[:consumed]) {
			t.Fatalf("re-encoded status %q differs from the %d bytes read", buf.Bytes(), consumed)
		}
		err2 := protocol.ReadStatus(&buf)
		if !reflect.DeepEqual(err2, err) {
			t.Fatalf("second decode: %v, want %v", err2, err)
		}
	})
}

// FuzzDecodeRouteRequest and FuzzDecodeRouteUpdate read the route messages
// of a live session: whatever they accept re-encodes to the same value.
func FuzzDecodeRouteRequest(f *testing.F) {
	f.Add([]byte(`{"seq":1,"routes":[{"host":"a.example","prefix":"/x"}]}`))
	f.Add([]byte(`{"seq":0,"routes":[]}`))
	f.Add([]byte(`{"seq":18446744073709551615,"routes":null}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := protocol.DecodeRouteRequest(body)
		if err != nil {
			if req != nil {
				t.Fatalf("returned %+v with error %v", req, err)
			}
			return
		}
		if req.Seq == 0 {
			t.Fatal("accepted a request without a sequence number")
		}
		again, err := protocol.DecodeRouteRequest(reencode(t, req))
		if err != nil || !bytes.Equal(reencode(t, req), reencode(t, again)) {
			t.Fatalf("round trip of %+v: %+v, %v", req, again, err)
		}
	})
}

func FuzzDecodeRouteUpdate(f *testing.F) {
	seed, err := json.Marshal(&protocol.RouteUpdate{Seq: 2, Accepted: testWelcome.Accepted, Refused: testWelcome.Refused})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add([]byte(`{"accepted":[{"id":-1}]}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, body []byte) {
		u, err := protocol.DecodeRouteUpdate(body)
		if err != nil {
			if u != nil {
				t.Fatalf("returned %+v with error %v", u, err)
			}
			return
		}
		again, err := protocol.DecodeRouteUpdate(reencode(t, u))
		if err != nil || !bytes.Equal(reencode(t, u), reencode(t, again)) {
			t.Fatalf("round trip of %+v: %+v, %v", u, again, err)
		}
	})
}
