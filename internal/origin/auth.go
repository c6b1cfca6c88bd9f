package origin

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"path"
	"strings"
)

// requestIP is the client's IP the way Stash finds it: the first entry of
// X-Forwarded-For split on ", " (a proxy that joins with "," breaks it), else
// the peer address. Stash also refuses X-Forwarded-For from a public peer.
func requestIP(r *http.Request) (netip.Addr, error) {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("remote address %q: %w", r.RemoteAddr, err)
	}
	host, _, _ = strings.Cut(host, "%") // an IPv6 zone would not parse
	peer, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("remote address %q: %w", r.RemoteAddr, err)
	}
	xff := r.Header.Get("X-Forwarded-For")
	if xff == "" {
		return peer.Unmap(), nil
	}
	if !isLocalIP(peer) {
		return netip.Addr{}, fmt.Errorf("X-Forwarded-For from public peer %s", peer)
	}
	first, _, _ := strings.Cut(xff, ", ")
	ip, err := netip.ParseAddr(first)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("X-Forwarded-For %q: %w", first, err)
	}
	return ip.Unmap(), nil
}

// cgnat is 100.64.0.0/10, which Stash counts as local.
var cgnat = netip.MustParsePrefix("100.64.0.0/10")

func isLocalIP(ip netip.Addr) bool {
	ip = ip.Unmap()
	return ip.IsPrivate() || ip.IsLoopback() || ip.IsLinkLocalUnicast() || cgnat.Contains(ip)
}

// authenticated reports whether r carries credentials: the API key as header
// or query, or a session cookie. Any non-empty session counts: the origin
// keeps no user store, and POST /login hands out random ones.
func (s *Server) authenticated(r *http.Request) bool {
	if key := s.opts.APIKey; key != "" {
		got := r.Header.Get("ApiKey")
		if got == "" {
			got = r.URL.Query().Get("apikey")
		}
		if subtle.ConstantTimeCompare([]byte(got), []byte(key)) == 1 {
			return true
		}
	}
	c, err := r.Cookie("session")
	return err == nil && c.Value != ""
}

// allowUnauthenticated lists what Stash serves without a login: the login
// pages and the assets they need (/healthz is answered before this).
func allowUnauthenticated(r *http.Request) bool {
	p := r.URL.Path
	return strings.HasPrefix(p, "/login") || p == "/logout" ||
		strings.HasPrefix(p, "/css") || strings.HasPrefix(p, "/assets")
}

// refuse answers a request without credentials as Stash does: 401 for the
// API and for files, a redirect to the login page for pages.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request) {
	if ext := path.Ext(r.URL.Path); r.URL.Path == "/graphql" || (ext != "" && ext != ".html") {
		w.Header().Add("WWW-Authenticate", "FormBased")
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	p := prefix(r)
	ret := url.URL{Path: p + r.URL.Path, RawQuery: r.URL.RawQuery}
	login := url.URL{Path: p + "/login", RawQuery: url.Values{"returnURL": {ret.String()}}.Encode()}
	http.Redirect(w, r, login.String(), http.StatusFound)
}

func (s *Server) serveLoginPage(w http.ResponseWriter, r *http.Request) {
	s.renderLogin(w, r, http.StatusOK, "")
}

func (s *Server) renderLogin(w http.ResponseWriter, r *http.Request, status int, msg string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	err := loginTemplate.Execute(w, map[string]string{
		"Prefix":    prefix(r),
		"ReturnURL": r.FormValue("returnURL"),
		"Error":     msg,
	})
	if err != nil {
		s.log.Debug("render login page", "err", err)
	}
}

func (s *Server) serveLoginPost(w http.ResponseWriter, r *http.Request) {
	user, pass := r.PostFormValue("username"), r.PostFormValue("password")
	userOK := subtle.ConstantTimeCompare([]byte(user), []byte(s.opts.Username)) == 1
	passOK := subtle.ConstantTimeCompare([]byte(pass), []byte(s.opts.Password)) == 1
	if !userOK || !passOK {
		s.renderLogin(w, r, http.StatusUnauthorized, "Invalid credentials")
		return
	}
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails
	http.SetCookie(w, &http.Cookie{
		Name:     "session",
		Value:    hex.EncodeToString(b[:]),
		Path:     "/",
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
	})
	http.Redirect(w, r, localRedirect(r.PostFormValue("returnURL"), prefix(r)+"/"), http.StatusFound)
}

func (s *Server) serveLogout(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: "session", Path: "/", MaxAge: -1})
	http.Redirect(w, r, prefix(r)+"/login", http.StatusFound)
}

// localRedirect returns target if it is a path on this site, else fallback.
func localRedirect(target, fallback string) string {
	if !strings.HasPrefix(target, "/") || strings.HasPrefix(target, "//") || strings.HasPrefix(target, "/\\") {
		return fallback
	}
	return target
}
