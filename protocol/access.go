package protocol

// FeatureAccess in a Welcome says the relay enforces each route's access
// policy (Route.Access). An agent offers it in its Hello; a relay that does
// not list it in its Welcome would publish a route open, so the agent serves
// no stream of a route with a policy on such a session.
const FeatureAccess = "access"

// AccessPolicy is a route's access control, set in agent.yaml and enforced
// by the relay. Durations are milliseconds; zero means the relay's default.
type AccessPolicy struct {
	// Allow lists the CIDRs whose clients may reach the route; empty means all.
	Allow []string `json:"allow,omitempty"`
	// Deny lists the CIDRs refused, checked before Allow.
	Deny []string `json:"deny,omitempty"`
	// OIDC has visitors sign in with an OpenID provider at the relay.
	OIDC *OIDCPolicy `json:"oidc,omitempty"`
	// ForwardAuth asks a gateway (Authelia, Authentik, oauth2-proxy) about each request.
	ForwardAuth *ForwardAuthPolicy `json:"forward_auth,omitempty"`
	// Bypass lets some requests past sign-in (not past address rules or limits).
	Bypass AccessBypass `json:"bypass,omitzero"`
	// LoginLimit blocks an address after failed sign-ins at the service.
	LoginLimit *LoginLimit `json:"login_limit,omitempty"`
	// RateLimit caps each address's request rate.
	RateLimit *RateLimit `json:"rate_limit,omitempty"`
}

// OIDCPolicy is sign-in with OpenID Connect (authorization code flow with PKCE).
type OIDCPolicy struct {
	Issuer       string `json:"issuer"`
	ClientID     string `json:"client_id"`
	ClientSecret string `json:"client_secret,omitempty"`
	// Scopes are asked for besides "openid"; empty means email and profile.
	Scopes []string `json:"scopes,omitempty"`
	// AllowedEmails, AllowedSubjects and AllowedGroups: a user matching any
	// one of them may in.
	AllowedEmails   []string `json:"allowed_emails,omitempty"`
	AllowedSubjects []string `json:"allowed_subjects,omitempty"`
	AllowedGroups   []string `json:"allowed_groups,omitempty"`
	// GroupsClaim names the claim that lists the user's groups ("groups").
	GroupsClaim string `json:"groups_claim,omitempty"`
	// SessionMillis is how long a sign-in lasts.
	SessionMillis int64 `json:"session_ms,omitempty"`
}

// ForwardAuthPolicy asks a gateway whether to let each request through.
type ForwardAuthPolicy struct {
	URL string `json:"url"`
	// CopyHeaders are copied from the gateway's 2xx answer into the request;
	// the same headers sent by the client are always dropped.
	CopyHeaders []string `json:"copy_headers,omitempty"`
}

// AccessBypass lets requests past sign-in.
type AccessBypass struct {
	// APIKey lets requests carrying Stash's API key (ApiKey header or apikey
	// query parameter) through; the service still checks the key.
	APIKey bool `json:"apikey,omitempty"`
	// Paths are path prefixes (below the route's prefix) let through.
	Paths []string `json:"paths,omitempty"`
}

// LoginLimit blocks an address after Failures failed sign-ins within Window.
type LoginLimit struct {
	Failures    int   `json:"failures"`
	WindowMilli int64 `json:"window_ms"`
	// BlockMillis is the first block; each further block of the same
	// address doubles it, up to a day.
	BlockMillis int64 `json:"block_ms"`
	// LoginPath is the service's sign-in form, below the route's prefix ("/login").
	LoginPath string `json:"login_path,omitempty"`
}

// RateLimit caps the request rate of each client address.
type RateLimit struct {
	PerSecond float64 `json:"per_second"`
	Burst     int     `json:"burst"`
}
