package relay

import (
	"net/http"
	"net/textproto"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// A request reaches a service by one of four ways: the proxy's streamTransport
// or its fallback http.Transport (both under httputil.ReverseProxy),
// serveUpgrade, or serveExtendedConnect. All four go through rewrite, which
// strips hop-by-hop headers with outboundHeader: one list, so that no way
// forwards what another strips. A copy that drifts is a leak (it once sent a
// client's Proxy-Authorization on to the service with every websocket).

// hopHeaders belong to one connection and are never forwarded: the list of
// net/http/httputil's reverse proxy, and extended CONNECT's pseudo-header,
// which Go's HTTP/2 server leaves among the headers.
var hopHeaders = []string{
	"Connection",
	"Proxy-Connection", // non-standard, still sent by libcurl
	"Keep-Alive",
	"Proxy-Authenticate",
	"Proxy-Authorization",
	"Te",      // canonical form of "TE"
	"Trailer", // not "Trailers" (RFC 2616 erratum 4522)
	"Transfer-Encoding",
	"Upgrade",
	":protocol",
}

// removeHopHeaders deletes h's hop-by-hop headers: the ones its Connection
// header names, then hopHeaders.
func removeHopHeaders(h http.Header) {
	for _, f := range h["Connection"] {
		for name := range strings.SplitSeq(f, ",") {
			if name = textproto.TrimString(name); name != "" {
				h.Del(name)
			}
		}
	}
	for _, k := range hopHeaders {
		h.Del(k)
	}
}

// outboundHeader strips the hop-by-hop headers of out, the request bound for
// the service, exactly as httputil.ReverseProxy does before it calls Rewrite:
// then it says "Te: trailers" for the relay when the client accepts trailers,
// and asks for in's upgrade, if any, in HTTP/1.1 terms. On the proxy's way it
// thus runs a second time, to the same result.
func outboundHeader(in *http.Request, out http.Header) {
	removeHopHeaders(out)
	if httpguts.HeaderValuesContainsToken(in.Header["Te"], "trailers") {
		out.Set("Te", "trailers")
	}
	if up := upgradeOf(in); up != "" {
		out.Set("Connection", "Upgrade")
		out.Set("Upgrade", up)
	}
}

// upgradeOf is the protocol r asks to switch to, by an HTTP/1.1 upgrade or by
// extended CONNECT; "" for other requests.
func upgradeOf(r *http.Request) string {
	switch {
	case isUpgrade(r):
		return r.Header.Get("Upgrade")
	case isExtendedConnect(r):
		return extendedProtocol(r)
	}
	return ""
}
