package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// buildLine says how this binary was built: the Go version, the platform,
// and whether it links to the C library (a cgo build needs the glibc it was
// built against, which older NAS systems and musl distributions lack).
func buildLine() string {
	cgo := "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "CGO_ENABLED" {
				cgo = s.Value
			}
		}
	}
	line := fmt.Sprintf("built with %s for %s/%s, CGO_ENABLED=%s", runtime.Version(), runtime.GOOS, runtime.GOARCH, cgo)
	switch {
	case cgo == "1":
		return line + " (dynamically linked to the C library; `make build` gives a static binary)"
	case cgo == "0" && runtime.GOOS == "linux":
		return line + " (static binary)"
	}
	return line
}
