//go:build race

package transport_test

import "github.com/burrow-tunnel/burrow/protocol/transport"

// Still more than one full stream window each way.
func init() { largeTransferSize = transport.StreamWindow + 1<<20 }
