// Command burrow is the relay, the agent, and their tools in one binary.
package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/burrow-tunnel/burrow/agent"
	"github.com/burrow-tunnel/burrow/protocol"
	"github.com/burrow-tunnel/burrow/relay"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = ""

func main() {
	// Burrow logs its own warning, with the fix, when UDP buffers are too small.
	os.Setenv("QUIC_GO_DISABLE_RECEIVE_BUFFER_WARNING", "true")
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "burrow:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	if prefix := os.Getenv("BURROW_CPUPROFILE"); prefix != "" {
		stopProfile, err := startCPUProfile(prefix)
		if err != nil {
			return err
		}
		defer stopProfile()
	}
	return newRoot().ExecuteContext(ctx)
}

// startCPUProfile writes a CPU profile of this process to
// PREFIX.<command>.<pid>.pprof until it exits, for `go tool pprof`.
func startCPUProfile(prefix string) (func(), error) {
	name := "burrow"
	if len(os.Args) > 1 && !strings.HasPrefix(os.Args[1], "-") {
		name = filepath.Base(os.Args[1])
	}
	path := fmt.Sprintf("%s.%s.%d.pprof", prefix, name, os.Getpid())
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("BURROW_CPUPROFILE: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("BURROW_CPUPROFILE: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "burrow",
		Short:         "Burrow publishes a service at home (such as Stash) through a relay you host",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newRelayCmd(), newAgentCmd(), newTokenCmd(), newDemoCmd(), newStashCmd(), newStatusCmd(), newVersionCmd())
	return root
}

// configFlag adds --config, defaulting to $BURROW_CONFIG; without either,
// the command looks in /etc/burrow, then in the working directory.
func configFlag(c *cobra.Command, p *string) {
	c.Flags().StringVarP(p, "config", "c", os.Getenv("BURROW_CONFIG"), "config file (YAML); also $BURROW_CONFIG; default /etc/burrow/<relay|agent>.yaml, then ./<relay|agent>.yaml")
}

func newRelayCmd() *cobra.Command {
	c := daemonCmd("relay", "Run the relay (on the public server)", loadRelayConfig,
		func(cfg relay.Config, log *slog.Logger) (runner, error) {
			if _, set := os.LookupEnv("GOMEMLIMIT"); !set && cfg.Limits.MemoryMiB > 0 {
				// The collector works harder before the budget refuses anything.
				debug.SetMemoryLimit(int64(cfg.Limits.MemoryMiB) << 20)
			}
			return relay.New(cfg, log)
		})
	var fpPath string
	fp := &cobra.Command{
		Use:   "fingerprint",
		Short: "Print the sha256 fingerprint of the relay's tunnel certificate (for agents' relay_fingerprint)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cfg, _, err := loadRelayConfig(fpPath)
			if err != nil {
				return err
			}
			cert, err := relay.LoadTunnelCertificate(cfg.Tunnel, cfg.StateDir)
			if err != nil {
				return err
			}
			fmt.Fprintln(c.OutOrStdout(), relay.Fingerprint(cert.Certificate[0]))
			return nil
		},
	}
	configFlag(fp, &fpPath)
	c.AddCommand(fp)
	return c
}

func newAgentCmd() *cobra.Command {
	// Where the token came from, as last loaded; checked once, at start.
	var token tokenSource
	load := func(path string) (agent.Config, procFile, error) {
		cfg, lf, src, err := loadAgentFile(path)
		token = src
		return cfg, lf, err
	}
	return daemonCmd("agent", "Run the agent (at home, next to the service)", load,
		func(cfg agent.Config, log *slog.Logger) (runner, error) {
			warnTokenReadable(log, token)
			return agent.New(cfg, log)
		})
}

// runner is a daemon: the relay or the agent.
type runner interface {
	Run(ctx context.Context) error
}

// reloader is a daemon that takes a new config while it runs.
type reloader[C any] interface {
	Reload(C) error
}

// daemonCmd is a command that loads its config file and runs the daemon
// that start makes from it until the process is told to stop. SIGHUP
// reloads the file: log.level applies at once, the rest as the daemon's
// Reload says; a file that does not load is refused and logged, and the
// config in force stays.
func daemonCmd[C any](use, short string, load func(path string) (C, procFile, error), start func(C, *slog.Logger) (runner, error)) *cobra.Command {
	var path string
	c := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			// The file found is the one a reload reads again.
			path, err := configPath(path, use+".yaml")
			if err != nil {
				return err
			}
			cfg, pf, err := load(path)
			if err != nil {
				return err
			}
			level := new(slog.LevelVar)
			log := newLogger(pf.Log, level)
			log.Info("CPUs for Go code", "cpus", applyCPUs(pf.CPUs), "machine", runtime.NumCPU())
			r, err := start(cfg, log)
			if err != nil {
				return err
			}
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			ctx, cancel := context.WithCancel(c.Context())
			var g errgroup.Group
			g.Go(func() error {
				defer cancel()
				return r.Run(ctx)
			})
			g.Go(func() error {
				for {
					select {
					case <-ctx.Done():
						return nil
					case <-hup:
						reload(log, level, path, load, r)
					}
				}
			})
			return g.Wait()
		},
	}
	configFlag(c, &path)
	return c
}

// reload rereads the config file at path and hands it to the daemon r.
func reload[C any](log *slog.Logger, level *slog.LevelVar, path string, load func(path string) (C, procFile, error), r runner) {
	log.Info("SIGHUP: reloading the config", "file", path)
	rl, ok := r.(reloader[C])
	if !ok {
		log.Warn("config reload: this daemon takes no new config; restart it")
		return
	}
	cfg, pf, err := load(path)
	if err == nil {
		err = rl.Reload(cfg)
	}
	if err != nil {
		log.Error("config reload refused; the config in force stays", "err", err)
		return
	}
	_ = level.UnmarshalText([]byte(pf.Log.Level))
}

func newTokenCmd() *cobra.Command {
	c := &cobra.Command{Use: "token", Short: "Agent tokens"}
	var asJSON bool
	n := &cobra.Command{
		Use:   "new",
		Short: "Print a new random agent token and the line for the relay's config",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			tok, sum, err := newToken()
			if err != nil {
				return err
			}
			out := c.OutOrStdout()
			if asJSON {
				return json.NewEncoder(out).Encode(map[string]string{"token": tok, "token_sha256": sum})
			}
			fmt.Fprintf(out, "token: %s\n\n", tok)
			fmt.Fprintf(out, "# agent.yaml (keep it secret):\ntoken: %q\n\n", tok)
			fmt.Fprintf(out, "# relay.yaml, under agents[] (only the hash is stored on the relay):\n    token_sha256: %q\n", sum)
			return nil
		},
	}
	n.Flags().BoolVar(&asJSON, "json", false, `print {"token": …, "token_sha256": …}`)
	c.AddCommand(n)
	return c
}

// newToken returns 256 random bits, URL-safe base64, and the hex sha256 of that string.
func newToken() (token, sum string, err error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", "", err
	}
	token = base64.RawURLEncoding.EncodeToString(b[:])
	h := sha256.Sum256([]byte(token))
	return token, hex.EncodeToString(h[:]), nil
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print Burrow's version",
		Args:  cobra.NoArgs,
		Run: func(c *cobra.Command, _ []string) {
			fmt.Fprintf(c.OutOrStdout(), "burrow %s (protocol %d)\n%s\n", buildVersion(), protocol.Version, buildLine())
		},
	}
}

func buildVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}
