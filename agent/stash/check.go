package stash

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"

	"go.yaml.in/yaml/v3"
)

// externalHostKey is the config.yml key that, when set, replaces the scheme
// and host of every URL Stash builds, for LAN clients as much as public ones.
const externalHostKey = "external_host"

// Verdict classifies Stash's external_host against the public URL.
type Verdict int

const (
	// Unset means external_host is absent or empty: the forwarded headers suffice and LAN access keeps working.
	Unset Verdict = iota
	// Equal means external_host is the public URL: it works, but LAN clients are sent to public URLs too.
	Equal
	// Different means external_host is some other URL: streams and images point there, not at the public URL.
	Different
)

// String returns "unset", "equal" or "different".
func (v Verdict) String() string {
	if names := [...]string{Unset: "unset", Equal: "equal", Different: "different"}; v >= 0 && int(v) < len(names) {
		return names[v]
	}
	return fmt.Sprintf("Verdict(%d)", int(v))
}

// Report is the outcome of Check.
type Report struct {
	Path         string  // the config.yml that was read
	PublicURL    string  // the public base URL, normalised (no trailing slash)
	ExternalHost string  // external_host as written in config.yml; "" when unset
	Verdict      Verdict // how ExternalHost compares with PublicURL
	Message      string  // what this means for the owner, and what to change
}

// OK reports whether the published Stash will hand out working URLs (Unset or Equal).
func (r Report) OK() bool { return r.Verdict != Different }

// Check reads Stash's config.yml at path and compares its external_host with publicURL, a base URL without path (see PublicBase).
//
// Only the file is read: a STASH_EXTERNAL_HOST in Stash's own environment
// overrides it and cannot be seen from here.
func Check(path, publicURL string) (Report, error) {
	base, err := normalizeBase(publicURL)
	if err != nil {
		return Report{}, err
	}
	return check(path, base, base)
}

// CheckURL is Check for a route's public URL, which may have a prefix
// (https://example.com/stash): external_host is compared with its scheme
// and host, and the messages show the whole URL.
func CheckURL(path, publicURL string) (Report, error) {
	base, err := normalizeBase(PublicBase(publicURL))
	if err != nil {
		return Report{}, err
	}
	return check(path, base, strings.TrimRight(publicURL, "/"))
}

// check compares external_host with base; shown is the public URL as the messages name it.
func check(path, base, shown string) (Report, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Report{}, fmt.Errorf("read stash config: %w", err) // *PathError names the path
	}
	top, err := parseTop(data)
	if err != nil {
		return Report{}, fmt.Errorf("stash config %s: %w", path, err)
	}

	r := Report{Path: path, PublicURL: base}
	_, v := lookup(top, externalHostKey)
	switch {
	case v == nil || isEmpty(v):
		r.Verdict = Unset
		r.Message = fmt.Sprintf("external_host is not set in %s: good. Stash builds its URLs from the forwarded headers, "+
			"so %s and LAN access both work.", path, shown)
		return r, nil
	case v.Kind != yaml.ScalarNode:
		r.ExternalHost = "(not a URL)"
	default:
		r.ExternalHost = v.Value
	}

	if sameBase(r.ExternalHost, base) {
		r.Verdict = Equal
		r.Message = fmt.Sprintf("external_host in %s is %s, the public URL: this works, but LAN clients are "+
			"sent to public URLs too. To keep LAN URLs on the LAN, stop Stash, delete the external_host line, "+
			"and start Stash again.", path, r.ExternalHost)
		if strings.HasSuffix(r.ExternalHost, "/") {
			// Stash appends the prefix and paths to external_host as is.
			r.Message += fmt.Sprintf(" If you keep it, drop the trailing slash (%s: %s), or some URLs "+
				"come out with a double slash.", externalHostKey, base)
		}
		return r, nil
	}
	r.Verdict = Different
	r.Message = fmt.Sprintf("external_host in %s is %s, but Stash is published at %s: streams, images and "+
		"downloads will point at %s. Stop Stash (it rewrites config.yml when it starts), then either delete the "+
		"external_host line (best: LAN access keeps working) or change it to\n\n    %s: %s\n\nand start Stash again.",
		path, r.ExternalHost, shown, r.ExternalHost, externalHostKey, base)
	return r, nil
}

// PublicBase drops any path, query and trailing slash from a public URL (https://h/stash -> https://h); it returns publicURL unchanged if it does not parse.
func PublicBase(publicURL string) string {
	u, err := url.Parse(publicURL)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return publicURL
	}
	return u.Scheme + "://" + u.Host
}

// normalizeBase validates a public base URL and returns it without a
// trailing slash, the form Stash needs: it appends the prefix and paths to
// external_host as they are, so a trailing slash would double.
func normalizeBase(publicURL string) (string, error) {
	u, err := url.Parse(publicURL)
	if err != nil {
		return "", fmt.Errorf("public URL: %w", err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return "", fmt.Errorf("public URL %q: scheme must be http or https", publicURL)
	case u.Host == "" || u.Opaque != "":
		return "", fmt.Errorf("public URL %q has no host", publicURL)
	case u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.ForceQuery:
		return "", fmt.Errorf("public URL %q: want scheme and host only", publicURL)
	case u.Path != "" && u.Path != "/":
		return "", fmt.Errorf("public URL %q has a path; external_host is scheme and host only (use PublicBase)", publicURL)
	}
	return u.Scheme + "://" + u.Host, nil
}

// sameBase compares two base URLs: trailing slash ignored, scheme and host
// case-insensitive, an explicit default port equal to none.
func sameBase(a, b string) bool {
	ua, errA := url.Parse(strings.TrimRight(a, "/"))
	ub, errB := url.Parse(strings.TrimRight(b, "/"))
	if errA != nil || errB != nil || ua.Host == "" || ub.Host == "" {
		return strings.EqualFold(strings.TrimRight(a, "/"), strings.TrimRight(b, "/"))
	}
	return strings.EqualFold(ua.Scheme, ub.Scheme) &&
		strings.EqualFold(hostPort(ua), hostPort(ub)) &&
		ua.Path == ub.Path && ua.RawQuery == ub.RawQuery && ua.Fragment == ub.Fragment &&
		ua.User.String() == ub.User.String()
}

// hostPort returns u's host with the scheme's default port removed.
func hostPort(u *url.URL) string {
	port := u.Port()
	if port == "" ||
		port == "80" && strings.EqualFold(u.Scheme, "http") ||
		port == "443" && strings.EqualFold(u.Scheme, "https") {
		return u.Hostname()
	}
	return net.JoinHostPort(u.Hostname(), port)
}

// parseTop parses config.yml and returns its top-level mapping, or nil for
// an empty document (Stash treats an empty config as a new system).
func parseTop(data []byte) (*yaml.Node, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("malformed YAML: %w", err)
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return nil, nil
	}
	top := doc.Content[0]
	switch {
	case isEmpty(top):
		return nil, nil
	case top.Kind != yaml.MappingNode:
		return nil, fmt.Errorf("top level is %s, not a mapping of settings", kindName(top.Kind))
	}
	// Decoding the node tree finds what parsing alone lets through, such
	// as a key defined twice.
	var v any
	if err := top.Decode(&v); err != nil {
		return nil, fmt.Errorf("malformed YAML: %w", err)
	}
	return top, nil
}

// lookup finds key in the top-level mapping m (nil is empty) and returns its
// key and value nodes, aliases resolved, or nils.
func lookup(m *yaml.Node, key string) (k, v *yaml.Node) {
	if m == nil {
		return nil, nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if kn := m.Content[i]; kn.Kind == yaml.ScalarNode && kn.Value == key {
			v := m.Content[i+1]
			for v.Kind == yaml.AliasNode && v.Alias != nil {
				v = v.Alias
			}
			return kn, v
		}
	}
	return nil, nil
}

// isEmpty reports whether n is a null or empty scalar, which Stash reads as "".
func isEmpty(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && (n.ShortTag() == "!!null" || n.Value == "")
}

func kindName(k yaml.Kind) string {
	switch k {
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return "a single value"
	case yaml.AliasNode:
		return "an alias"
	}
	return fmt.Sprintf("YAML kind %d", k)
}
