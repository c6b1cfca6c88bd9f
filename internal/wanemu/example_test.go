package wanemu_test

import (
	"context"
	"log"
	"net"
	"net/netip"
	"time"

	"github.com/burrow-tunnel/burrow/internal/wanemu"
)

// A relay listening in one namespace and an agent dialing it from the other,
// across a 40 ms, 50 Mbit/s link with 1% loss.
func Example() {
	ctx := context.Background()
	link, err := wanemu.New(ctx, wanemu.Config{
		A:       wanemu.Side{Namespace: "bw-relay", Addr: netip.MustParsePrefix("10.233.0.1/24")},
		B:       wanemu.Side{Namespace: "bw-agent", Addr: netip.MustParsePrefix("10.233.0.2/24")},
		Profile: wanemu.Profile{RTT: 40 * time.Millisecond, Loss: 0.01, RateBitsPerSec: 50e6},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer link.Close()

	var ln net.Listener
	err = wanemu.InNamespace("bw-relay", func() (err error) {
		ln, err = net.Listen("tcp", "10.233.0.1:7000")
		return err
	})
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()

	var conn net.Conn
	err = wanemu.InNamespace("bw-agent", func() (err error) {
		conn, err = net.Dial("tcp", "10.233.0.1:7000")
		return err
	})
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()

	// Worse weather: the link can change while connections are open.
	if err := link.SetProfile(wanemu.Profile{RTT: 200 * time.Millisecond, Loss: 0.05}); err != nil {
		log.Fatal(err)
	}
	log.Printf("%+v", link.Stats())
}
