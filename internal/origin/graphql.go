package origin

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"
)

// GraphQLSubprotocol is the websocket subprotocol Stash's UI speaks on {prefix}/graphql.
const GraphQLSubprotocol = "graphql-transport-ws"

// maxGraphQLBody caps a POST /graphql body; the real queries are small.
const maxGraphQLBody = 1 << 20

type graphQLRequest struct {
	Query         string          `json:"query"`
	OperationName string          `json:"operationName,omitempty"`
	Variables     json.RawMessage `json:"variables,omitempty"`
}

// answer resolves the two queries the origin knows: version, and a scene's
// paths, which it builds from the request exactly as Stash does.
func (s *Server) answer(r *http.Request, query string) map[string]any {
	data := map[string]any{}
	if strings.Contains(query, "version") {
		data["version"] = map[string]string{"version": Version}
	}
	if len(data) == 0 || strings.Contains(query, "findScene") || strings.Contains(query, "paths") || strings.Contains(query, "urls") {
		base := s.baseURL(r)
		data["findScene"] = map[string]any{
			"id": "1",
			"paths": map[string]string{
				"stream":     base + "/scene/1/stream",
				"screenshot": base + "/scene/1/screenshot",
			},
		}
	}
	return map[string]any{"data": data}
}

func graphQLError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]any{"errors": []map[string]string{{"message": msg}}})
}

func (s *Server) serveGraphQLPost(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	var req graphQLRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxGraphQLBody)).Decode(&req); err != nil {
		graphQLError(w, http.StatusBadRequest, "json request body could not be decoded: "+err.Error())
		return
	}
	if req.Query == "" {
		graphQLError(w, http.StatusUnprocessableEntity, "no operation provided")
		return
	}
	writeJSON(w, http.StatusOK, s.answer(r, req.Query))
}

// serveGraphQLGet is the websocket endpoint, and a GET query for clients without one.
func (s *Server) serveGraphQLGet(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodHead {
		w.Header().Set("Allow", "GET, POST")
		http.Error(w, http.StatusText(http.StatusMethodNotAllowed), http.StatusMethodNotAllowed)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	if strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		s.serveGraphQLWebsocket(w, r)
		return
	}
	q := r.URL.Query().Get("query")
	if q == "" {
		graphQLError(w, http.StatusUnprocessableEntity, "no operation provided")
		return
	}
	writeJSON(w, http.StatusOK, s.answer(r, q))
}

// wsMessage is one graphql-transport-ws message.
type wsMessage struct {
	Type    string          `json:"type"`
	ID      string          `json:"id,omitempty"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

// graphql-transport-ws close codes.
const (
	wsBadRequest          websocket.StatusCode = 4400
	wsUnauthorized        websocket.StatusCode = 4401
	wsTooManyInits        websocket.StatusCode = 4429
	wsMaxGraphQLWSMessage                      = 1 << 20
)

// serveGraphQLWebsocket speaks the minimal graphql-transport-ws server side:
// connection_init → connection_ack, ping → pong, subscribe → next (echoing
// the payload) + complete. Like Stash's, it sends nothing on its own while
// idle and never closes a socket for idleness.
func (s *Server) serveGraphQLWebsocket(w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		Subprotocols:       []string{GraphQLSubprotocol},
		InsecureSkipVerify: true, // Stash accepts any Origin
	})
	if err != nil {
		s.log.Debug("websocket accept", "err", err) // Accept has answered
		return
	}
	defer c.CloseNow()
	defer s.obs.wsOpened()()

	if c.Subprotocol() != GraphQLSubprotocol {
		_ = c.Close(websocket.StatusPolicyViolation, "subprotocol "+GraphQLSubprotocol+" required")
		return
	}
	c.SetReadLimit(wsMaxGraphQLWSMessage)
	err = s.graphQLWebsocketLoop(r.Context(), c)
	var ce websocket.CloseError
	switch {
	case err == nil, errors.As(err, &ce), errors.Is(err, context.Canceled), errors.Is(err, io.EOF):
		s.log.Debug("websocket closed", "err", err)
	default:
		s.log.Debug("websocket failed", "err", err)
	}
}

func (s *Server) graphQLWebsocketLoop(ctx context.Context, c *websocket.Conn) error {
	acked := false
	for {
		var m wsMessage
		if err := wsjson.Read(ctx, c, &m); err != nil {
			return err // on bad JSON wsjson has closed with 1007
		}
		var err error
		switch m.Type {
		case "connection_init":
			if acked {
				return c.Close(wsTooManyInits, "Too many initialisation requests")
			}
			acked = true
			err = wsjson.Write(ctx, c, wsMessage{Type: "connection_ack"})
		case "ping":
			err = wsjson.Write(ctx, c, wsMessage{Type: "pong"})
		case "pong", "complete":
		case "subscribe":
			if !acked {
				return c.Close(wsUnauthorized, "Unauthorized")
			}
			if m.ID == "" {
				return c.Close(wsBadRequest, "subscribe without id")
			}
			payload := m.Payload
			if len(payload) == 0 {
				payload = json.RawMessage("null")
			}
			next, _ := json.Marshal(map[string]any{"data": map[string]json.RawMessage{"echo": payload}})
			if err = wsjson.Write(ctx, c, wsMessage{Type: "next", ID: m.ID, Payload: next}); err == nil {
				err = wsjson.Write(ctx, c, wsMessage{Type: "complete", ID: m.ID})
			}
		default:
			return c.Close(wsBadRequest, "unknown message type "+m.Type)
		}
		if err != nil {
			return err
		}
	}
}
