package stash

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const public = "https://stash.example.com"

func TestCheckUnset(t *testing.T) {
	for name, extra := range map[string]string{
		"absent":       "",
		"null":         "external_host:\n",
		"tilde":        "external_host: ~\n",
		"empty string": "external_host: \"\"\n",
	} {
		t.Run(name, func(t *testing.T) {
			p := writeConfig(t, sampleConfig+extra, 0o600)
			r, err := Check(p, public)
			if err != nil {
				t.Fatal(err)
			}
			if r.Verdict != Unset || !r.OK() || r.ExternalHost != "" {
				t.Fatalf("got %v ok=%v host=%q, want unset", r.Verdict, r.OK(), r.ExternalHost)
			}
			if r.Path != p || r.PublicURL != public || !strings.Contains(r.Message, "not set") {
				t.Fatalf("report %+v", r)
			}
		})
	}
}

func TestCheckEqual(t *testing.T) {
	for _, tc := range []struct{ configured, public string }{
		{"https://stash.example.com", "https://stash.example.com"},
		{"https://stash.example.com/", "https://stash.example.com"},
		{"https://stash.example.com", "https://stash.example.com/"},
		{"https://stash.example.com/", "https://stash.example.com/"},
		{"HTTPS://Stash.Example.COM", "https://stash.example.com"},
		{"https://stash.example.com:443", "https://stash.example.com"},
		{"http://stash.example.com:8080", "http://STASH.example.com:8080/"},
		{"'https://stash.example.com'", "https://stash.example.com"},
	} {
		t.Run(tc.configured+" vs "+tc.public, func(t *testing.T) {
			p := writeConfig(t, sampleConfig+"external_host: "+tc.configured+"\n", 0o600)
			r, err := Check(p, tc.public)
			if err != nil {
				t.Fatal(err)
			}
			if r.Verdict != Equal || !r.OK() {
				t.Fatalf("got %v, want equal: %s", r.Verdict, r.Message)
			}
			if !strings.Contains(r.Message, "LAN") {
				t.Fatalf("message does not warn about LAN clients: %s", r.Message)
			}
			if slash := strings.HasSuffix(r.ExternalHost, "/"); slash != strings.Contains(r.Message, "trailing slash") {
				t.Fatalf("trailing slash %v, message: %s", slash, r.Message)
			}
		})
	}
}

func TestCheckDifferent(t *testing.T) {
	for _, configured := range []string{
		"http://192.168.1.20:9999",
		"http://stash.example.com", // https published: mixed content
		"https://stash.example.com:8443",
		"https://old.example.com",
		"https://stash.example.com/stash",
		"stash.example.com",
		"[https://stash.example.com]",
	} {
		t.Run(configured, func(t *testing.T) {
			p := writeConfig(t, "external_host: "+configured+" # set for the old proxy\n"+sampleConfig, 0o600)
			r, err := Check(p, public)
			if err != nil {
				t.Fatal(err)
			}
			if r.Verdict != Different || r.OK() {
				t.Fatalf("got %v ok=%v, want different", r.Verdict, r.OK())
			}
			if !strings.Contains(r.Message, "\n    external_host: https://stash.example.com\n") {
				t.Fatalf("message lacks the line to write:\n%s", r.Message)
			}
			if !strings.Contains(r.Message, p) {
				t.Fatalf("message does not name the file:\n%s", r.Message)
			}
		})
	}
}

func TestCheckErrors(t *testing.T) {
	dir := t.TempDir()
	notDir := filepath.Join(dir, "file")
	if err := os.WriteFile(notDir, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, path string
		is         error
		want       string
	}{
		{"missing", filepath.Join(dir, "nope", "config.yml"), fs.ErrNotExist, "no such file"},
		{"directory", dir, nil, "is a directory"},
		{"parent is a file", filepath.Join(notDir, "config.yml"), nil, "not a directory"},
		{"malformed", writeConfig(t, "stash:\n  - path: /data/\n   excludevideo: [false\nport: 9999\n", 0o600), nil, "malformed YAML"},
		{"tab indented", writeConfig(t, "stash:\n\t- path: /data/\n", 0o600), nil, "malformed YAML"},
		{"duplicate key", writeConfig(t, "port: 9999\nport: 9998\n", 0o600), nil, "malformed YAML"},
		{"list", writeConfig(t, "- stash\n- port\n", 0o600), nil, "not a mapping"},
		{"scalar", writeConfig(t, "stash is configured elsewhere\n", 0o600), nil, "not a mapping"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Check(tc.path, public)
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tc.path) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q should name %s and say %q", err, tc.path, tc.want)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Fatalf("error %v is not %v", err, tc.is)
			}
		})
	}
}

func TestCheckEmptyFile(t *testing.T) {
	for _, content := range []string{"", "# nothing yet\n", "---\n"} {
		r, err := Check(writeConfig(t, content, 0o600), public)
		if err != nil || r.Verdict != Unset {
			t.Fatalf("%q: %v %v, want unset", content, r.Verdict, err)
		}
	}
}

func TestCheckBadPublicURL(t *testing.T) {
	p := writeConfig(t, sampleConfig, 0o600)
	for _, u := range []string{"", "stash.example.com", "ftp://stash.example.com", "https://stash.example.com/stash", "https://stash.example.com?x=1", "https://user@stash.example.com", "https://"} {
		if _, err := Check(p, u); err == nil {
			t.Errorf("Check(%q) accepted the public URL", u)
		}
	}
}

func TestPublicBase(t *testing.T) {
	for in, want := range map[string]string{
		"https://stash.example.com":              "https://stash.example.com",
		"https://stash.example.com/":             "https://stash.example.com",
		"https://home.example.com/stash":         "https://home.example.com",
		"https://home.example.com/stash/":        "https://home.example.com",
		"http://home.example.com:8080/stash?x=1": "http://home.example.com:8080",
		"https://[2001:db8::1]:8443/stash":       "https://[2001:db8::1]:8443",
		"not a url":                              "not a url",
	} {
		if got := PublicBase(in); got != want {
			t.Errorf("PublicBase(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestVerdictString(t *testing.T) {
	if Unset.String() != "unset" || Equal.String() != "equal" || Different.String() != "different" {
		t.Fatal("verdict names")
	}
}
