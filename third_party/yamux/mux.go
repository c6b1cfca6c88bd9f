package yamux

import (
	"fmt"
	"io"
	"os"
	"time"
)

// Config is used to tune the Yamux session
type Config struct {
	// AcceptBacklog is used to limit how many streams may be
	// waiting an accept.
	AcceptBacklog int

	// MaxIncomingStreams, if above zero, caps the streams the peer may
	// have open at once (Burrow): one over it is reset as it arrives, its
	// data dropped unread, until one of the others is freed (closed both
	// ways, or reset). Unlike AcceptBacklog, streams already accepted
	// count too, so a peer cannot open streams in a loop and have each one
	// buffer a window before the application gets to reset it.
	MaxIncomingStreams int

	// EnableKeepalive is used to do a period keep alive
	// messages using a ping.
	EnableKeepAlive bool

	// KeepAliveInterval is how often to perform the keep alive
	KeepAliveInterval time.Duration

	// ConnectionWriteTimeout is meant to be a "safety valve" timeout after
	// we which will suspect a problem with the underlying connection and
	// close it. This is only applied to writes, where's there's generally
	// an expectation that things will move along quickly.
	ConnectionWriteTimeout time.Duration

	// MaxStreamWindowSize is used to control the maximum
	// window size that we allow for a stream.
	MaxStreamWindowSize uint32

	// InitialStreamWindowSize is the receive window a stream grants when it
	// is opened or accepted (Burrow). From there the window doubles, up to
	// MaxStreamWindowSize, each time the reader consumes half of it within
	// two round trips: a stream whose reader keeps up reaches the window its
	// path needs, and one whose reader stops holds no more than it had.
	// Setting it to MaxStreamWindowSize grants the whole window at once, as
	// upstream yamux does. Zero means 256 KiB, the window the yamux spec
	// has each side assume at first; it cannot be smaller.
	InitialStreamWindowSize uint32

	// WindowBudget, if set, is asked before a stream's receive window grows
	// past InitialStreamWindowSize, and given back what it granted when the
	// stream is freed (Burrow). A denied stream keeps its window and still
	// works, at the throughput that window allows. One budget may be shared
	// by many sessions to cap what all their streams may buffer.
	WindowBudget WindowBudget

	// StreamOpenTimeout is the maximum amount of time that a stream will
	// be allowed to remain in pending state while waiting for an ack from the peer.
	// Once the timeout is reached the session will be gracefully closed.
	// A zero value disables the StreamOpenTimeout allowing unbounded
	// blocking on OpenStream calls.
	StreamOpenTimeout time.Duration

	// StreamCloseTimeout is the maximum time that a stream will allowed to
	// be in a half-closed state when `Close` is called before forcibly
	// closing the connection. Forcibly closed connections will empty the
	// receive buffer, drop any future packets received for that stream,
	// and send a RST to the remote side.
	StreamCloseTimeout time.Duration

	// LogOutput is used to control the log destination. Either Logger or
	// LogOutput can be set, not both.
	LogOutput io.Writer

	// Logger is used to pass in the logger to be used. Either Logger or
	// LogOutput can be set, not both.
	Logger Logger
}

// WindowBudget is memory that stream receive windows grow into (Burrow).
// Its methods are called concurrently, with a stream's lock held: they must
// return quickly and not call into the session.
type WindowBudget interface {
	// Reserve takes n bytes from the budget and reports whether it could.
	Reserve(n int) bool
	// Release gives back n bytes that Reserve took.
	Release(n int)
}

func (c *Config) Clone() *Config {
	c2 := *c
	return &c2
}

// DefaultConfig is used to return a default configuration
func DefaultConfig() *Config {
	return &Config{
		AcceptBacklog:          256,
		EnableKeepAlive:        true,
		KeepAliveInterval:      30 * time.Second,
		ConnectionWriteTimeout: 10 * time.Second,
		MaxStreamWindowSize:    initialStreamWindow,
		StreamCloseTimeout:     5 * time.Minute,
		StreamOpenTimeout:      75 * time.Second,
		LogOutput:              os.Stderr,

		// Burrow: the same window as upstream's, so nothing grows by default.
		InitialStreamWindowSize: initialStreamWindow,
	}
}

// VerifyConfig is used to verify the sanity of configuration
func VerifyConfig(config *Config) error {
	if config.AcceptBacklog <= 0 {
		return fmt.Errorf("backlog must be positive")
	}
	if config.KeepAliveInterval == 0 {
		return fmt.Errorf("keep-alive interval must be positive")
	}
	if config.MaxStreamWindowSize < initialStreamWindow {
		return fmt.Errorf("MaxStreamWindowSize must be larger than %d", initialStreamWindow)
	}
	if w := config.InitialStreamWindowSize; w != 0 && (w < initialStreamWindow || w > config.MaxStreamWindowSize) {
		return fmt.Errorf("InitialStreamWindowSize must be 0 or between %d and MaxStreamWindowSize (%d)", initialStreamWindow, config.MaxStreamWindowSize)
	}
	if config.LogOutput != nil && config.Logger != nil {
		return fmt.Errorf("both Logger and LogOutput may not be set, select one")
	} else if config.LogOutput == nil && config.Logger == nil {
		return fmt.Errorf("one of Logger or LogOutput must be set, select one")
	}
	return nil
}

// initialWindow is the receive window a new stream grants (Burrow).
func (c *Config) initialWindow() uint32 {
	if c.InitialStreamWindowSize == 0 {
		return initialStreamWindow
	}
	return c.InitialStreamWindowSize
}

// autoTunes reports whether stream windows may grow (Burrow).
func (c *Config) autoTunes() bool {
	return c.initialWindow() < c.MaxStreamWindowSize
}

// Server is used to initialize a new server-side connection.
// There must be at most one server-side connection. If a nil config is
// provided, the DefaultConfiguration will be used.
func Server(conn io.ReadWriteCloser, config *Config) (*Session, error) {
	if config == nil {
		config = DefaultConfig()
	}
	if err := VerifyConfig(config); err != nil {
		return nil, err
	}
	return newSession(config, conn, false), nil
}

// Client is used to initialize a new client-side connection.
// There must be at most one client-side connection.
func Client(conn io.ReadWriteCloser, config *Config) (*Session, error) {
	if config == nil {
		config = DefaultConfig()
	}

	if err := VerifyConfig(config); err != nil {
		return nil, err
	}
	return newSession(config, conn, true), nil
}
