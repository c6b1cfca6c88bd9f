package main

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const agentRest = "relay: r.example:7835\nroutes:\n  - host: a.example\n    service: http://127.0.0.1:1\n"

// writeAgent writes agent.yaml (0644) with head before the usual keys, and
// the token file next to it when tokenBody is not empty.
func writeAgent(t *testing.T, head, tokenBody string, tokenMode os.FileMode) (cfgPath, tokenPath string) {
	t.Helper()
	dir := t.TempDir()
	cfgPath = filepath.Join(dir, "agent.yaml")
	if err := os.WriteFile(cfgPath, []byte(head+agentRest), 0o644); err != nil {
		t.Fatal(err)
	}
	tokenPath = filepath.Join(dir, "agent.token")
	if tokenBody != "" {
		if err := os.WriteFile(tokenPath, []byte(tokenBody), tokenMode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(tokenPath, tokenMode); err != nil { // past the umask
			t.Fatal(err)
		}
	}
	return cfgPath, tokenPath
}

func TestTokenFile(t *testing.T) {
	t.Setenv("CREDENTIALS_DIRECTORY", "")
	for _, c := range []struct {
		name, head string
	}{
		{"absolute", "token_file: TOKEN\n"},
		{"relative to agent.yaml", "token_file: agent.token\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfgPath, tokenPath := writeAgent(t, "", "s3cret-token-0123456789\n", 0o600)
			if err := os.WriteFile(cfgPath, []byte(strings.ReplaceAll(c.head, "TOKEN", tokenPath)+agentRest), 0o644); err != nil {
				t.Fatal(err)
			}
			cfg, _, src, err := loadAgentFile(cfgPath)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Token != "s3cret-token-0123456789" {
				t.Errorf("token = %q, want the file's content without its newline", cfg.Token)
			}
			if src.File != tokenPath || src.InConfig {
				t.Errorf("token source = %+v, want %s", src, tokenPath)
			}
		})
	}
}

func TestTokenFileErrors(t *testing.T) {
	t.Setenv("CREDENTIALS_DIRECTORY", "")
	cases := []struct {
		name, head, body string
		want             []string
	}{
		{"both", "token: abc\ntoken_file: TOKEN\n", "abc\n", []string{"token_file: set together with token", "keep one of them"}},
		{"missing", "token_file: TOKEN\n", "", []string{"token_file:", "no such file", "burrow token new"}},
		{"empty", "token_file: TOKEN\n", "\n\n", []string{"token_file:", "is empty"}},
		{"yaml inside", "token_file: TOKEN\n", "token: abc\n", []string{"token_file:", "only the token"}},
		{"neither", "", "", []string{"token: is required: token, token_file, or the systemd credential burrow-token"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfgPath, tokenPath := writeAgent(t, "", c.body, 0o600)
			if err := os.WriteFile(cfgPath, []byte(strings.ReplaceAll(c.head, "TOKEN", tokenPath)+agentRest), 0o644); err != nil {
				t.Fatal(err)
			}
			_, _, err := loadAgentConfig(cfgPath)
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range append([]string{cfgPath}, c.want...) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not say %q: %v", w, err)
				}
			}
		})
	}
}

func TestTokenFromCredential(t *testing.T) {
	cfgPath, _ := writeAgent(t, "", "", 0)
	creds := t.TempDir()
	if err := os.WriteFile(filepath.Join(creds, "burrow-token"), []byte("from-systemd-0123456789\n"), 0o400); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CREDENTIALS_DIRECTORY", creds)
	cfg, _, src, err := loadAgentFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Token != "from-systemd-0123456789" || src.File != filepath.Join(creds, "burrow-token") {
		t.Errorf("token %q from %+v, want the credential's", cfg.Token, src)
	}

	// An inline token wins over the credential.
	cfgPath, _ = writeAgent(t, "token: inline-token-0123456789\n", "", 0)
	if cfg, _, src, err := loadAgentFile(cfgPath); err != nil || cfg.Token != "inline-token-0123456789" || !src.InConfig {
		t.Errorf("inline token with a credential: %q from %+v, %v; want agent.yaml's", cfg.Token, src, err)
	}
}

func TestTokenReadableWarning(t *testing.T) {
	t.Setenv("CREDENTIALS_DIRECTORY", "")
	warn := func(src tokenSource) string {
		var buf bytes.Buffer
		warnTokenReadable(slog.New(slog.NewTextHandler(&buf, nil)), src)
		return buf.String()
	}

	// A world-readable agent.yaml with the token inline.
	cfgPath, _ := writeAgent(t, "token: inline-token-0123456789\n", "", 0)
	_, _, src, err := loadAgentFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	got := warn(src)
	for _, w := range []string{"readable by other users", "file=" + cfgPath, "chmod 600 " + cfgPath, "token_file"} {
		if !strings.Contains(got, w) {
			t.Errorf("warning for agent.yaml 0644 does not say %q: %s", w, got)
		}
	}

	// A group-readable token file; a private one gives no warning.
	for _, c := range []struct {
		mode os.FileMode
		warn bool
	}{{0o640, true}, {0o600, false}, {0o400, false}} {
		cfgPath, tokenPath := writeAgent(t, "", "tok-0123456789abcdef\n", c.mode)
		if err := os.WriteFile(cfgPath, []byte("token_file: agent.token\n"+agentRest), 0o644); err != nil {
			t.Fatal(err)
		}
		_, _, src, err := loadAgentFile(cfgPath)
		if err != nil {
			t.Fatal(err)
		}
		got := warn(src)
		if c.warn != strings.Contains(got, "chmod 600 "+tokenPath) {
			t.Errorf("token file %04o: warning %q, want one: %v", c.mode, got, c.warn)
		}
	}
}
