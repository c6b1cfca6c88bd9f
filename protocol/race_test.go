//go:build race

package protocol_test

import "github.com/burrow-tunnel/burrow/protocol"

// Still more than one full stream window each way.
func init() { largeTransferSize = protocol.StreamWindow + 1<<20 }
