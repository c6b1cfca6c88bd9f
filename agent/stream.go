package agent

import (
	"context"
	"log/slog"
	"net"
	"time"

	"github.com/burrow-tunnel/burrow/internal/pipe"
	"github.com/burrow-tunnel/burrow/internal/procs"
	"github.com/burrow-tunnel/burrow/protocol"
)

const serviceDialTimeout = 10 * time.Second

// serveStream reads a stream's header, dials the route's service and copies
// bytes both ways until both directions are done.
func (a *Agent) serveStream(ctx context.Context, log *slog.Logger, routes *routeTable, st protocol.Stream) {
	defer st.Close()
	sc := procs.Current() // one CPU while a few streams are served (see procs)
	sc.Enter()
	defer sc.Leave()
	_ = st.SetReadDeadline(time.Now().Add(protocol.HandshakeTimeout))
	hdr, err := protocol.ReadStreamHeader(st)
	if err != nil {
		log.Debug("bad stream header", "err", err)
		return
	}
	_ = st.SetReadDeadline(time.Time{})
	rt := routes.get(hdr.RouteID)
	if rt == nil {
		_ = protocol.WriteStatus(st, protocol.StatusUnknownRoute, "no route with this id")
		return
	}
	if rt.unenforced {
		// An older relay publishes the route but ignores its access policy.
		_ = protocol.WriteStatus(st, protocol.StatusRefused, "the relay does not enforce this route's access policy: upgrade the relay")
		return
	}
	if _, err := rt.guard.check(ctx); err != nil {
		if rt.guard.warnOnce() {
			log.Error("request refused", "host", rt.Host, "reason", err)
		}
		_ = protocol.WriteStatus(st, protocol.StatusRefused, "Stash has no login")
		return
	}
	d := net.Dialer{Timeout: serviceDialTimeout, KeepAlive: 30 * time.Second}
	svc, err := d.DialContext(ctx, "tcp", rt.addr)
	if err != nil {
		log.Warn("service unreachable", "host", rt.Host, "service", rt.Service, "err", err)
		_ = protocol.WriteStatus(st, protocol.StatusServiceUnreachable, rt.Service+": "+err.Error())
		return
	}
	defer svc.Close()
	if err := protocol.WriteStatus(st, protocol.StatusOK, ""); err != nil {
		return
	}
	// Stop at once when the session ends.
	stop := context.AfterFunc(ctx, func() { st.Close(); svc.Close() })
	defer stop()
	pipe.Join(st, svc.(*net.TCPConn))
}
