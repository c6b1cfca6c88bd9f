//go:build unix

package stash

import (
	"os"
	"syscall"
	"testing"
)

// The agent may run as root next to a Stash that does not: the edited file
// and its backup must stay Stash's, or Stash cannot rewrite its config.
func TestSetExternalHostKeepsOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give the file another owner")
	}
	p := writeConfig(t, sampleConfig, 0o600)
	if err := os.Chown(p, 1234, 2345); err != nil {
		t.Fatal(err)
	}
	mustSet(t, p)
	for _, f := range []string{p, p + ".bak"} {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if st.Uid != 1234 || st.Gid != 2345 {
			t.Errorf("%s owned by %d:%d, want 1234:2345", f, st.Uid, st.Gid)
		}
	}
}
