package relay_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// testWebsocketHTTP3 opens a websocket as a browser does over HTTP/3 when the
// server offers extended CONNECT (RFC 9220), and checks the echo through the relay.
func testWebsocketHTTP3(t *testing.T, roots *x509.CertPool, addr, host, port string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	qc, err := quic.DialAddr(ctx, addr, &tls.Config{ServerName: host, RootCAs: roots, NextProtos: []string{http3.NextProtoH3}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer qc.CloseWithError(0, "")
	cc := (&http3.Transport{}).NewClientConn(qc)
	select {
	case <-cc.ReceivedSettings():
	case <-ctx.Done():
		t.Fatal("no SETTINGS")
	}
	if !cc.Settings().EnableExtendedConnect {
		t.Fatal("the HTTP/3 server no longer offers extended CONNECT: browsers will use HTTP/1.1 for websockets, and this test can go")
	}
	rs, err := cc.OpenRequestStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodConnect, "https://"+host+":"+port+"/graphql", nil)
	req.Proto = "websocket"
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Protocol", "graphql-transport-ws")
	if err := rs.SendRequestHeader(req); err != nil {
		t.Fatal(err)
	}
	resp, err := rs.ReadResponse()
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Sec-WebSocket-Protocol") != "graphql-transport-ws" {
		t.Fatalf("extended CONNECT: %d %v", resp.StatusCode, resp.Header)
	}
	br := bufio.NewReader(rs)
	for i := range 3 {
		msg := fmt.Sprintf(`{"id":"%d","type":"subscribe"}`, i)
		if _, err := rs.Write(maskedFrame(0x1, []byte(msg))); err != nil {
			t.Fatal(err)
		}
		op, payload, err := readFrame(br)
		if err != nil || op != 0x1 || string(payload) != msg {
			t.Fatalf("echo: op %d %q %v", op, payload, err)
		}
	}
	rs.Write(maskedFrame(0x8, []byte{0x03, 0xe8})) // close, 1000
	if op, _, err := readFrame(br); err != nil || op != 0x8 {
		t.Errorf("close: op %d %v", op, err)
	}
	rs.Close()
}

// maskedFrame is one client websocket frame (FIN set, masked, payload < 64 KiB).
func maskedFrame(op byte, payload []byte) []byte {
	b := []byte{0x80 | op}
	if len(payload) < 126 {
		b = append(b, 0x80|byte(len(payload)))
	} else {
		b = append(b, 0x80|126, byte(len(payload)>>8), byte(len(payload)))
	}
	var mask [4]byte
	rand.Read(mask[:])
	b = append(b, mask[:]...)
	for i, c := range payload {
		b = append(b, c^mask[i%4])
	}
	return b
}

// readFrame reads one unmasked server frame.
func readFrame(r *bufio.Reader) (byte, []byte, error) {
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var l [2]byte
		if _, err := io.ReadFull(r, l[:]); err != nil {
			return 0, nil, err
		}
		n = uint64(binary.BigEndian.Uint16(l[:]))
	case 127:
		var l [8]byte
		if _, err := io.ReadFull(r, l[:]); err != nil {
			return 0, nil, err
		}
		n = binary.BigEndian.Uint64(l[:])
	}
	if h[1]&0x80 != 0 || n > 1<<20 {
		return 0, nil, errors.New("bad server frame: masked or too large (" + strconv.FormatUint(n, 10) + ")")
	}
	payload := make([]byte, n)
	_, err := io.ReadFull(r, payload)
	return h[0] & 0x0f, payload, err
}

// TestWebsocketHTTP2ExtendedConnect: with GODEBUG=http2xconnect=1 Go's HTTP/2
// server offers RFC 8441, and browsers then send websockets as HTTP/2
// extended CONNECT; the relay bridges them too.
func TestWebsocketHTTP2ExtendedConnect(t *testing.T) {
	if !rerunWithGODEBUG(t, "http2xconnect=1") {
		return
	}
	h, roots := startStaticRelay(t, t.TempDir())
	httpsAddr := h.relay.HTTPSAddr().String()
	port := portString(h.relay.HTTPSAddr())
	// net/http's client refuses the :protocol pseudo-header, so speak HTTP/2 frames.
	c, err := tls.Dial("tcp", httpsAddr, &tls.Config{ServerName: "stash.example.test", RootCAs: roots, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, http2.ClientPreface)
	fr := http2.NewFramer(c, c)
	fr.WriteSettings()
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range [][2]string{
		{":method", "CONNECT"}, {":protocol", "websocket"}, {":scheme", "https"}, {":path", "/graphql"},
		{":authority", "stash.example.test:" + port}, {"sec-websocket-version", "13"}, {"sec-websocket-protocol", "graphql-transport-ws"},
	} {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	sr := &h2Stream{t: t, fr: fr, dec: hpack.NewDecoder(4096, nil)}
	sr.waitSettings()
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	if hdr := sr.headers(); hdr[":status"] != "200" || hdr["sec-websocket-protocol"] != "graphql-transport-ws" {
		t.Fatalf("extended CONNECT answered %v", hdr)
	}
	pw := writerFunc(func(b []byte) (int, error) { return len(b), fr.WriteData(1, false, b) })
	br := bufio.NewReader(sr)
	for i := range 3 {
		msg := fmt.Sprintf(`{"id":"%d","type":"subscribe"}`, i)
		if _, err := pw.Write(maskedFrame(0x1, []byte(msg))); err != nil {
			t.Fatal(err)
		}
		op, payload, err := readFrame(br)
		if err != nil || op != 0x1 || string(payload) != msg {
			t.Fatalf("echo: op %d %q %v", op, payload, err)
		}
	}
	pw.Write(maskedFrame(0x8, []byte{0x03, 0xe8}))
	if op, _, err := readFrame(br); err != nil || op != 0x8 {
		t.Errorf("close: op %d %v", op, err)
	}
}

// rerunWithGODEBUG runs the calling test again in a child process with
// GODEBUG set, which the runtime reads only at start. It reports whether this
// is the child, which goes on with the test.
func rerunWithGODEBUG(t *testing.T, godebug string) (child bool) {
	t.Helper()
	const marker = "BURROW_TEST_CHILD"
	if os.Getenv(marker) == t.Name() {
		return true
	}
	cmd := exec.Command(os.Args[0], "-test.run=^"+t.Name()+"$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), "GODEBUG="+godebug, marker+"="+t.Name())
	out, err := cmd.CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("--- PASS: "+t.Name())) {
		t.Fatalf("child test with GODEBUG=%s: %v\n%s", godebug, err, out)
	}
	return false
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

// h2Stream reads the frames of stream 1 of a raw HTTP/2 connection.
type h2Stream struct {
	t    *testing.T
	fr   *http2.Framer
	dec  *hpack.Decoder
	data []byte
}

// waitSettings reads the server's SETTINGS, checks it offers extended CONNECT, and acknowledges it.
func (s *h2Stream) waitSettings() {
	for {
		f, err := s.fr.ReadFrame()
		if err != nil {
			s.t.Fatal(err)
		}
		if sf, ok := f.(*http2.SettingsFrame); ok && !sf.IsAck() {
			if v, ok := sf.Value(http2.SettingEnableConnectProtocol); !ok || v != 1 {
				s.t.Fatal("server does not offer extended CONNECT with GODEBUG=http2xconnect=1")
			}
			s.fr.WriteSettingsAck()
			return
		}
	}
}

func (s *h2Stream) headers() map[string]string {
	for {
		f, err := s.fr.ReadFrame()
		if err != nil {
			s.t.Fatal(err)
		}
		if hf, ok := f.(*http2.HeadersFrame); ok && hf.StreamID == 1 {
			fields, err := s.dec.DecodeFull(hf.HeaderBlockFragment())
			if err != nil {
				s.t.Fatal(err)
			}
			m := map[string]string{}
			for _, f := range fields {
				m[f.Name] = f.Value
			}
			return m
		}
	}
}

func (s *h2Stream) Read(p []byte) (int, error) {
	for len(s.data) == 0 {
		f, err := s.fr.ReadFrame()
		if err != nil {
			return 0, err
		}
		switch f := f.(type) {
		case *http2.DataFrame:
			if f.StreamID == 1 {
				s.data = append(s.data, f.Data()...)
				if len(f.Data()) > 0 {
					s.fr.WriteWindowUpdate(0, uint32(len(f.Data())))
					s.fr.WriteWindowUpdate(1, uint32(len(f.Data())))
				}
				if f.StreamEnded() && len(s.data) == 0 {
					return 0, io.EOF
				}
			}
		case *http2.RSTStreamFrame:
			return 0, fmt.Errorf("stream reset: %v", f.ErrCode)
		case *http2.GoAwayFrame:
			return 0, fmt.Errorf("goaway: %v", f.ErrCode)
		}
	}
	n := copy(p, s.data)
	s.data = s.data[n:]
	return n, nil
}
