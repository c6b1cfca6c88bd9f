// Package redact keeps secrets out of Burrow's logs: Stash's apikey query
// values, tokens, and the Cookie, Authorization and ApiKey headers, wherever
// they appear in a log record (an error that quotes a URL, a header dump).
package redact

import (
	"context"
	"fmt"
	"log/slog"
	"regexp"
)

// Mask replaces a secret.
const Mask = "[REDACTED]"

var patterns = []*regexp.Regexp{
	// ?apikey=… and &api_key=… in URLs, quoted or not.
	regexp.MustCompile(`(?i)((?:api_?key|token|access_token|session)=)[^&\s"'#]+`),
	// OAuth codes, states and client secrets in URLs and forms.
	regexp.MustCompile(`(?i)([?&](?:code|state|client_secret)=)[^&\s"'#]+`),
	regexp.MustCompile(`(?i)(client_secret"?\s*[:=]\s*"?)[^"&\s]+`),
	// Header lines and map dumps: "ApiKey: …", "Cookie":["…"], Authorization=Bearer …
	regexp.MustCompile(`(?i)((?:api_?key|cookie|set-cookie|authorization|proxy-authorization)"?\s*[:=]\s*\[?"?)[^"\]\n]+`),
}

// String masks every secret in s.
func String(s string) string {
	for _, re := range patterns {
		s = re.ReplaceAllString(s, "${1}"+Mask)
	}
	return s
}

// Handler wraps h so that every message and attribute is masked.
func Handler(h slog.Handler) slog.Handler { return handler{h} }

type handler struct{ next slog.Handler }

func (h handler) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

func (h handler) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, String(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(attr(a))
		return true
	})
	return h.next.Handle(ctx, out)
}

func (h handler) WithAttrs(as []slog.Attr) slog.Handler {
	masked := make([]slog.Attr, len(as))
	for i, a := range as {
		masked[i] = attr(a)
	}
	return handler{h.next.WithAttrs(masked)}
}

func (h handler) WithGroup(name string) slog.Handler { return handler{h.next.WithGroup(name)} }

func attr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, String(v.String()))
	case slog.KindGroup:
		g := v.Group()
		out := make([]any, len(g))
		for i, x := range g {
			out[i] = attr(x)
		}
		return slog.Group(a.Key, out...)
	case slog.KindAny:
		return slog.String(a.Key, String(fmt.Sprint(v.Any())))
	}
	return a
}
