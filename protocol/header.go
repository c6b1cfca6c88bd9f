package protocol

import (
	"encoding/binary"
	"fmt"
	"io"
)

// Kind says what a data stream carries.
type Kind uint8

// Stream kinds.
const (
	// KindHTTP carries HTTP/1.1 bytes from the relay's reverse proxy.
	KindHTTP Kind = 1
	// KindTCP carries the bytes of one raw public TCP connection.
	KindTCP Kind = 2
)

// streamMagic opens every data stream, so that a stray connection is refused at once.
var streamMagic = [3]byte{'B', 'R', 'W'}

// MaxAddrLen caps the client address carried in a StreamHeader.
const MaxAddrLen = 255

// StreamHeader opens every data stream: magic "BRW", version, kind, route id (uint32),
// client address length (uint8) and the address.
type StreamHeader struct {
	Kind    Kind
	RouteID uint32
	// Client is the public client's address, when the stream carries one client's bytes.
	Client string
}

const streamHeaderFixed = 3 + 1 + 1 + 4 + 1

// AppendBinary appends the encoded header to b.
func (h StreamHeader) AppendBinary(b []byte) ([]byte, error) {
	if len(h.Client) > MaxAddrLen {
		return b, fmt.Errorf("protocol: client address of %d bytes exceeds %d", len(h.Client), MaxAddrLen)
	}
	b = append(b, streamMagic[:]...)
	b = append(b, Version, byte(h.Kind))
	b = binary.BigEndian.AppendUint32(b, h.RouteID)
	b = append(b, byte(len(h.Client)))
	return append(b, h.Client...), nil
}

// ReadStreamHeader reads and checks a StreamHeader.
func ReadStreamHeader(r io.Reader) (StreamHeader, error) {
	var fixed [streamHeaderFixed]byte
	if _, err := io.ReadFull(r, fixed[:]); err != nil {
		return StreamHeader{}, fmt.Errorf("protocol: read stream header: %w", err)
	}
	if [3]byte(fixed[:3]) != streamMagic {
		return StreamHeader{}, ErrBadMagic
	}
	if fixed[3] != Version {
		return StreamHeader{}, fmt.Errorf("%w: stream header version %d", ErrUnsupportedVersion, fixed[3])
	}
	h := StreamHeader{Kind: Kind(fixed[4]), RouteID: binary.BigEndian.Uint32(fixed[5:9])}
	if h.Kind != KindHTTP && h.Kind != KindTCP {
		return StreamHeader{}, fmt.Errorf("protocol: unknown stream kind %d", h.Kind)
	}
	if n := int(fixed[9]); n > 0 {
		addr := make([]byte, n)
		if _, err := io.ReadFull(r, addr); err != nil {
			return StreamHeader{}, fmt.Errorf("protocol: read stream client address: %w", err)
		}
		h.Client = string(addr)
	}
	return h, nil
}

// Status codes the agent answers a data stream with.
const (
	// StatusOK means the agent reached the route's service; its bytes follow.
	StatusOK uint8 = 0
	// StatusUnknownRoute means the agent has no route with the header's id.
	StatusUnknownRoute uint8 = 1
	// StatusServiceUnreachable means the agent could not connect to the route's service.
	StatusServiceUnreachable uint8 = 2
	// StatusRefused means the agent will not serve this route now (a Stash without a login).
	StatusRefused uint8 = 3
)

// MaxStatusMessage caps the message of a stream status.
const MaxStatusMessage = 1024

// StatusError is a non-OK stream status from the agent.
type StatusError struct {
	Code    uint8
	Message string
}

func (e *StatusError) Error() string {
	switch e.Code {
	case StatusUnknownRoute:
		return "agent: unknown route: " + e.Message
	case StatusServiceUnreachable:
		return "agent: service unreachable: " + e.Message
	case StatusRefused:
		return "agent: refused: " + e.Message
	}
	return fmt.Sprintf("agent: stream status %d: %s", e.Code, e.Message)
}

// WriteStatus writes the agent's answer to a stream header. An empty msg with StatusOK is one byte.
func WriteStatus(w io.Writer, code uint8, msg string) error {
	if len(msg) > MaxStatusMessage {
		msg = msg[:MaxStatusMessage]
	}
	b := []byte{code}
	if code != StatusOK {
		b = binary.BigEndian.AppendUint16(b, uint16(len(msg)))
		b = append(b, msg...)
	}
	_, err := w.Write(b)
	return err
}

// ReadStatus reads the agent's answer to a stream header: nil for StatusOK, else a *StatusError.
func ReadStatus(r io.Reader) error {
	var code [1]byte
	if _, err := io.ReadFull(r, code[:]); err != nil {
		return fmt.Errorf("protocol: read stream status: %w", err)
	}
	if code[0] == StatusOK {
		return nil
	}
	var n [2]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return fmt.Errorf("protocol: read stream status: %w", err)
	}
	l := int(binary.BigEndian.Uint16(n[:]))
	if l > MaxStatusMessage {
		return fmt.Errorf("protocol: stream status message of %d bytes exceeds %d", l, MaxStatusMessage)
	}
	msg := make([]byte, l)
	if _, err := io.ReadFull(r, msg); err != nil {
		return fmt.Errorf("protocol: read stream status: %w", err)
	}
	return &StatusError{Code: code[0], Message: string(msg)}
}
