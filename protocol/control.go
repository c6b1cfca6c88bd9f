package protocol

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// MsgType identifies a control message.
type MsgType uint8

// Control message types.
const (
	MsgHello   MsgType = 1
	MsgWelcome MsgType = 2
	MsgReject  MsgType = 3
	// MsgPing and MsgPong are the session heartbeat on the control stream.
	MsgPing MsgType = 4
	MsgPong MsgType = 5
	// MsgGoAway says the sender is shutting down: it takes no new streams
	// on this session and ends it once its streams are done. Its body is a
	// GoAway.
	MsgGoAway MsgType = 6
	// MsgRoutes asks the relay, on a live session, to publish a new set of
	// routes (the agent reloaded its config). Its body is a RouteRequest;
	// the relay answers MsgRouteUpdate.
	MsgRoutes MsgType = 7
	// MsgRouteUpdate tells the agent which of its routes are published now:
	// the answer to MsgRoutes, or unasked when the relay's config changed.
	// Its body is a RouteUpdate.
	MsgRouteUpdate MsgType = 8
)

// FeatureRouteUpdates in a Hello says the agent takes MsgRouteUpdate on a
// live session; a relay that honours it lists it in the Welcome and takes
// MsgRoutes. Without it, a relay whose config changes an agent's routes
// ends that agent's sessions, and the agent connects anew.
const FeatureRouteUpdates = "route_updates"

// RouteRequest is the body of MsgRoutes: every route the agent wants
// published now, as in Hello.
type RouteRequest struct {
	// Seq is echoed in the RouteUpdate that answers it.
	Seq    uint64  `json:"seq"`
	Routes []Route `json:"routes"`
}

// RouteUpdate is the body of MsgRouteUpdate: the session's routes now, as
// in Welcome. Routes not listed are no longer published; data streams name
// the accepted ones by ID (a route kept keeps its ID).
type RouteUpdate struct {
	// Seq is the RouteRequest's it answers, or 0 when the relay's config changed.
	Seq      uint64          `json:"seq"`
	Accepted []AcceptedRoute `json:"accepted"`
	Refused  []RefusedRoute  `json:"refused,omitempty"`
}

// GoAway is the body of MsgGoAway.
type GoAway struct {
	Reason string `json:"reason"`
}

var msgTypeNames = [...]string{MsgHello: "hello", MsgWelcome: "welcome", MsgReject: "reject", MsgPing: "ping", MsgPong: "pong", MsgGoAway: "go away", MsgRoutes: "routes", MsgRouteUpdate: "route update"}

func (t MsgType) String() string {
	if int(t) < len(msgTypeNames) && msgTypeNames[t] != "" {
		return msgTypeNames[t]
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// FeatureDryRun in a Hello asks the relay to answer as it would, without
// publishing anything, and to close the session: tools use it to learn the
// public URLs while the agent itself keeps running.
const FeatureDryRun = "dry_run"

// Route is one route an agent asks the relay to publish.
type Route struct {
	Host   string `json:"host"`
	Prefix string `json:"prefix,omitempty"`
	// Access is the route's access policy, enforced by the relay; nil means open.
	Access *AccessPolicy `json:"access,omitempty"`
}

// Hello is the agent's first control message.
type Hello struct {
	// Version is the protocol version the agent speaks; a relay that does
	// not speak it answers Reject with RejectVersion and its own.
	Version int `json:"version"`
	// Features are optional behaviours the agent asks for (FeatureDryRun).
	Features []string `json:"features,omitempty"`
	// Token is the agent's secret; the relay keeps only its SHA-256.
	Token string `json:"token"`
	// Agent names the agent in the relay's logs.
	Agent string `json:"agent,omitempty"`
	// Routes are what the agent asks to publish: a host, and a path prefix or "".
	Routes []Route `json:"routes"`
}

// AcceptedRoute is a route the relay published, with the id that data streams carry.
type AcceptedRoute struct {
	ID     uint32 `json:"id"`
	Host   string `json:"host"`
	Prefix string `json:"prefix,omitempty"`
	// PublicURLs are the public base URLs of the route, prefix included, most preferred first.
	PublicURLs []string `json:"public_urls"`
}

// RefusedRoute is a route the relay would not publish, and why.
type RefusedRoute struct {
	Host   string `json:"host"`
	Prefix string `json:"prefix,omitempty"`
	Reason string `json:"reason"`
}

// Welcome is the relay's answer to an accepted Hello.
type Welcome struct {
	// Version is the protocol version the session speaks.
	Version int `json:"version"`
	// Features are the Hello's features the relay honours.
	Features []string `json:"features,omitempty"`
	// SessionID names the session in both sides' logs.
	SessionID string `json:"session_id"`
	// Agent is the agent's name as the relay's grant has it.
	Agent string `json:"agent"`
	// Accepted are the routes published; data streams name them by ID.
	Accepted []AcceptedRoute `json:"accepted"`
	// Refused are the routes not published, each with the reason.
	Refused []RefusedRoute `json:"refused,omitempty"`
	// HeartbeatMillis is the keepalive period the relay expects.
	HeartbeatMillis int64 `json:"heartbeat_ms"`
}

// Reject codes.
const (
	RejectBadToken = "invalid_token"
	RejectVersion  = "unsupported_version"
	RejectBadHello = "bad_hello"
	RejectNoRoutes = "no_routes"
)

// Reject is the relay's answer to a Hello it refuses.
type Reject struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	// Version is the newest protocol version the relay speaks.
	Version int `json:"version"`
}

// RejectError is the error an agent gets for a Reject.
type RejectError struct{ Reject Reject }

func (e *RejectError) Error() string {
	return fmt.Sprintf("relay refused the agent: %s: %s", e.Reject.Code, e.Reject.Message)
}

// heartbeat is the body of MsgPing and MsgPong.
//
// The agent pings every Welcome.HeartbeatMillis and the relay answers; either
// side that hears nothing for HeartbeatMisses periods ends the session. The
// padding keeps each ping's packet large enough (over 42 bytes) that a relay
// restarted under a QUIC agent answers it with a stateless reset: the agent
// then reconnects at once instead of after the QUIC idle timeout.
type heartbeat struct {
	Seq uint64 `json:"seq"`
	Pad string `json:"pad,omitempty"`
}

// HeartbeatPeriod is the heartbeat period the relay asks for.
const HeartbeatPeriod = 2 * time.Second

// HeartbeatMisses is how many periods of silence end a session.
const HeartbeatMisses = 3

const heartbeatPad = "................................................"

// writeHeartbeat writes a padded ping or pong.
func writeHeartbeat(w io.Writer, t MsgType, seq uint64) error {
	return WriteMessage(w, t, &heartbeat{Seq: seq, Pad: heartbeatPad})
}

const frameHeaderSize = 5

// WriteMessage writes one control frame.
func WriteMessage(w io.Writer, t MsgType, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("protocol: encode %s: %w", t, err)
	}
	if len(body) > MaxMessageSize {
		return fmt.Errorf("protocol: encode %s (%d bytes): %w", t, len(body), ErrMessageTooLarge)
	}
	buf := make([]byte, frameHeaderSize+len(body))
	buf[0] = byte(t)
	binary.BigEndian.PutUint32(buf[1:], uint32(len(body)))
	copy(buf[frameHeaderSize:], body)
	if _, err := w.Write(buf); err != nil {
		return fmt.Errorf("protocol: write %s: %w", t, err)
	}
	return nil
}

// ReadFrame reads one control frame and returns its type and raw body.
func ReadFrame(r io.Reader) (MsgType, []byte, error) {
	var hdr [frameHeaderSize]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, fmt.Errorf("protocol: read control frame: %w", err)
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if n > MaxMessageSize {
		return 0, nil, fmt.Errorf("protocol: control frame of %d bytes: %w", n, ErrMessageTooLarge)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return 0, nil, fmt.Errorf("protocol: read control body: %w", err)
	}
	return MsgType(hdr[0]), body, nil
}

// ReadHello reads the agent's Hello.
func ReadHello(r io.Reader) (*Hello, error) {
	var h Hello
	if err := readExpect(r, MsgHello, &h); err != nil {
		return nil, err
	}
	return &h, nil
}

// ReadAnswer reads the relay's answer to a Hello: a Welcome, or a *RejectError.
func ReadAnswer(r io.Reader) (*Welcome, error) {
	t, body, err := ReadFrame(r)
	if err != nil {
		return nil, err
	}
	switch t {
	case MsgWelcome:
		var w Welcome
		if err := decode(t, body, &w); err != nil {
			return nil, err
		}
		return &w, nil
	case MsgReject:
		var rj Reject
		if err := decode(t, body, &rj); err != nil {
			return nil, err
		}
		return nil, &RejectError{Reject: rj}
	}
	return nil, fmt.Errorf("%w: got %s, want welcome or reject", ErrUnexpectedMessage, t)
}

func readExpect(r io.Reader, want MsgType, v any) error {
	t, body, err := ReadFrame(r)
	if err != nil {
		return err
	}
	if t != want {
		return fmt.Errorf("%w: got %s, want %s", ErrUnexpectedMessage, t, want)
	}
	return decode(t, body, v)
}

// DecodeRouteRequest decodes the body of a MsgRoutes; a request without a
// sequence number is an error.
func DecodeRouteRequest(body []byte) (*RouteRequest, error) {
	var req RouteRequest
	if err := decode(MsgRoutes, body, &req); err != nil {
		return nil, err
	}
	if req.Seq == 0 {
		return nil, errors.New("protocol: route request without a sequence number")
	}
	return &req, nil
}

// DecodeRouteUpdate decodes the body of a MsgRouteUpdate.
func DecodeRouteUpdate(body []byte) (*RouteUpdate, error) {
	var u RouteUpdate
	if err := decode(MsgRouteUpdate, body, &u); err != nil {
		return nil, err
	}
	return &u, nil
}

func decode(t MsgType, body []byte, v any) error {
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("protocol: decode %s: %w", t, err)
	}
	return nil
}
