// Package oidctest runs a real OpenID provider on loopback for tests:
// zitadel/oidc's example provider, with its login form, its two users, and
// a groups claim added to their userinfo.
package oidctest

import (
	"context"
	"errors"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/zitadel/oidc/v3/example/server/exampleop"
	"github.com/zitadel/oidc/v3/example/server/storage"
	"github.com/zitadel/oidc/v3/pkg/oidc"
)

// The provider's users: Member is in group MemberGroup, Outsider is not.
const (
	MemberEmail   = "test-user@zitadel.ch"
	MemberGroup   = "stash-users"
	Outsider      = "test-user2"
	OutsiderEmail = "test-user2@zitadel.ch"
	Password      = "verysecure"
)

// Member is the username of the member: the example provider names it after the issuer's host.
const Member = "test-user@127.0.0.1"

// MemberSubject is the member's sub claim.
const MemberSubject = "id1"

// Provider is a running OpenID provider.
type Provider struct {
	// Issuer is its issuer URL, http://127.0.0.1:port.
	Issuer string
}

// withGroups adds a groups claim to the example storage's userinfo.
type withGroups struct {
	*storage.Storage
}

var groups = map[string][]string{MemberSubject: {MemberGroup}, "id2": {"others"}}

func (s withGroups) SetUserinfoFromToken(ctx context.Context, ui *oidc.UserInfo, tokenID, subject, origin string) error {
	if err := s.Storage.SetUserinfoFromToken(ctx, ui, tokenID, subject, origin); err != nil {
		return err
	}
	ui.AppendClaims("groups", groups[ui.Subject])
	return nil
}

// Start runs a provider until the test ends, with one web client (client
// secret, PKCE) allowed to redirect to redirectURIs.
func Start(t testing.TB, clientID, secret string, redirectURIs ...string) *Provider {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	issuer := "http://" + ln.Addr().String()
	clients := map[string]*storage.Client{clientID: storage.WebClient(clientID, secret, redirectURIs...)}
	st := withGroups{storage.NewStorageWithClients(storage.NewUserStore(issuer), clients)}
	router := exampleop.SetupServer(issuer, st, nil, false)
	srv := &http.Server{Handler: router, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		if err := <-done; err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("oidc provider: %v", err)
		}
	})
	return &Provider{Issuer: issuer}
}
