package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/burrow-tunnel/burrow/internal/testutil"
)

// tokenLineRE is agent.yaml's inline token line, as writeConfigs writes it.
var tokenLineRE = regexp.MustCompile(`(?m)^token: .*\n`)

// TestAgentTokenFromFile runs the agent against a real relay with agent.yaml
// holding no token: first with token_file, then with the token in a systemd
// credential ($CREDENTIALS_DIRECTORY/burrow-token). Each must connect and
// serve; a token file others can read is warned about, naming the fix.
func TestAgentTokenFromFile(t *testing.T) {
	e := newEnv(t, "tcp")
	if err := e.agent.stop(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	body, err := os.ReadFile(e.agentConfig)
	if err != nil {
		t.Fatal(err)
	}
	noToken := tokenLineRE.ReplaceAllString(string(body), "")
	if noToken == string(body) {
		t.Fatalf("no token line in %s:\n%s", e.agentConfig, body)
	}
	// agent.yaml without a secret may be readable by all, as a DynamicUser= unit needs.
	if err := os.WriteFile(e.agentConfig, []byte(noToken), 0o644); err != nil {
		t.Fatal(err)
	}

	// run starts the agent with env added, waits until it serves, stops it,
	// and returns its log.
	run := func(t *testing.T, env ...string) string {
		t.Helper()
		log := &testutil.SyncBuffer{}
		cmd := exec.Command(burrowBin, "agent", "--config", e.agentConfig)
		cmd.Env = env
		p, err := startCmd("agent", log, cmd)
		if err != nil {
			t.Fatal(err)
		}
		defer func() {
			if err := p.stop(syscall.SIGTERM); err != nil {
				t.Error(err)
			}
			if t.Failed() {
				t.Logf("agent log:\n%s", log)
			}
		}()
		if d, err := e.waitReady(readyTimeout); err != nil {
			t.Fatalf("agent not serving after %v: %v", d, err)
		}
		if status, body := e.mustGet("/", nil); status != 200 || len(body) == 0 {
			t.Errorf("GET / through the agent: %d, %d bytes", status, len(body))
		}
		return log.String()
	}

	t.Run("token_file", func(t *testing.T) {
		tokenPath := filepath.Join(e.dir, "agent.token")
		writeToken(t, tokenPath, e.token, 0o640)
		if err := os.WriteFile(e.agentConfig, []byte(noToken+"token_file: agent.token\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		log := run(t)
		for _, w := range []string{"readable by other users", "file=" + tokenPath, `fix="chmod 600 ` + tokenPath + `"`} {
			if !strings.Contains(log, w) {
				t.Errorf("agent log does not say %q for a token file of mode 0640", w)
			}
		}

		writeToken(t, tokenPath, e.token, 0o600)
		if log := run(t); strings.Contains(log, "readable by other users") {
			t.Errorf("a token file of mode 0600 is warned about:\n%s", log)
		}
	})

	t.Run("systemd credential", func(t *testing.T) {
		if err := os.WriteFile(e.agentConfig, []byte(noToken), 0o644); err != nil {
			t.Fatal(err)
		}
		creds := t.TempDir()
		writeToken(t, filepath.Join(creds, "burrow-token"), e.token, 0o400)
		if log := run(t, "CREDENTIALS_DIRECTORY="+creds); strings.Contains(log, "readable by other users") {
			t.Errorf("a credential of mode 0400 is warned about:\n%s", log)
		}
	})

	t.Run("token and token_file", func(t *testing.T) {
		both := filepath.Join(e.dir, "both.yaml")
		writeFile(t, both, noToken+"token: x\ntoken_file: agent.token\n")
		msg := runBurrowFails(t, "agent", "--config", both)
		for _, w := range []string{both, "token_file: set together with token", "keep one of them"} {
			if !strings.Contains(msg, w) {
				t.Errorf("stderr does not say %q:\n%s", w, msg)
			}
		}
	})
}

// writeToken writes the token, with a newline as an editor would, in mode.
func writeToken(t *testing.T, path, token string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(token+"\n"), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // past the umask, and over an older file's mode
		t.Fatal(err)
	}
}
