package relay

import (
	"html/template"
	"net/http"
)

type pageKind int

const (
	pageUnknownHost pageKind = iota
	pageNoRoute
	pageAgentOffline
	pageServiceDown
	pageTunnelError
	pageServiceRefused
	pageServiceSlow
	pageTooManyStreams
	pageOverBudget
	pageAddressDenied
	pageLoginBlocked
	pageRateLimited
	pageSignInDown
)

var pageText = map[pageKind]struct{ title, body string }{
	pageUnknownHost: {"Unknown site", "This Burrow relay serves no site called {{.}}. Check the address, or grant the host to an agent in the relay's config (agents[].hosts)."},
	pageNoRoute:     {"Not found", "{{.}} is served through this relay, but no route covers this path."},
	pageAgentOffline: {"Home agent not connected",
		"The home agent that serves {{.}} is not connected to the relay right now. If you run this site: check that `burrow agent` is running at home and can reach the relay; its log says why it is not connected."},
	pageServiceDown: {"Service at home not answering",
		"The home agent for {{.}} is connected, but the service it forwards to (for example Stash) is not answering. If you run this site: check that the service is running on the address in the agent's routes[].service."},
	pageServiceRefused: {"Not published: Stash has no login",
		"The home agent for {{.}} will not publish this Stash because it has no login: anyone could see the whole library. If you run this site: set a username and password in Stash (Settings → Security → Authentication), or set allow_unauthenticated: true on the route in agent.yaml."},
	pageServiceSlow: {"Service at home too slow",
		"The service behind {{.}} did not start answering in time. If you run this site: check the service; the relay's limits.response_header sets how long it may take."},
	pageTooManyStreams: {"Too many requests at once",
		"Your address has too many requests to {{.}} in flight at once. Wait for some to finish and try again. If you run this site: limits.streams_per_client in the relay's config sets the limit."},
	pageOverBudget: {"Relay busy",
		"The relay that serves {{.}} is holding as much memory as it may right now, so it takes no new requests for a moment. Try again in a few seconds. If you run this site: the relay's log says why; limits.memory_mib in its config sets the budget."},
	pageAddressDenied: {"Access denied",
		"{{.}} does not take requests from your network. If you run this site: the route's access.allow and access.deny in agent.yaml set who may connect."},
	pageLoginBlocked: {"Too many failed sign-ins",
		"Your address tried to sign in to {{.}} and failed too many times, so it is blocked for a while. Wait and try again later. If you run this site: the route's access.login_limit in agent.yaml sets the limit; a successful sign-in from the address lifts the block."},
	pageRateLimited: {"Too many requests",
		"Your address sent {{.}} more requests than it takes. Slow down and try again in a moment. If you run this site: the route's access.rate_limit in agent.yaml sets the rate."},
	pageSignInDown: {"Sign-in service not answering",
		"{{.}} asks visitors to sign in, but its sign-in service did not answer. Try again in a moment. If you run this site: the relay's log says which service failed (access.oidc.issuer or access.forward_auth.url)."},
	pageTunnelError: {"Tunnel error", "The connection to the home agent for {{.}} failed while this request was in flight. Retrying usually helps."},
}

var pageTmpl = func() map[pageKind]*template.Template {
	m := map[pageKind]*template.Template{}
	for k, t := range pageText {
		m[k] = template.Must(template.New("").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>` + t.title + ` — Burrow</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:40em;margin:4em auto;padding:0 1em;color:#222}h1{font-size:1.4em}small{color:#777}</style>
</head><body><h1>` + t.title + `</h1><p>` + t.body + `</p><p><small>Burrow relay</small></p></body></html>
`))
	}
	return m
}()

func (s *Server) page(w http.ResponseWriter, r *http.Request, code int, kind pageKind, host string) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	if (code == http.StatusServiceUnavailable || code == http.StatusTooManyRequests) && h.Get("Retry-After") == "" {
		h.Set("Retry-After", "5")
	}
	w.WriteHeader(code)
	if r.Method == http.MethodHead {
		return
	}
	_ = pageTmpl[kind].Execute(w, canonicalHost(host))
}
