package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/viper"

	"github.com/burrow-tunnel/burrow/agent"
	"github.com/burrow-tunnel/burrow/internal/redact"
	"github.com/burrow-tunnel/burrow/relay"
)

// The files' shapes. Keys are exactly those documented in the README.

type logFile struct {
	Level  string `mapstructure:"level"`
	Format string `mapstructure:"format"`
}

type relayFile struct {
	Tunnel struct {
		Listen   string `mapstructure:"listen"`
		CertFile string `mapstructure:"cert_file"`
		KeyFile  string `mapstructure:"key_file"`
		Hostname string `mapstructure:"hostname"`
	} `mapstructure:"tunnel"`
	Public struct {
		HTTP         string `mapstructure:"http"`
		HTTPS        string `mapstructure:"https"`
		RedirectHTTP bool   `mapstructure:"redirect_http"`
		HSTS         bool   `mapstructure:"hsts"`
	} `mapstructure:"public"`
	TLS struct {
		CertFile string `mapstructure:"cert_file"`
		KeyFile  string `mapstructure:"key_file"`
		ACME     struct {
			Email  string `mapstructure:"email"`
			CA     string `mapstructure:"ca"`
			CARoot string `mapstructure:"ca_root"`
		} `mapstructure:"acme"`
	} `mapstructure:"tls"`
	StateDir       string   `mapstructure:"state_dir"`
	TrustedProxies []string `mapstructure:"trusted_proxies"`
	Agents         []struct {
		Name        string   `mapstructure:"name"`
		TokenSHA256 string   `mapstructure:"token_sha256"`
		Hosts       []string `mapstructure:"hosts"`
	} `mapstructure:"agents"`
	Log logFile `mapstructure:"log"`
}

type agentFile struct {
	Relay            string  `mapstructure:"relay"`
	ServerName       string  `mapstructure:"server_name"`
	CAFile           string  `mapstructure:"ca_file"`
	RelayFingerprint string  `mapstructure:"relay_fingerprint"`
	Token            string  `mapstructure:"token"`
	Transport        string  `mapstructure:"transport"`
	LossCheck        string  `mapstructure:"loss_check"`
	Log              logFile `mapstructure:"log"`
	Routes           []struct {
		Host                 string `mapstructure:"host"`
		Prefix               string `mapstructure:"prefix"`
		Service              string `mapstructure:"service"`
		AllowUnauthenticated bool   `mapstructure:"allow_unauthenticated"`
		Stash                struct {
			ConfigFile string `mapstructure:"config_file"`
		} `mapstructure:"stash"`
	} `mapstructure:"routes"`
}

var relayDefaults = map[string]any{
	"tunnel.listen":        ":7835",
	"tunnel.cert_file":     "",
	"tunnel.key_file":      "",
	"tunnel.hostname":      "",
	"public.http":          ":80",
	"public.https":         "",
	"public.redirect_http": true,
	"public.hsts":          false,
	"tls.cert_file":        "",
	"tls.key_file":         "",
	"tls.acme.email":       "",
	"tls.acme.ca":          "",
	"tls.acme.ca_root":     "",
	"state_dir":            "/var/lib/burrow",
	"log.level":            "info",
	"log.format":           "text",
}

var agentDefaults = map[string]any{
	"relay":             "",
	"server_name":       "",
	"ca_file":           "",
	"relay_fingerprint": "",
	"token":             "",
	"transport":         "auto",
	"loss_check":        "10s",
	"log.level":         "info",
	"log.format":        "text",
}

// loadFile reads path through viper (file, then BURROW_* environment), refuses
// unknown keys, and decodes into out. Errors name the file and the key.
func loadFile(path string, defaults map[string]any, out any) error {
	if path == "" {
		return errors.New("no config file: pass --config FILE or set BURROW_CONFIG")
	}
	v := viper.New()
	v.SetConfigFile(path)
	v.SetConfigType("yaml")
	for k, d := range defaults {
		v.SetDefault(k, d)
	}
	v.SetEnvPrefix("BURROW")
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	v.AutomaticEnv()
	if err := v.ReadInConfig(); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if unknown := unknownKeys(reflect.TypeOf(out).Elem(), v.AllSettings(), ""); len(unknown) > 0 {
		var errs []error
		for _, k := range unknown {
			errs = append(errs, fmt.Errorf("%s: %s: unknown key", path, k))
		}
		return errors.Join(errs...)
	}
	dec, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{
		Result:           out,
		WeaklyTypedInput: true,
		ErrorUnused:      true,
		TagName:          "mapstructure",
	})
	if err != nil {
		return err
	}
	if err := dec.Decode(v.AllSettings()); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// unknownKeys lists the keys of m (recursively, into lists of maps) that t has no field for.
func unknownKeys(t reflect.Type, m map[string]any, prefix string) []string {
	fields := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if tag := f.Tag.Get("mapstructure"); tag != "" {
			fields[tag] = f.Type
		}
	}
	var out []string
	for k, val := range m {
		ft, ok := fields[k]
		key := prefix + k
		if !ok {
			out = append(out, key)
			continue
		}
		switch ft.Kind() {
		case reflect.Struct:
			if sub, ok := val.(map[string]any); ok {
				out = append(out, unknownKeys(ft, sub, key+".")...)
			}
		case reflect.Slice:
			if ft.Elem().Kind() != reflect.Struct {
				continue
			}
			if items, ok := val.([]any); ok {
				for i, it := range items {
					if sub, ok := it.(map[string]any); ok {
						out = append(out, unknownKeys(ft.Elem(), sub, fmt.Sprintf("%s[%d].", key, i))...)
					}
				}
			}
		}
	}
	sort.Strings(out)
	return out
}

// inFile prefixes each joined error with the config file's path.
func inFile(path string, err error) error {
	if err == nil {
		return nil
	}
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			errs = append(errs, fmt.Errorf("%s: %w", path, e))
		}
		return errors.Join(errs...)
	}
	return fmt.Errorf("%s: %w", path, err)
}

func loadRelayConfig(path string) (relay.Config, logFile, error) {
	var f relayFile
	if err := loadFile(path, relayDefaults, &f); err != nil {
		return relay.Config{}, logFile{}, err
	}
	var errs []error
	cfg := relay.Config{
		Tunnel: relay.TunnelConfig{Listen: f.Tunnel.Listen, CertFile: f.Tunnel.CertFile, KeyFile: f.Tunnel.KeyFile, Hostname: f.Tunnel.Hostname},
		Public: relay.PublicConfig{HTTP: f.Public.HTTP, HTTPS: f.Public.HTTPS, RedirectHTTP: f.Public.RedirectHTTP, HSTS: f.Public.HSTS},
		TLS: relay.TLSConfig{CertFile: f.TLS.CertFile, KeyFile: f.TLS.KeyFile, ACME: relay.ACMEConfig{
			Email: f.TLS.ACME.Email, CA: f.TLS.ACME.CA, CARoot: f.TLS.ACME.CARoot,
		}},
		StateDir: f.StateDir,
	}
	for i, p := range f.TrustedProxies {
		pfx, err := netip.ParsePrefix(p)
		if err != nil {
			if a, aerr := netip.ParseAddr(p); aerr == nil {
				pfx, err = a.Prefix(a.BitLen())
			}
		}
		if err != nil {
			errs = append(errs, &relay.FieldError{Key: fmt.Sprintf("trusted_proxies[%d]", i), Reason: fmt.Sprintf("%q is not a CIDR or address", p)})
			continue
		}
		cfg.TrustedProxies = append(cfg.TrustedProxies, pfx)
	}
	for i, a := range f.Agents {
		g := relay.AgentGrant{Name: a.Name, Hosts: a.Hosts}
		if a.TokenSHA256 != "" {
			h, err := relay.ParseTokenHash(a.TokenSHA256)
			if err != nil {
				errs = append(errs, &relay.FieldError{Key: fmt.Sprintf("agents[%d].token_sha256", i), Reason: err.Error()})
			}
			g.TokenSHA256 = h
		}
		cfg.Agents = append(cfg.Agents, g)
	}
	if err := checkLog(f.Log); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(append(errs, cfg.Validate())...); err != nil {
		return relay.Config{}, logFile{}, inFile(path, err)
	}
	return cfg, f.Log, nil
}

func loadAgentConfig(path string) (agent.Config, logFile, error) {
	var f agentFile
	if err := loadFile(path, agentDefaults, &f); err != nil {
		return agent.Config{}, logFile{}, err
	}
	cfg := agent.Config{
		Relay: f.Relay, ServerName: f.ServerName, CAFile: f.CAFile,
		RelayFingerprint: f.RelayFingerprint, Token: f.Token, Transport: f.Transport,
	}
	for _, r := range f.Routes {
		cfg.Routes = append(cfg.Routes, agent.Route{
			Host: r.Host, Prefix: r.Prefix, Service: r.Service,
			AllowUnauthenticated: r.AllowUnauthenticated, StashConfigFile: r.Stash.ConfigFile,
		})
	}
	errs := []error{checkLog(f.Log)}
	if d, err := time.ParseDuration(f.LossCheck); err != nil {
		errs = append(errs, &agent.FieldError{Key: "loss_check", Reason: fmt.Sprintf("%q is not a duration (e.g. \"10s\"; \"0s\" turns the check off)", f.LossCheck)})
	} else {
		cfg.LossCheck = d
	}
	errs = append(errs, cfg.Validate())
	if err := errors.Join(errs...); err != nil {
		return agent.Config{}, logFile{}, inFile(path, err)
	}
	return cfg, f.Log, nil
}

func checkLog(l logFile) error {
	var errs []error
	switch l.Level {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, &relay.FieldError{Key: "log.level", Reason: fmt.Sprintf("%q is not one of debug, info, warn, error", l.Level)})
	}
	switch l.Format {
	case "text", "json":
	default:
		errs = append(errs, &relay.FieldError{Key: "log.format", Reason: fmt.Sprintf("%q is not one of text, json", l.Format)})
	}
	return errors.Join(errs...)
}

func newLogger(l logFile) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(l.Level))
	opts := &slog.HandlerOptions{Level: level}
	// Every line passes the redactor: no apikey, token, cookie or authorization value is ever logged.
	if l.Format == "json" {
		return slog.New(redact.Handler(slog.NewJSONHandler(os.Stderr, opts)))
	}
	return slog.New(redact.Handler(slog.NewTextHandler(os.Stderr, opts)))
}
