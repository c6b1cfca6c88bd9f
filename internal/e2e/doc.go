// Package e2e holds Burrow's end-to-end tests: they build cmd/burrow, run the
// binary as relay and agent on loopback with real QUIC and TLS+yamux, put the
// Stash-like origin (internal/origin) behind them, and check bytes, headers,
// status codes, reconnects and log redaction from a public client's side.
//
// The package has no non-test code; run it with
//
//	go test -race -count=1 ./internal/e2e
package e2e
