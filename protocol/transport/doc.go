// Package transport carries Burrow's sessions (protocol.Session) between an
// agent and a relay: QUIC (quic-go) on UDP, or TLS with yamux on top over TCP
// where UDP is blocked. Both share one port number on the relay, speak the
// ALPN protocol.ALPN, and hide behind the same Session and Stream
// interfaces, so nothing above this package asks which one it has.
//
// Beside the two Session implementations it owns what makes them fast on a
// real link: flow-control windows sized for video over long round trips
// (window.go), TLS record batching on TCP (tlsbatch.go), UDP receive offload
// (udpgro_linux.go), socket buffer advice, and the TCP congestion control an
// agent picks on a lossy path.
package transport
