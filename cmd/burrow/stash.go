package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/burrow-tunnel/burrow/agent"
	"github.com/burrow-tunnel/burrow/agent/stash"
)

// errCheckFailed makes `stash check` exit 1 after it printed its report.
var errCheckFailed = errors.New("a Stash needs attention (see above)")

// probeTimeout bounds the question whether a route's service is Stash.
const stashProbeTimeout = 5 * time.Second

func newStashCmd() *cobra.Command {
	c := &cobra.Command{Use: "stash", Short: "Check and fix Stash's settings for the public URL"}
	var path string
	check := &cobra.Command{
		Use:   "check",
		Short: "Report whether each Stash fits the public URL the relay gives its routes",
		Long: `check asks the relay (without publishing anything) for each route's public URL,
reads Stash's config.yml (routes[].stash.config_file, or found in Stash's usual
places; routes to the same service share it) and reports external_host: unset is
right (the headers Burrow sends suffice, and LAN access keeps working); equal to the
public URL works; anything else is wrong, and check prints the line to change. It
also says whether Stash takes the agent's forwarded headers (trusted_proxies).
Routes whose service is not Stash are skipped, and a config.yml that cannot be
found is reported as not checked. It exits 1 when a Stash needs a change or the
relay refuses a route, 0 otherwise.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			routes, err := stashRoutes(c.Context(), path)
			if err != nil {
				return err
			}
			out := c.OutOrStdout()
			ok := true
			for _, r := range routes {
				if !reportRoute(out, r, routes) {
					ok = false
				}
			}
			if !ok {
				return errCheckFailed
			}
			return nil
		},
	}
	configFlag(check, &path)

	var setPath, host string
	set := &cobra.Command{
		Use:   "set-external-host",
		Short: "Write the public URL into Stash's config.yml as external_host (keeps a .bak)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			routes, err := stashRoutes(c.Context(), setPath)
			if err != nil {
				return err
			}
			var r *stashRoute
			for i := range routes {
				if !routes[i].skipped && (host == "" || routes[i].route.Host == host) {
					r = &routes[i]
					break
				}
			}
			if r == nil {
				return fmt.Errorf("no Stash route with host %q in %s", host, setPath)
			}
			if r.err != nil {
				return r.err
			}
			base := stash.PublicBase(r.publicURL)
			if others := otherBases(*r, routes); len(others) > 0 {
				return fmt.Errorf("external_host %s would send the visitors of %s to %s: this Stash (%s) is published at %s too. "+
					"external_host can name only one: leave it unset instead, which serves both: stop Stash, delete the "+
					"external_host line from %s, and start Stash again (Stash then builds each visitor's URLs from the headers Burrow sends)",
					base, strings.Join(others, " and "), base, r.route.Service, strings.Join(others, " and "), r.config)
			}
			bak, err := stash.SetExternalHost(r.config, base)
			if err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "%s: external_host: %s (previous file kept as %s)\nRestart Stash for it to take effect.\n", r.config, base, bak)
			return nil
		},
	}
	configFlag(set, &setPath)
	set.Flags().StringVar(&host, "host", "", "the route's host (default: the first Stash route)")
	c.AddCommand(check, set)
	return c
}

type stashRoute struct {
	route     agent.Route
	publicURL string
	config    string
	err       error // the relay refused the route, or gave no URL
	notFound  error // config.yml not found: not checked
	skipped   bool  // the service is not Stash
}

// stashRoutes learns each route's public URL from the relay, finds its
// Stash config (shared by the routes to one service), and skips the routes
// whose service is not Stash.
func stashRoutes(ctx context.Context, path string) ([]stashRoute, error) {
	cfg, _, err := loadAgentConfig(path)
	if err != nil {
		return nil, err
	}
	a, err := agent.New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	w, err := a.DryRun(ctx)
	if err != nil {
		return nil, fmt.Errorf("asking the relay for the public URLs: %w", err)
	}
	shared := map[string]string{} // service → the config_file one of its routes names
	for _, r := range cfg.Routes {
		if r.StashConfigFile != "" && shared[r.Service] == "" {
			shared[r.Service] = r.StashConfigFile
		}
	}
	probed := map[string]stash.LoginState{}
	var out []stashRoute
	for _, r := range cfg.Routes {
		sr := stashRoute{route: r}
		explicit := shared[r.Service]
		if explicit == "" {
			st, seen := probed[r.Service]
			if !seen {
				pctx, cancel := context.WithTimeout(ctx, stashProbeTimeout)
				st, _ = stash.ProbeLogin(pctx, nil, r.Service) // no answer: 0, checked as Stash
				cancel()
				probed[r.Service] = st
			}
			if st == stash.NotStash {
				sr.skipped = true
				out = append(out, sr)
				continue
			}
		}
		for _, acc := range w.Accepted {
			if acc.Host == r.Host && acc.Prefix == r.Prefix && len(acc.PublicURLs) > 0 {
				sr.publicURL = acc.PublicURLs[0]
			}
		}
		for _, ref := range w.Refused {
			if ref.Host == r.Host && ref.Prefix == r.Prefix {
				sr.err = fmt.Errorf("the relay refuses route %s%s: %s", r.Host, r.Prefix, ref.Reason)
			}
		}
		if sr.err == nil && sr.publicURL == "" {
			sr.err = fmt.Errorf("the relay gave no public URL for %s%s", r.Host, r.Prefix)
		}
		if sr.err == nil {
			sr.config, err = stash.FindConfig(explicit)
			if errors.Is(err, stash.ErrConfigNotFound) {
				sr.notFound = err
			} else {
				sr.err = err
			}
		}
		out = append(out, sr)
	}
	return out, nil
}

// otherBases are the public bases of the other routes to r's Stash, when they differ from r's.
func otherBases(r stashRoute, all []stashRoute) []string {
	base := stash.PublicBase(r.publicURL)
	var others []string
	for _, o := range all {
		if o.skipped || o.err != nil || o.route == r.route || o.route.Service != r.route.Service {
			continue
		}
		if b := stash.PublicBase(o.publicURL); b != base && !contains(others, o.publicURL) {
			others = append(others, strings.TrimRight(o.publicURL, "/"))
		}
	}
	return others
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// reportRoute prints what check found for r; false means r needs attention.
func reportRoute(out io.Writer, r stashRoute, all []stashRoute) bool {
	fmt.Fprintf(out, "route %s%s → %s\n", r.route.Host, r.route.Prefix, r.route.Service)
	switch {
	case r.skipped:
		fmt.Fprintf(out, "  skipped: %s does not answer like Stash (set routes[].stash.config_file to check it anyway)\n", r.route.Service)
		return true
	case r.err != nil:
		fmt.Fprintf(out, "  error: %v\n", r.err)
		return false
	case r.notFound != nil:
		fmt.Fprintf(out, "  public URL: %s\n  external_host: not checked: %v\n", r.publicURL, r.notFound)
		return true
	}
	rep, err := stash.CheckURL(r.config, r.publicURL)
	if err != nil {
		fmt.Fprintf(out, "  public URL: %s\n  error: %v\n", r.publicURL, err)
		return false
	}
	fmt.Fprintf(out, "  public URL: %s\n  config: %s\n  external_host: %s\n", r.publicURL, r.config, rep.Verdict)
	fmt.Fprintf(out, "  %s\n", rep.Message)
	ok := rep.OK()
	if others := otherBases(r, all); len(others) > 0 && rep.Verdict != stash.Unset {
		fmt.Fprintf(out, "  This Stash is published at %s too, and external_host can name only one of them: "+
			"delete the external_host line (with Stash stopped), which serves both.\n", strings.Join(others, " and "))
		ok = false
	}
	if addr, err := agent.ParseService(r.route.Service); err == nil {
		if src, err := stash.SourceAddr(addr); err == nil {
			if tr, err := stash.CheckTrust(r.config, src); err == nil {
				fmt.Fprintf(out, "  forwarded headers: %s\n", tr.Message)
				ok = ok && tr.OK()
			}
		}
	}
	return ok
}
