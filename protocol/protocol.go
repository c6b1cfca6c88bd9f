// Package protocol is Burrow's wire protocol between an agent and a relay.
//
// The flow:
//
//  1. The agent dials the relay: QUIC, or TCP+TLS with yamux on top, both with
//     the ALPN protocol "burrow/1". Either way it gets a Session: a set of
//     bidirectional byte streams. The transports themselves live in
//     protocol/transport; this package is the format on top of them.
//  2. The agent opens the first stream, the control stream, and writes a Hello
//     (protocol version, features, token, agent name, routes). The relay
//     answers Welcome (session id, accepted and refused routes with their
//     public URLs, heartbeat) or Reject (code and message) and closes.
//     Control messages are framed as type (1 byte), length (4 bytes, big
//     endian), JSON body; a length above MaxMessageSize is an error before
//     anything is allocated.
//  3. The control stream stays open for the session's life: when either side
//     closes it, the session is over. It carries the heartbeat (KeepAlive):
//     MsgPing and MsgPong frames whose JSON body is {"seq": n, "pad": "…"},
//     padded so that a relay restarted under a QUIC agent answers a ping with
//     a stateless reset. A side that receives nothing at all — no heartbeat,
//     no data on any stream — for HeartbeatMisses periods ends the session.
//     It also carries MsgGoAway (either side is shutting down) and, when
//     both sides speak FeatureRouteUpdates, MsgRoutes (the agent asks for a
//     new set of routes) and MsgRouteUpdate (the relay says which routes are
//     published now, after a request or a change of its own config).
//  4. For each public connection the relay opens a data stream and writes a
//     StreamHeader (magic, version, kind, route id, client address); then the
//     raw bytes follow. The agent dials the route's service and writes one
//     status frame back (StatusOK, or an error code with a message) before the
//     service's bytes. The relay may pipeline its request bytes behind the
//     header without waiting for the status.
//
// This package imports only the standard library and no HTTP: everything
// above it is transport-blind.
package protocol

import "errors"

// Version is the protocol version spoken by this build.
const Version = 1

// ALPN is the TLS application protocol negotiated on both transports.
const ALPN = "burrow/1"

// MaxMessageSize caps one control message body.
const MaxMessageSize = 64 << 10

// MaxRoutes is the most routes one session may ask for, so that the Welcome
// or RouteUpdate that lists them, with their public URLs, fits in
// MaxMessageSize.
const MaxRoutes = 64

// Errors that callers classify with errors.Is.
var (
	// ErrMessageTooLarge means a control frame announced a body above MaxMessageSize.
	ErrMessageTooLarge = errors.New("protocol: control message too large")
	// ErrBadMagic means a data stream did not start with a Burrow stream header.
	ErrBadMagic = errors.New("protocol: not a burrow stream header")
	// ErrUnsupportedVersion means the peer speaks a protocol version this build does not.
	ErrUnsupportedVersion = errors.New("protocol: unsupported protocol version")
	// ErrUnexpectedMessage means a control message of the wrong type arrived.
	ErrUnexpectedMessage = errors.New("protocol: unexpected control message")
	// ErrSessionClosed is returned by Session methods once the session is over.
	ErrSessionClosed = errors.New("protocol: session closed")
)
