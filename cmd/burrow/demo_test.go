package main

import (
	"net"
	"net/netip"
	"testing"
)

func TestDemoBanner(t *testing.T) {
	lan := []netip.Addr{netip.MustParseAddr("192.168.1.5"), netip.MustParseAddr("fd00::5")}
	got := demoBanner("http://localhost:8080", &net.TCPAddr{IP: net.IPv4zero, Port: 8080}, "127.0.0.1:40000", lan)
	want := "\n  Burrow demo is up: open http://localhost:8080/\n" +
		"  from another machine: http://192.168.1.5:8080/\n" +
		"  from another machine: http://[fd00::5]:8080/\n" +
		"  browser → relay → tunnel (127.0.0.1:40000) → agent → service; Ctrl-C to stop\n\n"
	if got != want {
		t.Errorf("banner:\n%s\nwant:\n%s", got, want)
	}
	got = demoBanner("http://localhost:8080", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8080}, "127.0.0.1:40000", lan)
	want = "\n  Burrow demo is up: open http://localhost:8080/\n" +
		"  (this machine only: --http 0.0.0.0:8080 opens it to your LAN)\n" +
		"  browser → relay → tunnel (127.0.0.1:40000) → agent → service; Ctrl-C to stop\n\n"
	if got != want {
		t.Errorf("banner:\n%s\nwant:\n%s", got, want)
	}
}
