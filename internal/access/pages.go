package access

import (
	"html/template"
	"net/http"
	"net/url"
)

type pageKind int

const (
	pageSignIn pageKind = iota
	pageSignInFailed
	pageNotAllowed
	pageSignOut
	pageSignedOut
)

var pageTmpl = template.Must(template.New("").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<meta name="referrer" content="no-referrer">
<title>{{.Title}} — {{.Site}}</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:34em;margin:4em auto;padding:0 1em;color:#222}
h1{font-size:1.4em}a.button,button{display:inline-block;font:inherit;padding:.5em 1.2em;border:0;border-radius:4px;background:#2d5fa8;color:#fff;text-decoration:none;cursor:pointer}small{color:#777}</style>
</head><body><h1 id="title">{{.Title}}</h1>
{{if eq .Kind 0}}<p>You are signing in to <b id="site">{{.Site}}</b>. Its owner lets in only the people they chose, who sign in with <b>{{.Provider}}</b>.</p>
<p><a class="button" id="continue" href="{{.Start}}">Continue to sign in</a></p>
{{else if eq .Kind 1}}<p id="msg">Signing in to <b>{{.Site}}</b> did not work. {{.Detail}}</p><p><a class="button" href="{{.SignIn}}">Try again</a></p>
{{else if eq .Kind 2}}<p id="msg">You signed in{{if .Detail}} as <b>{{.Detail}}</b>{{end}}, but this account may not use <b>{{.Site}}</b>. Ask the site's owner, or sign in with another account at {{.Provider}}.</p>
{{else if eq .Kind 3}}<p>Sign out of <b>{{.Site}}</b>?</p><form method="post" action="{{.SignOut}}"><input type="hidden" name="token" value="{{.Detail}}"><button id="signout" type="submit">Sign out</button></form>
{{else}}<p id="msg">You are signed out of <b>{{.Site}}</b>.</p><p><a class="button" href="{{.SignIn}}">Sign in again</a></p>{{end}}
<p><small>Burrow relay</small></p></body></html>
`))

var pageTitles = map[pageKind]string{
	pageSignIn: "Sign in", pageSignInFailed: "Sign-in failed", pageNotAllowed: "Not allowed",
	pageSignOut: "Sign out", pageSignedOut: "Signed out",
}

func (o *oidcSignIn) page(w http.ResponseWriter, r *http.Request, code int, kind pageKind, detail string) {
	provider := o.pol.Issuer
	if u, err := url.Parse(o.pol.Issuer); err == nil {
		provider = u.Host
	}
	rd := o.safeReturn(r.URL.Query().Get("rd"))
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'")
	w.WriteHeader(code)
	if r.Method == http.MethodHead {
		return
	}
	_ = pageTmpl.Execute(w, map[string]any{
		"Kind": int(kind), "Title": pageTitles[kind], "Site": o.g.host + o.g.prefix, "Provider": provider, "Detail": detail,
		"Start":   o.endpoint("start") + "?" + url.Values{"rd": {rd}}.Encode(),
		"SignIn":  o.endpoint("signin") + "?" + url.Values{"rd": {rd}}.Encode(),
		"SignOut": o.endpoint("signout"),
	})
}
