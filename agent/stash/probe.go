package stash

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// LoginState says whether a service asks unauthenticated clients to log in.
type LoginState int

const (
	// LoginRequired means Stash refused an unauthenticated query with 401: a login is set, safe to publish.
	LoginRequired LoginState = iota + 1
	// NoLogin means Stash answered an unauthenticated query: publishing it would expose the whole library.
	NoLogin
	// NotStash means the service did not answer like Stash: publish it as configured.
	NotStash
)

// String returns "login required", "no login" or "not stash".
func (s LoginState) String() string {
	if names := [...]string{LoginRequired: "login required", NoLogin: "no login", NotStash: "not stash"}; s > 0 && int(s) < len(names) {
		return names[s]
	}
	return fmt.Sprintf("LoginState(%d)", int(s))
}

// LoginHelp tells the owner of a Stash with no login how to set one, or how to publish it anyway.
const LoginHelp = "Stash answers without a login, so publishing it would show the whole library to anyone. " +
	"In Stash, open Settings → Security → Authentication, enter a Username and a Password, and save: " +
	"it applies at once, and Burrow publishes the route within 10 seconds, no restart needed. To publish it without a login anyway, " +
	"set allow_unauthenticated: true on the route."

// probeQuery is the smallest GraphQL query every Stash answers.
const probeQuery = `{"query":"{ version { version } }"}`

// maxProbeBody caps how much of an answer is read; a Stash version answer is
// under a hundred bytes.
const maxProbeBody = 64 << 10

// ProbeLogin asks the service at serviceURL (e.g. http://127.0.0.1:9999) for Stash's version without credentials, and reports whether it required a login; a nil client means http.DefaultClient.
//
// Only a failed request is an error; any answer classifies. A Stash whose
// tripwire has fired answers 403 to everything and so reads as NotStash,
// which is harmless: it serves nothing until its owner resets it.
func ProbeLogin(ctx context.Context, client *http.Client, serviceURL string) (LoginState, error) {
	if client == nil {
		client = http.DefaultClient
	}
	// Look at the first answer only: a redirect (say, to a login page) is
	// not Stash answering the query.
	c := *client
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

	req, err := http.NewRequestWithContext(ctx, http.MethodPost,
		strings.TrimRight(serviceURL, "/")+"/graphql", bytes.NewReader([]byte(probeQuery)))
	if err != nil {
		return 0, fmt.Errorf("probe stash login: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return 0, fmt.Errorf("probe stash login: %w", err)
	}
	defer resp.Body.Close()
	defer io.Copy(io.Discard, io.LimitReader(resp.Body, maxProbeBody)) // let the connection be reused

	switch resp.StatusCode {
	case http.StatusUnauthorized:
		return LoginRequired, nil
	case http.StatusOK:
	default:
		return NotStash, nil
	}
	var answer struct {
		Data struct {
			Version json.RawMessage `json:"version"`
		} `json:"data"`
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxProbeBody))
	if err != nil {
		return 0, fmt.Errorf("probe stash login: read answer: %w", err)
	}
	if json.Unmarshal(body, &answer) != nil {
		return NotStash, nil
	}
	var version map[string]any
	if json.Unmarshal(answer.Data.Version, &version) != nil || version == nil {
		return NotStash, nil
	}
	return NoLogin, nil
}
