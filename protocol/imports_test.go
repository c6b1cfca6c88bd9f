package protocol_test

import (
	"go/build"
	"strings"
	"testing"
)

// The wire protocol is read in one sitting: its package imports only the
// standard library. Transports and their tuning live in protocol/transport.
func TestImportsOnlyStandardLibrary(t *testing.T) {
	pkg, err := build.ImportDir(".", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, imp := range pkg.Imports {
		if first, _, _ := strings.Cut(imp, "/"); strings.Contains(first, ".") {
			t.Errorf("protocol imports %s; only the standard library belongs here", imp)
		}
	}
	if len(pkg.Imports) == 0 {
		t.Fatal("found no imports at all: the check reads the wrong directory")
	}
}
