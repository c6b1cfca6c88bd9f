package origin

import (
	_ "embed"
	"fmt"
	"html/template"
	"net"
	"net/http"
	"path"
)

var (
	//go:embed page.html
	pageHTML     string
	pageTemplate = template.Must(template.New("page").Parse(pageHTML))

	//go:embed login.html
	loginHTML     string
	loginTemplate = template.Must(template.New("login").Parse(loginHTML))
)

// pageHeaders are the headers a proxy sets, shown on the demo page in this order.
var pageHeaders = []string{
	"X-Real-IP", "X-Forwarded-For", "X-Forwarded-Proto",
	"X-Forwarded-Host", "X-Forwarded-Port", "X-Forwarded-Prefix",
}

type pageRow struct {
	Name, Value string
	Set         bool
}

type pageData struct {
	Version       string
	Rows          []pageRow
	Prefix        string
	Base          string
	StreamURL     string
	ScreenshotURL string
	LargeSize     string

	// The data path: the visitor, the public URL, the agent's address as
	// the service sees it, and the service's own address.
	Client, Proto, Public, Agent, Service string
}

// servePage is Stash's UI fallback: any path without an extension (or
// .html) is the index page; anything else that no route matched is 404.
func (s *Server) servePage(w http.ResponseWriter, r *http.Request) {
	if ext := path.Ext(r.URL.Path); ext != "" && ext != ".html" {
		http.NotFound(w, r)
		return
	}
	base := s.baseURL(r)
	d := pageData{
		Version:       Version,
		Rows:          []pageRow{{Name: "Host", Value: r.Host, Set: r.Host != ""}},
		Prefix:        prefix(r),
		Base:          base,
		StreamURL:     base + "/scene/1/stream",
		ScreenshotURL: base + "/scene/1/screenshot",
		LargeSize:     humanBytes(s.opts.LargeFileSize),
	}
	for _, h := range pageHeaders {
		v, ok := r.Header[http.CanonicalHeaderKey(h)]
		row := pageRow{Name: h, Set: ok}
		if ok {
			row.Value = fmt.Sprint(v)
			if len(v) == 1 {
				row.Value = v[0]
			}
		}
		d.Rows = append(d.Rows, row)
	}
	d.Rows = append(d.Rows, pageRow{Name: "Peer address", Value: r.RemoteAddr, Set: true})
	d.Client = orDefault(r.Header.Get("X-Real-IP"), "this browser")
	d.Proto = "HTTP"
	if r.Header.Get("X-Forwarded-Proto") == "https" {
		d.Proto = "HTTPS"
	}
	d.Public = base + "/"
	d.Agent = "connects from " + r.RemoteAddr
	d.Service = "listening on " + orDefault(localAddr(r), "?")

	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	if err := pageTemplate.Execute(w, d); err != nil {
		s.log.Debug("render page", "err", err)
	}
}

// humanBytes formats n in binary units, e.g. "64 MiB".
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	v := float64(n) / float64(div)
	if v == float64(int64(v)) {
		return fmt.Sprintf("%d %ciB", int64(v), "KMGTPE"[exp])
	}
	return fmt.Sprintf("%.1f %ciB", v, "KMGTPE"[exp])
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// localAddr is the address the request came in on.
func localAddr(r *http.Request) string {
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		return a.String()
	}
	return ""
}
