package redact

import (
	"bytes"
	"errors"
	"log/slog"
	"net/url"
	"strings"
	"testing"
)

func TestString(t *testing.T) {
	for _, in := range []string{
		`GET "http://r1.burrow.invalid/scene/1/stream?apikey=SECRET1&x=1"`,
		`/scene/1/stream?foo=1&api_key=SECRET1`,
		`ApiKey: SECRET1`,
		`Cookie: session=SECRET1; other=2`,
		`Authorization: Bearer SECRET1`,
		`map[Apikey:[SECRET1] Cookie:[session=SECRET1]]`,
		`{"Cookie":["session=SECRET1"],"Authorization":["Basic SECRET1"]}`,
	} {
		if got := String(in); strings.Contains(got, "SECRET1") || !strings.Contains(got, Mask) {
			t.Errorf("String(%q) = %q", in, got)
		}
	}
	if got := String("GET /scene/1/stream?t=10"); got != "GET /scene/1/stream?t=10" {
		t.Errorf("harmless text changed: %q", got)
	}
}

func TestHandler(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(Handler(slog.NewTextHandler(&buf, nil))).With("url", "/x?apikey=SECRET2")
	err := &url.Error{Op: "Get", URL: "http://h/scene?apikey=SECRET3", Err: errors.New("boom")}
	log.Info("proxy error ?apikey=SECRET4", "err", err, slog.Group("req", "cookie", "Cookie: SECRET5"))
	out := buf.String()
	for _, s := range []string{"SECRET2", "SECRET3", "SECRET4", "SECRET5"} {
		if strings.Contains(out, s) {
			t.Errorf("log line holds %s: %s", s, out)
		}
	}
	if !strings.Contains(out, "boom") {
		t.Errorf("the error itself was lost: %s", out)
	}
}
