package access

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"time"

	"github.com/burrow-tunnel/burrow/protocol"
)

// forwardTimeout bounds a gateway's answer.
const forwardTimeout = 10 * time.Second

// maxGatewayBody bounds the body of a gateway's refusal passed to the visitor.
const maxGatewayBody = 64 << 10

// forwardAuth asks a gateway about each request, the way Caddy's
// forward_auth and nginx's auth_request do with Authelia, Authentik and
// oauth2-proxy: a 2xx lets the request through with the gateway's identity
// headers; any other answer (a redirect to its login page, a 401) goes back
// to the visitor as it is.
type forwardAuth struct {
	g    *Guard
	url  string
	copy []string
}

func newForwardAuth(p *protocol.ForwardAuthPolicy, g *Guard) (*forwardAuth, error) {
	u, err := url.Parse(p.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("access.forward_auth.url: %q must be an http:// or https:// URL", p.URL)
	}
	copyHeaders, err := canonicalHeaders(p.CopyHeaders)
	if err != nil {
		return nil, fmt.Errorf("access.forward_auth.copy_headers: %w", err)
	}
	return &forwardAuth{g: g, url: p.URL, copy: copyHeaders}, nil
}

// askHeaders are the visitor's headers the gateway sees: its credentials and
// what it needs to answer a browser.
var askHeaders = []string{"Cookie", "Authorization", "Proxy-Authorization", "Accept", "User-Agent", "Accept-Language"}

func (f *forwardAuth) check(w http.ResponseWriter, r *http.Request, addr netip.Addr) (*http.Request, bool) {
	ctx, cancel := context.WithTimeout(r.Context(), forwardTimeout)
	defer cancel()
	ask, err := http.NewRequestWithContext(ctx, http.MethodGet, f.url, nil)
	if err != nil {
		f.g.deps.Refuse(w, r, RefusedGateway)
		return nil, false
	}
	for _, h := range askHeaders {
		if v := r.Header.Values(h); len(v) > 0 {
			ask.Header[h] = v
		}
	}
	proto := "http"
	if r.TLS != nil {
		proto = "https"
	}
	uri := r.URL.RequestURI()
	ask.Header.Set("X-Forwarded-Method", r.Method)
	ask.Header.Set("X-Forwarded-Proto", proto)
	ask.Header.Set("X-Forwarded-Host", r.Host)
	ask.Header.Set("X-Forwarded-Uri", uri)
	ask.Header.Set("X-Forwarded-For", addr.String())
	ask.Header.Set("X-Real-IP", addr.String())
	ask.Header.Set("X-Original-Method", r.Method)
	ask.Header.Set("X-Original-URL", proto+"://"+r.Host+uri)
	resp, err := f.g.deps.Client.Do(ask)
	if err != nil {
		f.g.deps.Log.Warn("forward-auth gateway unreachable", "host", f.g.host, "url", f.url, "err", err)
		f.g.deps.Refuse(w, r, RefusedGateway)
		return nil, false
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxGatewayBody))
		for _, h := range f.copy {
			if v := resp.Header.Values(h); len(v) > 0 {
				r.Header[h] = v
			}
		}
		return r, true
	}
	// The gateway's own answer: its redirect to the login page, its 401.
	out := w.Header()
	for k, v := range resp.Header {
		switch k {
		case "Content-Length", "Connection", "Keep-Alive", "Transfer-Encoding", "Upgrade", "Trailer", "Te", "Proxy-Connection":
			continue
		}
		out[k] = v
	}
	out.Set("Cache-Control", "no-store")
	w.WriteHeader(resp.StatusCode)
	if r.Method != http.MethodHead {
		_, _ = io.Copy(w, io.LimitReader(resp.Body, maxGatewayBody))
	}
	return nil, false
}

// redirectsNotFollowed is the CheckRedirect of a client that asks gateways
// and providers: a gateway's redirect is for the visitor.
func redirectsNotFollowed(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// NewClient is the client a Guard reaches providers and gateways with.
func NewClient() *http.Client {
	return &http.Client{CheckRedirect: redirectsNotFollowed, Timeout: 30 * time.Second}
}
