package main

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
	"golang.org/x/net/publicsuffix"

	"github.com/burrow-tunnel/burrow/internal/config"
)

// The checks here are about what a person writes in relay.yaml and
// agent.yaml; the relay and agent packages validate what any caller hands
// them (the demo, for one, grants localhost).

// minTokenLen is the shortest token agent.yaml may hold: `burrow token new`
// prints 43 characters.
const minTokenLen = 16

// checkRelayFile finds what relay.yaml may not say although relay.Config takes it.
func checkRelayFile(f *relayFile) error {
	var errs config.Errors
	for i, a := range f.Agents {
		for j, h := range a.Hosts {
			if why := publicNameProblem(h); why != "" {
				errs.Add(fmt.Sprintf("agents[%d].hosts[%d]", i, j), "%s", why)
			}
		}
	}
	return errs.Join()
}

// publicNameProblem says why a granted host cannot be a public name, or "".
func publicNameProblem(h string) string {
	name, wild := strings.CutPrefix(h, "*.")
	labels := strings.Split(name, ".")
	last := labels[len(labels)-1]
	if _, err := netip.ParseAddr(name); err == nil {
		return fmt.Sprintf("%q is an IP address: grant a DNS name that points at this relay (e.g. \"stash.example.com\"); certificates and routes are by name", h)
	}
	if _, err := strconv.Atoi(last); err == nil {
		return fmt.Sprintf("%q is not a host name: hosts is a list of DNS names, e.g. hosts: [\"stash.example.com\"]", h)
	}
	if name == "localhost" || strings.HasSuffix(name, ".localhost") {
		return fmt.Sprintf("%q names the visitor's own machine, never this relay: grant a public DNS name (e.g. \"stash.example.com\")", h)
	}
	if suffix, _ := publicsuffix.PublicSuffix(name); suffix == name {
		if wild {
			return fmt.Sprintf("%q would let the agent publish any name under %q, a public suffix: grant a wildcard under your own domain (e.g. \"*.home.example.com\")", h, name)
		}
		return fmt.Sprintf("%q is a public suffix, not a host: grant a name under your own domain (e.g. \"stash.example.com\")", h)
	}
	return ""
}

// checkAgentFile finds what agent.yaml may not say although agent.Config takes it.
func checkAgentFile(f *agentFile) error {
	var errs config.Errors
	if n := len(f.Token); n > 0 && n < minTokenLen {
		unit := "characters"
		if n == 1 {
			unit = "character"
		}
		errs.Add("token", "is %d %s long, too short to keep the relay to you: use the token `burrow token new` prints (43 characters), and its token_sha256 in relay.yaml", n, unit)
	}
	for i, r := range f.Routes {
		if strings.HasPrefix(r.Service, "tcp://") {
			errs.Add(fmt.Sprintf("routes[%d].service", i), "%q: the relay has no public TCP listener for tcp:// routes; publish an HTTP service as http://host:port", r.Service)
		}
	}
	return errs.Join()
}

// tokenHashProblem explains a token_sha256 that does not parse; a token
// pasted in its place is recognised, and its hash given.
func tokenHashProblem(s string) error {
	s = strings.TrimSpace(s)
	if b, err := base64.RawURLEncoding.DecodeString(s); err == nil && len(b) == 32 {
		sum := sha256.Sum256([]byte(s))
		return fmt.Errorf("this is the token itself, which belongs in agent.yaml: relay.yaml takes its hash, token_sha256: %q (the relay never needs the token)", hex.EncodeToString(sum[:]))
	}
	return errors.New("must be 64 hex digits (the token_sha256 printed by `burrow token new`)")
}

// parserError matches the messages of YAML parser errors, whose line
// number go-yaml counts from 0 (its scanner errors count from 1).
var parserError = regexp.MustCompile(`^yaml: (?:line (\d+): )?((?:did not find expected|found undefined tag handle|found duplicate|found incompatible).*)$`)

// checkYAML parses data and returns its syntax error with the line counted
// from 1, or nil.
func checkYAML(data []byte) error {
	var v any
	err := yaml.Unmarshal(data, &v)
	if err == nil {
		return nil
	}
	msg := err.Error()
	if m := parserError.FindStringSubmatch(msg); m != nil {
		line := 0
		if m[1] != "" {
			line, _ = strconv.Atoi(m[1])
		}
		msg = fmt.Sprintf("line %d: %s", line+1, m[2])
	} else {
		msg = strings.TrimPrefix(msg, "yaml: ")
	}
	return fmt.Errorf("not valid YAML: %s", msg)
}

// envName is the environment variable that sets key ("log.level" → BURROW_LOG_LEVEL).
func envName(key string) string {
	return "BURROW_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// fromEnvironment names the environment variable, not the file, in each
// error about a key the environment set.
func fromEnvironment(path string, err error) error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var errs []error
		for _, e := range j.Unwrap() {
			errs = append(errs, fromEnvironment(path, e))
		}
		return errors.Join(errs...)
	}
	var fe *config.FieldError
	if errors.As(err, &fe) && fe.File == path {
		if name := envName(fe.Key); os.Getenv(name) != "" {
			return &config.FieldError{File: "environment variable " + name, Key: fe.Key, Reason: fe.Reason + " (the environment overrides " + path + ")"}
		}
	}
	return err
}

// didYouMean suggests the known key closest to an unknown one, or "".
func didYouMean(out any, key string) string {
	parent, last := "", key
	if i := strings.LastIndex(key, "."); i >= 0 {
		parent, last = key[:i], key[i+1:]
	}
	t := typeAt(reflect.TypeOf(out), parent)
	if t == nil {
		return ""
	}
	best, bestD := "", 3 // farther than two edits is no suggestion
	for _, k := range keysOf(t) {
		if d := editDistance(last, k); d < bestD {
			best, bestD = k, d
		}
	}
	if best == "" || bestD > max(1, len(last)/3) {
		return ""
	}
	if parent != "" {
		best = parent + "." + best
	}
	return best
}

var index = regexp.MustCompile(`\[\d+\]`)

// typeAt is the struct type the key path (routes[0].stash) leads to in t, or nil.
func typeAt(t reflect.Type, path string) reflect.Type {
	t = structOf(t)
	if path == "" || t == nil {
		return t
	}
	for _, part := range strings.Split(index.ReplaceAllString(path, ""), ".") {
		f, ok := fieldByKey(t, part)
		if !ok {
			return nil
		}
		if t = structOf(f.Type); t == nil {
			return nil
		}
	}
	return t
}

// structOf is t with pointers, slices and maps taken off, if a struct.
func structOf(t reflect.Type) reflect.Type {
	for t != nil && (t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Map) {
		t = t.Elem()
	}
	if t == nil || t.Kind() != reflect.Struct {
		return nil
	}
	return t
}

// keysOf lists the file keys of struct t, squashed structs included.
func keysOf(t reflect.Type) []string {
	var keys []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("mapstructure"), ",")
		switch {
		case name == "-":
		case opts == "squash":
			if st := structOf(f.Type); st != nil {
				keys = append(keys, keysOf(st)...)
			}
		case name != "":
			keys = append(keys, name)
		}
	}
	return keys
}

func fieldByKey(t reflect.Type, key string) (reflect.StructField, bool) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("mapstructure"), ",")
		if opts == "squash" {
			if st := structOf(f.Type); st != nil {
				if sf, ok := fieldByKey(st, key); ok {
					return sf, true
				}
			}
			continue
		}
		if name == key {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
