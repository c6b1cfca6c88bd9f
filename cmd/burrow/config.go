package main

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/viper"

	"github.com/burrow-tunnel/burrow/agent"
	"github.com/burrow-tunnel/burrow/internal/admin"
	"github.com/burrow-tunnel/burrow/internal/config"
	"github.com/burrow-tunnel/burrow/internal/redact"
	"github.com/burrow-tunnel/burrow/relay"
)

// The files' shapes. Each key is a mapstructure tag, here or on relay.Config
// and agent.Config, and is exactly as documented in the README; each default
// is set once, in relayDefaults or agentDefaults.

// logFile is the log section of both files.
type logFile struct {
	Level  string `mapstructure:"level"`
	Format string `mapstructure:"format"`
	// Access logs one line per public request (relay only).
	Access bool `mapstructure:"access"`
}

// procFile is what both files set for the process rather than for the
// daemon in it: the log section and cpus.
type procFile struct {
	Log logFile
	// CPUs is how many CPUs the process runs Go code on at once
	// (GOMAXPROCS): auto, a number, or 0 for every CPU. See applyCPUs.
	CPUs string
}

// relayFile is relay.yaml.
type relayFile struct {
	relay.Config `mapstructure:",squash"`
	Log          logFile `mapstructure:"log"`
	CPUs         string  `mapstructure:"cpus"`
}

func (f *relayFile) proc() procFile { return procFile{Log: f.Log, CPUs: f.CPUs} }

// agentFile is agent.yaml.
type agentFile struct {
	agent.Config `mapstructure:",squash"`
	// Relay is one relay address or a list ("a:7835, b:7835" in the environment).
	Relay relayList `mapstructure:"relay"`
	// TokenFile holds the token instead of agent.yaml (see resolveToken).
	TokenFile string      `mapstructure:"token_file"`
	Routes    []routeFile `mapstructure:"routes"`
	Log       logFile     `mapstructure:"log"`
	CPUs      string      `mapstructure:"cpus"`
}

func (f *agentFile) proc() procFile { return procFile{Log: f.Log, CPUs: f.CPUs} }

// relayList is agent.yaml's relay: one address, or a list.
type relayList []string

// routeFile is one of agent.yaml's routes, with Stash's config file under stash:.
type routeFile struct {
	agent.Route `mapstructure:",squash"`
	Stash       struct {
		ConfigFile string `mapstructure:"config_file"`
	} `mapstructure:"stash"`
}

func relayDefaults() relayFile {
	return relayFile{
		Config: relay.Config{
			Tunnel:        relay.TunnelConfig{Listen: ":7835"},
			Public:        relay.PublicConfig{HTTP: ":80", RedirectHTTP: true},
			TLS:           relay.TLSConfig{Storage: relay.StorageConfig{Redis: relay.RedisStorageConfig{KeyPrefix: relay.DefaultRedisKeyPrefix}}},
			StateDir:      "/var/lib/burrow",
			Limits:        relay.DefaultLimits(),
			Admin:         admin.Config{Listen: relay.DefaultAdminListen},
			ShutdownGrace: 30 * time.Second,
		},
		Log: logFile{Level: "info", Format: "text"}, CPUs: cpusAuto,
	}
}

func agentDefaults() agentFile {
	return agentFile{
		Config: agent.Config{Transport: agent.TransportAuto, LossCheck: agent.DefaultLossCheck,
			ConnectionsPerRelay: 1, RelayRefresh: agent.DefaultRelayRefresh,
			Admin: admin.Config{Listen: agent.DefaultAdminListen}, ShutdownGrace: 30 * time.Second},
		Log: logFile{Level: "info", Format: "text"}, CPUs: cpusAuto,
	}
}

// loadFile reads path through viper (file, then BURROW_* environment) into
// out, which holds the defaults. Unknown keys and values of the wrong type are
// errors that name the key.
func loadFile(path string, out any) error {
	if path == "" {
		return errors.New("no config file: pass --config FILE or set BURROW_CONFIG")
	}
	// Binding the struct lets the environment set keys the file leaves out.
	v := viper.NewWithOptions(viper.ExperimentalBindStruct(), viper.WithDecodeHook(mapstructure.DecodeHookFuncType(typedValue)))
	v.SetConfigFile(path)
	v.SetConfigType("yaml")
	v.SetEnvPrefix("BURROW")
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	v.AutomaticEnv()
	if data, err := os.ReadFile(path); err == nil {
		if err := checkYAML(data); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	}
	if err := v.ReadInConfig(); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	// The decoder's metadata names each unknown key in full
	// (routes[0].servce), where ErrorUnused names only its parent.
	var md mapstructure.Metadata
	var errs config.Errors
	if err := v.Unmarshal(out, func(c *mapstructure.DecoderConfig) { c.Metadata = &md }); err != nil {
		errs = fieldErrors(err)
	}
	slices.Sort(md.Unused)
	for _, k := range md.Unused {
		if s := didYouMean(out, k); s != "" {
			errs.Add(k, "unknown key (did you mean %s?)", s)
		} else {
			errs.Add(k, "unknown key")
		}
	}
	return fromEnvironment(path, config.InFile(path, errs.Join()))
}

// typedValue parses the file's strings into the typed values relay and agent take.
func typedValue(_, to reflect.Type, data any) (any, error) {
	switch to {
	case reflect.TypeFor[time.Duration]():
		s := fmt.Sprint(data)
		d, err := time.ParseDuration(s)
		if err != nil {
			return nil, fmt.Errorf("%q is not a duration (e.g. \"10s\" or \"1m30s\")", s)
		}
		return d, nil
	case reflect.TypeFor[netip.Prefix]():
		s := fmt.Sprint(data)
		if a, err := netip.ParseAddr(s); err == nil {
			return a.Prefix(a.BitLen())
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("%q is not a CIDR or address", s)
		}
		return p, nil
	case reflect.TypeFor[relayList]():
		switch v := data.(type) {
		case string:
			return relayList(strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' })), nil
		case []any:
			var out relayList
			for _, x := range v {
				s, ok := x.(string)
				if !ok {
					return nil, fmt.Errorf("%v is not a host:port string", x)
				}
				out = append(out, s)
			}
			return out, nil
		}
	case reflect.TypeFor[[sha256.Size]byte]():
		if s := fmt.Sprint(data); s != "" {
			h, err := relay.ParseTokenHash(s)
			if err != nil {
				return h, tokenHashProblem(s)
			}
			return h, nil
		}
		return [sha256.Size]byte{}, nil
	}
	return data, nil
}

// fieldErrors turns mapstructure's errors into errors that name their key.
func fieldErrors(err error) config.Errors {
	switch e := err.(type) {
	case *mapstructure.DecodeError:
		return config.Errors{&config.FieldError{Key: e.Name(), Reason: e.Unwrap().Error()}}
	case interface{ Unwrap() []error }:
		var errs config.Errors
		for _, x := range e.Unwrap() {
			errs = append(errs, fieldErrors(x)...)
		}
		return errs
	case interface{ Unwrap() error }: // "decoding failed due to the following error(s)"
		return fieldErrors(e.Unwrap())
	}
	return config.Errors{err}
}

func loadRelayConfig(path string) (relay.Config, procFile, error) {
	path, err := configPath(path, "relay.yaml")
	if err != nil {
		return relay.Config{}, procFile{}, err
	}
	f := relayDefaults()
	if err := loadFile(path, &f); err != nil {
		return relay.Config{}, procFile{}, err
	}
	if err := fromEnvironment(path, config.InFile(path, errors.Join(f.proc().check(), f.Validate(), checkRelayFile(&f)))); err != nil {
		return relay.Config{}, procFile{}, err
	}
	f.Config.AccessLog = f.Log.Access
	return f.Config, f.proc(), nil
}

func loadAgentConfig(path string) (agent.Config, procFile, error) {
	cfg, lf, _, err := loadAgentFile(path)
	return cfg, lf, err
}

// loadAgentFile is loadAgentConfig that also returns the file holding the
// token (see resolveToken).
func loadAgentFile(path string) (agent.Config, procFile, tokenSource, error) {
	path, err := configPath(path, "agent.yaml")
	if err != nil {
		return agent.Config{}, procFile{}, tokenSource{}, err
	}
	f := agentDefaults()
	if err := loadFile(path, &f); err != nil {
		return agent.Config{}, procFile{}, tokenSource{}, err
	}
	token, err := resolveToken(path, &f)
	if err != nil {
		return agent.Config{}, procFile{}, tokenSource{}, config.InFile(path, err)
	}
	if len(f.Relay) > 0 {
		f.Config.Relay, f.Config.Relays = f.Relay[0], f.Relay[1:]
	}
	for _, r := range f.Routes {
		r.StashConfigFile = r.Stash.ConfigFile
		f.Config.Routes = append(f.Config.Routes, r.Route)
	}
	if err := fromEnvironment(path, config.InFile(path, errors.Join(f.proc().check(), f.Validate(), checkAgentFile(&f)))); err != nil {
		return agent.Config{}, procFile{}, tokenSource{}, err
	}
	return f.Config, f.proc(), token, nil
}

func checkLog(l logFile) error {
	var errs config.Errors
	switch l.Level {
	case "debug", "info", "warn", "error":
	default:
		errs.Add("log.level", "%q is not one of debug, info, warn, error", l.Level)
	}
	switch l.Format {
	case "text", "json":
	default:
		errs.Add("log.format", "%q is not one of text, json", l.Format)
	}
	return errs.Join()
}

// newLogger makes the logger l describes; level, when not nil, holds its
// level, so that a reload can change it.
func newLogger(l logFile, level *slog.LevelVar) *slog.Logger {
	if level == nil {
		level = new(slog.LevelVar)
	}
	_ = level.UnmarshalText([]byte(l.Level))
	opts := &slog.HandlerOptions{Level: level}
	// Every line passes the redactor: no apikey, token, cookie or authorization value is ever logged.
	if l.Format == "json" {
		return slog.New(redact.Handler(slog.NewJSONHandler(os.Stderr, opts)))
	}
	return slog.New(redact.Handler(slog.NewTextHandler(os.Stderr, opts)))
}
