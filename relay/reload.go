package relay

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
)

// current is the config in force: the one the relay started with, or the
// last one a reload applied.
func (s *Server) current() *Config { return s.conf.Load() }

// Reload applies a new config to the running relay without dropping what it
// need not drop:
//
//   - agents[]: an agent added can connect at once; an agent removed, or
//     whose token_sha256 changed, loses its sessions; hosts added to or
//     removed from an agent's grant publish or unpublish those routes on
//     its live sessions (an agent that asked for a host the relay refused
//     gets it as soon as a reload grants it, without reconnecting). Streams
//     of the agents a reload does not touch go on untouched.
//   - trusted_proxies, limits.stalled_client, shutdown_grace and log.access
//     apply to the next request.
//
// The listeners, certificates, state_dir, admin and the other limits keep
// their values until a restart; Reload logs each such key that changed. An
// invalid config is refused with the error a start would give, and the
// config in force stays.
func (s *Server) Reload(next Config) error {
	if err := next.Validate(); err != nil {
		return err
	}
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	old := s.current()
	eff := *old
	eff.Agents = next.Agents
	eff.TrustedProxies = next.TrustedProxies
	eff.AccessLog = next.AccessLog
	eff.Limits.StalledClient = next.Limits.StalledClient
	eff.ShutdownGrace = next.ShutdownGrace
	for _, key := range restartKeys(old, &next) {
		s.log.Warn("config reload: this key changes only at the next restart", "key", key)
	}
	changes, ended := agentChanges(old.Agents, next.Agents)
	for _, key := range valueKeys(old, &eff) {
		changes = append(changes, key+" changed")
	}
	s.conf.Store(&eff)
	s.gen.Add(1)

	sessions := s.live.Items()
	for _, ts := range sessions {
		if reason, ok := ended[ts.agent]; ok {
			ts.end(reason)
		}
	}
	// Unpublish first, then publish: a host that moves from one agent to
	// another in one reload is free by the time its new agent asks.
	for _, ts := range sessions {
		if _, ok := ended[ts.agent]; !ok {
			ts.dropUnwanted()
		}
	}
	for _, ts := range sessions {
		if _, ok := ended[ts.agent]; !ok {
			ts.reconcile(0)
		}
	}
	if len(changes) == 0 {
		changes = []string{"nothing"}
	}
	s.log.Info("config reloaded", "changed", strings.Join(changes, "; "))
	return nil
}

// agentChanges describes what changed in agents[], and which agents'
// sessions end, with the reason.
func agentChanges(old, next []AgentGrant) (changes []string, ended map[string]string) {
	ended = map[string]string{}
	byName := map[string]*AgentGrant{}
	for i := range old {
		byName[old[i].Name] = &old[i]
	}
	for i := range next {
		n := &next[i]
		o := byName[n.Name]
		delete(byName, n.Name)
		switch {
		case o == nil:
			changes = append(changes, fmt.Sprintf("agent %q added (hosts %s)", n.Name, strings.Join(n.Hosts, ", ")))
		case o.TokenSHA256 != n.TokenSHA256:
			changes = append(changes, fmt.Sprintf("agent %q has a new token", n.Name))
			ended[n.Name] = "its token_sha256 changed in the relay's config"
		case !slices.Equal(o.Hosts, n.Hosts):
			changes = append(changes, fmt.Sprintf("agent %q hosts %s → %s", n.Name, strings.Join(o.Hosts, ", "), strings.Join(n.Hosts, ", ")))
		}
	}
	for name := range byName {
		changes = append(changes, fmt.Sprintf("agent %q removed", name))
		ended[name] = "it was removed from the relay's config"
	}
	slices.Sort(changes)
	return changes, ended
}

// restartKeys are the keys whose new value differs from the one in force
// and waits for a restart.
func restartKeys(old, next *Config) []string {
	kept := *next
	kept.Agents, kept.TrustedProxies, kept.AccessLog = old.Agents, old.TrustedProxies, old.AccessLog
	kept.Limits.StalledClient, kept.ShutdownGrace = old.Limits.StalledClient, old.ShutdownGrace
	return valueKeys(old, &kept)
}

// valueKeys names the keys whose values differ between a and b, agents[]
// aside: each top-level key, and limits by their own keys.
func valueKeys(a, b *Config) []string {
	var keys []string
	var walk func(prefix string, a, b reflect.Value)
	walk = func(prefix string, a, b reflect.Value) {
		for i := range a.NumField() {
			f := a.Type().Field(i)
			key := strings.Split(f.Tag.Get("mapstructure"), ",")[0]
			switch {
			case f.Name == "AccessLog":
				key = "log.access"
			case key == "-" || key == "agents":
				continue
			}
			if f.Type == reflect.TypeFor[LimitsConfig]() {
				walk(key+".", a.Field(i), b.Field(i))
				continue
			}
			if !reflect.DeepEqual(a.Field(i).Interface(), b.Field(i).Interface()) {
				keys = append(keys, prefix+key)
			}
		}
	}
	walk("", reflect.ValueOf(a).Elem(), reflect.ValueOf(b).Elem())
	return keys
}
