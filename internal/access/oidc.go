package access

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/burrow-tunnel/burrow/protocol"
)

// Cookie names. Each is scoped to the route's host and prefix (its Path),
// and sealed with them, so a cookie of one route never opens for another.
const (
	SessionCookie = "__burrow_session"
	flowCookie    = "__burrow_flow"
	flowLife      = 10 * time.Minute
	discoverLimit = 10 * time.Second
)

// oidcSignIn signs visitors in with an OpenID provider (authorization code
// flow, PKCE S256, state and nonce) and keeps them signed in with a sealed
// cookie.
type oidcSignIn struct {
	g           *Guard
	pol         protocol.OIDCPolicy
	session     time.Duration
	groupsClaim string
	scopes      []string

	mu       sync.Mutex
	provider *oidc.Provider       // guarded by mu; nil until discovered
	revoked  map[string]time.Time // guarded by mu; signed-out session ids, until they expire
}

// Session is what a sign-in cookie holds.
type Session struct {
	ID      string `json:"id"`
	Subject string `json:"sub"`
	Email   string `json:"email,omitempty"`
	Expires int64  `json:"exp"` // Unix seconds
}

// flow is what the sign-in cookie holds between the start and the callback.
type flow struct {
	State    string `json:"state"`
	Nonce    string `json:"nonce"`
	Verifier string `json:"verifier"`
	Return   string `json:"return"`
	Expires  int64  `json:"exp"`
}

func newOIDC(p *protocol.OIDCPolicy, g *Guard) (*oidcSignIn, error) {
	var errs []error
	u, err := url.Parse(p.Issuer)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		errs = append(errs, fmt.Errorf("access.oidc.issuer: %q must be the provider's https:// URL", p.Issuer))
	}
	if p.ClientID == "" {
		errs = append(errs, errors.New("access.oidc.client_id: is required"))
	}
	if len(p.AllowedEmails)+len(p.AllowedSubjects)+len(p.AllowedGroups) == 0 {
		errs = append(errs, errors.New("access.oidc: set allowed_emails, allowed_subjects or allowed_groups: otherwise anyone with an account at the provider gets in"))
	}
	if g.deps.Keys == nil {
		errs = append(errs, errors.New("access.oidc: the relay has no cookie key (its state_dir is not writable)"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	o := &oidcSignIn{g: g, pol: *p, session: time.Duration(p.SessionMillis) * time.Millisecond,
		groupsClaim: p.GroupsClaim, scopes: p.Scopes, revoked: map[string]time.Time{}}
	if o.session <= 0 {
		o.session = DefaultSession
	}
	if o.groupsClaim == "" {
		o.groupsClaim = DefaultGroupsClaim
	}
	if len(o.scopes) == 0 {
		o.scopes = []string{"email", "profile"}
		if len(p.AllowedGroups) > 0 {
			o.scopes = append(o.scopes, "groups")
		}
	}
	return o, nil
}

func (o *oidcSignIn) ad(kind string) string { return kind + "|" + o.g.host + "|" + o.g.prefix }

func (o *oidcSignIn) cookiePath() string { return o.g.prefix + "/" }

func (o *oidcSignIn) endpoint(name string) string { return o.g.prefix + Endpoints + name }

// SessionFrom returns the signed-in session r carries, if any.
func (o *oidcSignIn) sessionFrom(r *http.Request) (Session, bool) {
	now := time.Now()
	for _, c := range r.Cookies() {
		if c.Name != SessionCookie {
			continue
		}
		var s Session
		if o.g.deps.Keys.open(o.ad("session"), c.Value, &s) != nil || s.ID == "" || now.Unix() >= s.Expires {
			continue
		}
		o.mu.Lock()
		_, gone := o.revoked[s.ID]
		o.mu.Unlock()
		if !gone {
			return s, true
		}
	}
	return Session{}, false
}

// SessionCookieFor seals s as the sign-in cookie of the route at host and prefix.
func (k *Keys) SessionCookieFor(host, prefix string, s Session) (*http.Cookie, error) {
	v, err := k.seal("session|"+host+"|"+prefix, s)
	if err != nil {
		return nil, err
	}
	return &http.Cookie{Name: SessionCookie, Value: v, Path: prefix + "/", Secure: true, HttpOnly: true,
		SameSite: http.SameSiteLaxMode, Expires: time.Unix(s.Expires, 0)}, nil
}

// refuse answers a request without a sign-in: a page goes to the sign-in
// page, anything else gets a 401.
func (o *oidcSignIn) refuse(w http.ResponseWriter, r *http.Request) {
	if isNavigation(r) {
		q := url.Values{"rd": {r.URL.RequestURI()}}
		http.Redirect(w, r, o.endpoint("signin")+"?"+q.Encode(), http.StatusFound)
		return
	}
	w.Header().Set("WWW-Authenticate", `Burrow realm="`+o.g.host+o.g.prefix+`"`)
	w.Header().Set("Cache-Control", "no-store")
	http.Error(w, "401 Unauthorized: sign in at "+o.endpoint("signin"), http.StatusUnauthorized)
}

// isNavigation reports whether a browser asks for a page (not a script's
// fetch or a video's range), which may be sent to the sign-in page.
func isNavigation(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	if m := r.Header.Get("Sec-Fetch-Mode"); m != "" {
		return m == "navigate"
	}
	return strings.Contains(r.Header.Get("Accept"), "text/html")
}

// dropCookies removes Burrow's own cookies from a request bound for the service.
func (o *oidcSignIn) dropCookies(r *http.Request) {
	if !strings.Contains(r.Header.Get("Cookie"), "__burrow_") {
		return
	}
	var keep []string
	for _, c := range r.Cookies() {
		if c.Name != SessionCookie && c.Name != flowCookie {
			keep = append(keep, c.Name+"="+c.Value)
		}
	}
	r.Header.Del("Cookie")
	if len(keep) > 0 {
		r.Header.Set("Cookie", strings.Join(keep, "; "))
	}
}

// serveEndpoint serves the relay's own sign-in pages below prefix/.burrow/.
func (o *oidcSignIn) serveEndpoint(w http.ResponseWriter, r *http.Request, name string) {
	w.Header().Set("Cache-Control", "no-store")
	switch name {
	case "signin":
		o.page(w, r, http.StatusOK, pageSignIn, "")
	case "start":
		o.start(w, r)
	case "callback":
		o.callback(w, r)
	case "signout":
		o.signOut(w, r)
	default:
		http.NotFound(w, r)
	}
}

// discover finds the provider's endpoints and keys, once it answers.
func (o *oidcSignIn) discover(ctx context.Context) (*oidc.Provider, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.provider != nil {
		return o.provider, nil
	}
	ctx, cancel := context.WithTimeout(ctx, discoverLimit)
	defer cancel()
	p, err := oidc.NewProvider(oidc.ClientContext(ctx, o.g.deps.Client), o.pol.Issuer)
	if err != nil {
		return nil, fmt.Errorf("discover OpenID provider %s: %w", o.pol.Issuer, err)
	}
	o.provider = p
	return p, nil
}

func (o *oidcSignIn) config(p *oidc.Provider, r *http.Request) *oauth2.Config {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return &oauth2.Config{
		ClientID: o.pol.ClientID, ClientSecret: o.pol.ClientSecret, Endpoint: p.Endpoint(),
		RedirectURL: scheme + "://" + r.Host + o.endpoint("callback"),
		Scopes:      append([]string{oidc.ScopeOpenID}, o.scopes...),
	}
}

func random() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// start sends the visitor to the provider, keeping state, nonce and PKCE
// verifier in a sealed cookie for the callback.
func (o *oidcSignIn) start(w http.ResponseWriter, r *http.Request) {
	p, err := o.discover(r.Context())
	if err != nil {
		o.g.deps.Log.Warn("OpenID provider unreachable", "host", o.g.host, "prefix", o.g.prefix, "err", err)
		o.g.deps.Refuse(w, r, RefusedGateway)
		return
	}
	f := flow{State: random(), Nonce: random(), Verifier: oauth2.GenerateVerifier(),
		Return: o.safeReturn(r.URL.Query().Get("rd")), Expires: time.Now().Add(flowLife).Unix()}
	v, err := o.g.deps.Keys.seal(o.ad("flow"), f)
	if err != nil {
		o.g.deps.Refuse(w, r, RefusedGateway)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: flowCookie, Value: v, Path: o.g.prefix + Endpoints, MaxAge: int(flowLife.Seconds()),
		Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	http.Redirect(w, r, o.config(p, r).AuthCodeURL(f.State, oidc.Nonce(f.Nonce), oauth2.S256ChallengeOption(f.Verifier)), http.StatusFound)
}

// safeReturn is where to send the visitor after signing in: a path of this
// route, never another site (an open redirect) or another route.
func (o *oidcSignIn) safeReturn(rd string) string {
	home := o.cookiePath()
	u, err := url.Parse(rd)
	if rd == "" || err != nil || u.Scheme != "" || u.Host != "" || u.User != nil ||
		!strings.HasPrefix(rd, "/") || strings.HasPrefix(rd, "//") || strings.ContainsAny(rd, "\\\r\n\t") {
		return home
	}
	clean := path.Clean(u.Path)
	if strings.HasSuffix(u.Path, "/") && clean != "/" {
		clean += "/"
	}
	if clean != u.Path || (o.g.prefix != "" && u.Path != o.g.prefix && !strings.HasPrefix(u.Path, home)) {
		return home
	}
	if strings.HasPrefix(o.g.rel(u.Path), Endpoints) {
		return home
	}
	return rd
}

func (o *oidcSignIn) callback(w http.ResponseWriter, r *http.Request) {
	var f flow
	c, err := r.Cookie(flowCookie)
	if err != nil || o.g.deps.Keys.open(o.ad("flow"), c.Value, &f) != nil || time.Now().Unix() >= f.Expires {
		o.page(w, r, http.StatusBadRequest, pageSignInFailed, "The sign-in took too long or was started elsewhere.")
		return
	}
	// The flow is used up, whatever comes next.
	http.SetCookie(w, &http.Cookie{Name: flowCookie, Path: o.g.prefix + Endpoints, MaxAge: -1, Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	q := r.URL.Query()
	if subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(f.State)) != 1 {
		o.page(w, r, http.StatusBadRequest, pageSignInFailed, "The answer from the sign-in provider does not belong to this sign-in.")
		return
	}
	if e := q.Get("error"); e != "" {
		o.page(w, r, http.StatusForbidden, pageSignInFailed, "The sign-in provider said: "+truncate(e, 100))
		return
	}
	sess, err := o.redeem(r, q.Get("code"), f)
	if errors.Is(err, errNotAllowed) {
		o.g.deps.Log.Info("sign-in refused: user not allowed on this route", "host", o.g.host, "prefix", o.g.prefix, "sub", sess.Subject, "email", sess.Email)
		o.page(w, r, http.StatusForbidden, pageNotAllowed, sess.Email)
		return
	}
	if err != nil {
		o.g.deps.Log.Warn("sign-in failed", "host", o.g.host, "prefix", o.g.prefix, "err", err)
		o.page(w, r, http.StatusBadGateway, pageSignInFailed, "The sign-in provider's answer could not be checked.")
		return
	}
	ck, err := o.g.deps.Keys.SessionCookieFor(o.g.host, o.g.prefix, sess)
	if err != nil {
		o.page(w, r, http.StatusInternalServerError, pageSignInFailed, "")
		return
	}
	ck.MaxAge = int(o.session.Seconds())
	http.SetCookie(w, ck)
	o.g.deps.Log.Info("signed in", "host", o.g.host, "prefix", o.g.prefix, "sub", sess.Subject, "email", sess.Email)
	http.Redirect(w, r, f.Return, http.StatusFound)
}

var errNotAllowed = errors.New("user not allowed")

// redeem trades the code for tokens, checks the ID token (signature, issuer,
// audience, expiry, nonce) and whether its user may in.
func (o *oidcSignIn) redeem(r *http.Request, code string, f flow) (Session, error) {
	p, err := o.discover(r.Context())
	if err != nil {
		return Session{}, err
	}
	ctx := context.WithValue(oidc.ClientContext(r.Context(), o.g.deps.Client), oauth2.HTTPClient, o.g.deps.Client)
	tok, err := o.config(p, r).Exchange(ctx, code, oauth2.VerifierOption(f.Verifier))
	if err != nil {
		return Session{}, fmt.Errorf("redeem the code: %w", err)
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return Session{}, errors.New("the provider sent no ID token")
	}
	idt, err := p.Verifier(&oidc.Config{ClientID: o.pol.ClientID}).Verify(ctx, raw)
	if err != nil {
		return Session{}, fmt.Errorf("check the ID token: %w", err)
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(f.Nonce)) != 1 {
		return Session{}, errors.New("the ID token's nonce is not this sign-in's")
	}
	claims := map[string]any{}
	if err := idt.Claims(&claims); err != nil {
		return Session{}, fmt.Errorf("read the ID token's claims: %w", err)
	}
	if _, ok := claims["email"]; !ok || (len(o.pol.AllowedGroups) > 0 && claims[o.groupsClaim] == nil) {
		// Many providers put email and groups only in the userinfo answer.
		if ui, err := p.UserInfo(ctx, oauth2.StaticTokenSource(tok)); err == nil && ui.Subject == idt.Subject {
			extra := map[string]any{}
			if ui.Claims(&extra) == nil {
				for k, v := range extra {
					if _, ok := claims[k]; !ok {
						claims[k] = v
					}
				}
			}
		}
	}
	s := Session{ID: random(), Subject: idt.Subject, Expires: time.Now().Add(o.session).Unix()}
	s.Email, _ = claims["email"].(string)
	if !o.allowed(s.Subject, s.Email, claims["email_verified"], groupsOf(claims[o.groupsClaim])) {
		return s, errNotAllowed
	}
	return s, nil
}

func groupsOf(v any) []string {
	switch g := v.(type) {
	case string:
		return []string{g}
	case []any:
		var out []string
		for _, x := range g {
			if s, ok := x.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// allowed reports whether the user matches allowed_subjects, allowed_emails
// (a verified address, case-insensitive) or allowed_groups.
func (o *oidcSignIn) allowed(sub, email string, verified any, groups []string) bool {
	if slices.Contains(o.pol.AllowedSubjects, sub) {
		return true
	}
	if v, ok := verified.(bool); email != "" && (!ok || v) {
		for _, e := range o.pol.AllowedEmails {
			if strings.EqualFold(e, email) {
				return true
			}
		}
	}
	for _, g := range groups {
		if slices.Contains(o.pol.AllowedGroups, g) {
			return true
		}
	}
	return false
}

// signOut shows a page whose button signs out (GET), and signs out (POST
// with the session's token, so that another site cannot sign a visitor out).
func (o *oidcSignIn) signOut(w http.ResponseWriter, r *http.Request) {
	s, ok := o.sessionFrom(r)
	if r.Method != http.MethodPost {
		if !ok {
			o.page(w, r, http.StatusOK, pageSignedOut, "")
			return
		}
		o.page(w, r, http.StatusOK, pageSignOut, s.ID)
		return
	}
	if ok && subtle.ConstantTimeCompare([]byte(r.PostFormValue("token")), []byte(s.ID)) != 1 {
		o.page(w, r, http.StatusForbidden, pageSignInFailed, "The sign-out form was not this site's.")
		return
	}
	if ok {
		o.revoke(s)
		o.g.deps.Log.Info("signed out", "host", o.g.host, "prefix", o.g.prefix, "sub", s.Subject)
	}
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Path: o.cookiePath(), MaxAge: -1, Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	o.page(w, r, http.StatusOK, pageSignedOut, "")
}

// revoke keeps a signed-out session's id until it would have expired, so a
// copy of its cookie no longer opens.
func (o *oidcSignIn) revoke(s Session) {
	now := time.Now()
	o.mu.Lock()
	defer o.mu.Unlock()
	for id, exp := range o.revoked {
		if now.After(exp) {
			delete(o.revoked, id)
		}
	}
	o.revoked[s.ID] = time.Unix(s.Expires, 0)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}
