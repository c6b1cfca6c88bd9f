package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/spf13/cobra"

	"github.com/burrow-tunnel/burrow/agent"
	"github.com/burrow-tunnel/burrow/agent/stash"
)

// errCheckFailed makes `stash check` exit 1 after it printed its report.
var errCheckFailed = errors.New("external_host needs attention (see above)")

func newStashCmd() *cobra.Command {
	c := &cobra.Command{Use: "stash", Short: "Check and fix Stash's settings for the public URL"}
	var path string
	check := &cobra.Command{
		Use:   "check",
		Short: "Report whether Stash's external_host fits the public URL the relay gives each route",
		Long: `check asks the relay (without publishing anything) for each route's public URL,
reads Stash's config.yml and reports external_host: unset is right (the headers
Burrow sends suffice, and LAN access keeps working); equal to the public URL works;
anything else is wrong, and check prints the line to change. It exits 0 when every
route is fine, 1 otherwise.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			routes, err := stashRoutes(c.Context(), path)
			if err != nil {
				return err
			}
			out := c.OutOrStdout()
			ok := true
			for _, r := range routes {
				if !reportRoute(out, r) {
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
				if host == "" || routes[i].route.Host == host {
					r = &routes[i]
					break
				}
			}
			if r == nil {
				return fmt.Errorf("no route with host %q in %s", host, setPath)
			}
			if r.err != nil {
				return r.err
			}
			base := stash.PublicBase(r.publicURL)
			bak, err := stash.SetExternalHost(r.config, base)
			if err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "%s: external_host: %s (previous file kept as %s)\nRestart Stash for it to take effect.\n", r.config, base, bak)
			return nil
		},
	}
	configFlag(set, &setPath)
	set.Flags().StringVar(&host, "host", "", "the route's host (default: the first route)")
	c.AddCommand(check, set)
	return c
}

type stashRoute struct {
	route     agent.Route
	publicURL string
	config    string
	err       error
}

// stashRoutes learns each route's public URL from the relay and finds its Stash config.
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
	var out []stashRoute
	for _, r := range cfg.Routes {
		sr := stashRoute{route: r}
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
			sr.config, sr.err = stash.FindConfig(r.StashConfigFile)
		}
		out = append(out, sr)
	}
	return out, nil
}

func reportRoute(out io.Writer, r stashRoute) bool {
	fmt.Fprintf(out, "route %s%s → %s\n", r.route.Host, r.route.Prefix, r.route.Service)
	if r.err != nil {
		fmt.Fprintf(out, "  error: %v\n", r.err)
		return false
	}
	rep, err := stash.Check(r.config, stash.PublicBase(r.publicURL))
	if err != nil {
		fmt.Fprintf(out, "  public URL: %s\n  error: %v\n", r.publicURL, err)
		return false
	}
	fmt.Fprintf(out, "  public URL: %s\n  config: %s\n  external_host: %s\n", r.publicURL, r.config, rep.Verdict)
	fmt.Fprintf(out, "  %s\n", rep.Message)
	return rep.OK()
}
