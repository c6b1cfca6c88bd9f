// Package accesstest checks routes' access policies end to end: a relay and
// an agent in the process, a tunnel over loopback, a Stash-like origin, and
// a real OpenID provider or forward-auth gateway.
package accesstest
