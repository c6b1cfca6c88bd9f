package agent

import (
	"context"
	"errors"
	"log/slog"
	"strings"

	"github.com/burrow-tunnel/burrow/agent/stash"
)

// publishedStash is a Stash route the relay published, with its public URL.
type publishedStash struct {
	Route
	publicURL string
}

// checkStashConfigs logs, for each published Stash route, what `burrow
// stash check` would say: external_host against its public URL (routes to
// the same service share one config.yml), and whether Stash takes the
// agent's forwarded headers.
func (a *Agent) checkStashConfigs(routes []publishedStash) {
	if a.cfg.NoStashCheck {
		return
	}
	shared := map[string]string{}
	for _, r := range a.rc.Load().routes {
		if r.StashConfigFile != "" && shared[r.Service] == "" {
			shared[r.Service] = r.StashConfigFile
		}
	}
	trusted := map[string]bool{}
	for _, r := range routes {
		log := a.log.With("host", r.Host, "prefix", r.Prefix)
		path, err := stash.FindConfig(shared[r.Service])
		if errors.Is(err, stash.ErrConfigNotFound) {
			log.Info("Stash's external_host not checked", "reason", err)
			continue
		}
		if err != nil {
			log.Warn("could not check Stash's external_host", "err", err)
			continue
		}
		rep, err := stash.CheckURL(path, r.publicURL)
		if err != nil {
			log.Warn("could not check Stash's external_host", "err", err)
			continue
		}
		level, msg := slog.LevelInfo, rep.Message
		if !rep.OK() {
			level = slog.LevelWarn
		}
		if others := otherPublicURLs(r, routes); len(others) > 0 && rep.Verdict != stash.Unset {
			level = slog.LevelWarn
			msg += " This Stash is published at " + strings.Join(others, " and ") +
				" too, and external_host can name only one of them: delete the external_host line (with Stash stopped), which serves both."
		}
		log.Log(context.Background(), level, "Stash external_host: "+msg, "config", path, "verdict", rep.Verdict.String())
		if trusted[path] {
			continue
		}
		trusted[path] = true
		addr, _ := ParseService(r.Service)
		if src, err := stash.SourceAddr(addr); err == nil {
			if tr, err := stash.CheckTrust(path, src); err == nil && !tr.OK() {
				log.Warn("Stash may refuse the agent's requests: "+tr.Message, "config", path)
			}
		}
	}
}

// otherPublicURLs are the public URLs of the other routes to r's service on another scheme or host.
func otherPublicURLs(r publishedStash, all []publishedStash) []string {
	var out []string
	for _, o := range all {
		if o.Service == r.Service && stash.PublicBase(o.publicURL) != stash.PublicBase(r.publicURL) {
			out = append(out, strings.TrimRight(o.publicURL, "/"))
		}
	}
	return out
}
