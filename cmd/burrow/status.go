package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/burrow-tunnel/burrow/internal/admin"
)

// errNotReady makes `burrow status` exit 1 when the process is not ready.
var errNotReady = errors.New("not ready")

func newStatusCmd() *cobra.Command {
	var path string
	var asJSON bool
	c := &cobra.Command{
		Use:   "status",
		Short: "Show a running relay's or agent's state (from its admin listener); exit 1 when it is not ready",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			addr, err := adminAddr(path)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(c.Context(), 5*time.Second)
			defer cancel()
			raw, st, err := fetchStatus(ctx, addr)
			if err != nil {
				return err
			}
			if asJSON {
				_, _ = c.OutOrStdout().Write(raw)
			} else {
				printStatus(c.OutOrStdout(), st)
			}
			if !st.Ready {
				return errNotReady
			}
			return nil
		},
	}
	configFlag(c, &path)
	c.Flags().BoolVar(&asJSON, "json", false, "print the status as JSON")
	return c
}

// adminAddr reads the admin listener's address from a relay or agent config
// file: an agent's names its relay (the top-level key "relay").
func adminAddr(path string) (string, error) {
	if path == "" {
		return "", errors.New("no config file: pass --config FILE (the relay's or the agent's) or set BURROW_CONFIG")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	var top map[string]any
	if err := yaml.Unmarshal(b, &top); err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	var listen string
	if _, isAgent := top["relay"]; isAgent {
		cfg, _, err := loadAgentConfig(path)
		if err != nil {
			return "", err
		}
		listen = cfg.Admin.Listen
	} else {
		cfg, _, err := loadRelayConfig(path)
		if err != nil {
			return "", err
		}
		listen = cfg.Admin.Listen
	}
	if listen == "" {
		return "", fmt.Errorf("%s: admin.listen is off (\"\"): set it (e.g. \"127.0.0.1:7836\") and restart to use `burrow status`", path)
	}
	host, port, _ := strings.Cut(listen, ":")
	if host == "" || host == "0.0.0.0" || host == "[::]" {
		listen = "127.0.0.1:" + port
	}
	return listen, nil
}

func fetchStatus(ctx context.Context, addr string) ([]byte, admin.Status, error) {
	var st admin.Status
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/status.json", nil)
	if err != nil {
		return nil, st, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, st, fmt.Errorf("no answer from the admin listener at %s (is the process running?): %w", addr, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return nil, st, err
	}
	var detail json.RawMessage
	st.Detail = &detail
	if err := json.Unmarshal(raw, &st); err != nil {
		return nil, st, fmt.Errorf("admin listener at %s: %w", addr, err)
	}
	return raw, st, nil
}

// printStatus prints the facts a person looks for first.
func printStatus(w io.Writer, st admin.Status) {
	state := "ready"
	if !st.Ready {
		state = "NOT READY: " + st.Reason
	}
	fmt.Fprintf(w, "%s: %s (up %s)\n", st.Role, state, time.Since(st.Since).Round(time.Second))
	var d struct {
		Sessions []struct {
			Agent, ID, Transport, Remote, Relay string
			Since                               time.Time
			Streams                             int64
		}
		Routes []struct {
			Host, Prefix, Agent, Service, Reason string
			Sessions                             []string
			Published                            *bool
		}
	}
	if raw, ok := st.Detail.(*json.RawMessage); ok {
		_ = json.Unmarshal(*raw, &d)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\nSESSION\tAGENT/RELAY\tTRANSPORT\tREMOTE\tUP\tSTREAMS")
	for _, s := range d.Sessions {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\n", s.ID, s.Agent+s.Relay, s.Transport, s.Remote, time.Since(s.Since).Round(time.Second), s.Streams)
	}
	fmt.Fprintln(tw, "\nROUTE\tSERVED BY\tSTATE")
	for _, r := range d.Routes {
		state := strings.Join(r.Sessions, " ")
		if r.Published != nil && !*r.Published {
			state = "not published: " + r.Reason
		} else if r.Published != nil {
			state = "published → " + r.Service
		}
		fmt.Fprintf(tw, "%s%s\t%s\t%s\n", r.Host, r.Prefix, r.Agent, state)
	}
	tw.Flush()
}
