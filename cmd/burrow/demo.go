package main

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/burrow-tunnel/burrow/agent"
	"github.com/burrow-tunnel/burrow/internal/origin"
	"github.com/burrow-tunnel/burrow/protocol"
	"github.com/burrow-tunnel/burrow/relay"
)

type demoOptions struct {
	service   string
	http      string
	transport string
	logLevel  string
}

func newDemoCmd() *cobra.Command {
	var o demoOptions
	c := &cobra.Command{
		Use:   "demo",
		Short: "Run a relay and an agent on this machine and print the public URL",
		Long: `demo runs a relay and an agent in one process, joined by a real tunnel on loopback.
It forwards to --service when something answers there (Stash's default is
http://127.0.0.1:9999), and otherwise to a small built-in demo site with a page,
a websocket and a seekable video. With --http 0.0.0.0:8080 it is reachable from
other machines by any name or address. From make: make run ARGS="--http :8081".`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error { return runDemo(c.Context(), o) },
	}
	c.Flags().StringVar(&o.service, "service", "http://127.0.0.1:9999", "local service to publish when it answers")
	c.Flags().StringVar(&o.http, "http", "127.0.0.1:8080", "public HTTP address of the demo relay")
	c.Flags().StringVar(&o.transport, "transport", agent.TransportAuto, "tunnel transport: auto, quic or tcp")
	c.Flags().StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	return c
}

func runDemo(ctx context.Context, o demoOptions) error {
	log := newLogger(logFile{Level: o.logLevel, Format: "text"}, nil)
	state, err := os.MkdirTemp("", "burrow-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(state)
	token, sum, err := newToken()
	if err != nil {
		return err
	}
	hash, _ := relay.ParseTokenHash(sum)
	hosts := []string{"localhost", "127.0.0.1"}
	rs, err := relay.New(relay.Config{
		Tunnel:   relay.TunnelConfig{Listen: "127.0.0.1:0"},
		Public:   relay.PublicConfig{HTTP: o.http},
		StateDir: state,
		Agents:   []relay.AgentGrant{{Name: "demo", TokenSHA256: hash, Hosts: hosts}},
		AnyHost:  hosts[0], // any name or address this machine is reached by
	}, log.With("role", "relay"))
	if err != nil {
		return err
	}
	if err := rs.Listen(); err != nil {
		return fmt.Errorf("%w (is another demo running? try --http 127.0.0.1:8081, or make run ARGS=\"--http 127.0.0.1:8081\")", err)
	}

	g, ctx := errgroup.WithContext(ctx)
	service := o.service
	addr, _ := agent.ParseService(service)
	if !answers(addr) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		service = "http://" + ln.Addr().String()
		log.Info("nothing answers at "+o.service+"; serving the built-in demo site", "service", service)
		site := origin.New(origin.Options{LargeFileSize: 64 << 20, Log: log.With("role", "demo-site")})
		g.Go(func() error { return origin.Serve(ctx, ln, site) })
	} else {
		log.Info("forwarding to the service at " + service)
	}

	var routes []agent.Route
	for _, h := range hosts {
		routes = append(routes, agent.Route{Host: h, Service: service, AllowUnauthenticated: true})
	}
	ag, err := agent.New(agent.Config{
		Relay:            rs.TunnelAddr().String(),
		RelayFingerprint: rs.TunnelFingerprint(),
		Token:            token,
		Transport:        o.transport,
		Name:             "demo",
		Routes:           routes,
		NoStashCheck:     true,
	}, log.With("role", "agent"))
	if err != nil {
		return err
	}
	var once sync.Once
	ag.OnWelcome = func(w *protocol.Welcome) {
		once.Do(func() {
			url := ""
			if len(w.Accepted) > 0 && len(w.Accepted[0].PublicURLs) > 0 {
				url = w.Accepted[0].PublicURLs[0]
			}
			fmt.Print(demoBanner(url, rs.HTTPAddr(), rs.TunnelAddr().String(), lanAddrs()))
		})
	}
	g.Go(func() error { return rs.Run(ctx) })
	g.Go(func() error { return ag.Run(ctx) })
	return g.Wait()
}

// answers reports whether a TCP service listens at addr.
func answers(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// demoBanner is what the demo prints once it is up: the local URL, and the
// LAN URLs when the relay listens on every address.
func demoBanner(url string, public net.Addr, tunnel string, lan []netip.Addr) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\n  Burrow demo is up: open %s/\n", url)
	if ta, ok := public.(*net.TCPAddr); ok && ta.IP.IsUnspecified() {
		for _, a := range lan {
			fmt.Fprintf(&b, "  from another machine: http://%s/\n", net.JoinHostPort(a.String(), strconv.Itoa(ta.Port)))
		}
	} else {
		b.WriteString("  (this machine only: --http 0.0.0.0:8080 opens it to your LAN)\n")
	}
	fmt.Fprintf(&b, "  browser → relay → tunnel (%s) → agent → service; Ctrl-C to stop\n\n", tunnel)
	return b.String()
}

// lanAddrs are this machine's addresses other machines may reach: up,
// not loopback, IPv4 first.
func lanAddrs() []netip.Addr {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil
	}
	var v4, v6 []netip.Addr
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			p, err := netip.ParsePrefix(a.String())
			if err != nil || p.Addr().IsLinkLocalUnicast() {
				continue
			}
			if p.Addr().Is4() {
				v4 = append(v4, p.Addr())
			} else {
				v6 = append(v6, p.Addr())
			}
		}
	}
	return append(v4, v6...)
}
