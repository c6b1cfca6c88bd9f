//go:build !linux

package transport

import (
	"errors"
	"fmt"
)

func setCongestion(_ uintptr, name string) error {
	return fmt.Errorf("TCP congestion control %q: %w", name, errors.ErrUnsupported)
}

// CongestionUsable reports whether TCP sockets may use the congestion
// control name; only Linux lets a socket choose.
func CongestionUsable(name string) error { return setCongestion(0, name) }

func setNotSentLowat(fd uintptr, n int) error { return nil }
