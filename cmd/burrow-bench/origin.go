package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/coder/websocket"

	"github.com/burrow-tunnel/burrow/internal/wanemu"
)

// The origin's files.
const (
	smallFile  = "/1k.bin"
	mediumFile = "/1m.bin"
	bigFile    = "/big.bin"
	wanFile    = "/wan.bin"
)

// makeData writes the origin's files into dir: 1 KiB, 1 MiB, big and wan
// bytes of ChaCha8 output, so that nothing on the path can compress them.
func makeData(dir string, big, wan int64) error {
	src := rand.NewChaCha8([32]byte{'b', 'u', 'r', 'r', 'o', 'w'})
	for name, n := range map[string]int64{smallFile: kib, mediumFile: mib, bigFile: big, wanFile: wan} {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			return err
		}
		_, err = io.CopyN(f, src, n)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
	}
	return nil
}

// nginxConf is a complete nginx.conf whose every path lies under dir, with
// servers as the http block's server blocks. Access logs are off (Burrow
// keeps none per request) and keep-alive is not capped per connection, so
// that wrk measures proxying rather than reconnects.
func nginxConf(dir, servers string) string {
	tmp := filepath.Join(dir, "tmp")
	return fmt.Sprintf(`# Written by burrow-bench.
user root;
worker_processes auto;
worker_rlimit_nofile %[3]d;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events {
    worker_connections 32768;
}
http {
    access_log off;
    default_type application/octet-stream;
    client_body_temp_path %[2]s/body;
    proxy_temp_path %[2]s/proxy;
    fastcgi_temp_path %[2]s/fastcgi;
    uwsgi_temp_path %[2]s/uwsgi;
    scgi_temp_path %[2]s/scgi;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 120s;
    keepalive_requests 10000000;
%[4]s}
`, dir, tmp, nofile, servers)
}

// originServer serves the data directory.
func originServer(listen, data string) string {
	return fmt.Sprintf(`    server {
        listen %s;
        root %s;
        location / { }
    }
`, listen, data)
}

// proxyLocation is the reverse proxy of Stash's documentation (docs.stashapp.cc,
// "Reverse proxy", nginx), with proxy_buffering off as for video.
func proxyLocation(upstream string) string {
	return fmt.Sprintf(`        location / {
            proxy_pass http://%s;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_set_header Host $http_host;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_buffering off;
            proxy_read_timeout 60000s;
        }
`, upstream)
}

// proxyServers route the files host to the origin and the websocket host
// to the echo server, as the agent's two routes do.
func proxyServers(listen, origin, ws string) string {
	return fmt.Sprintf(`    server {
        listen %[1]s default_server;
%[2]s    }
    server {
        listen %[1]s;
        server_name %[3]s;
%[4]s    }
`, listen, proxyLocation(origin), wsHost, proxyLocation(ws))
}

// startNginx writes conf into dir and runs nginx in the foreground, in the
// network namespace ns when it is not empty.
func startNginx(name, dir, conf, ns string) (*child, error) {
	if _, err := mkdir(dir, "tmp"); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	argv := []string{"nginx", "-p", dir, "-c", path, "-e", filepath.Join(dir, "error.log"), "-g", "daemon off;"}
	if ns != "" {
		argv = append([]string{"ip", "netns", "exec", ns}, argv...)
	}
	return startChild(name, filepath.Join(dir, "stderr.log"), argv...)
}

// origin is the service behind every path: nginx, or Go's file server when
// nginx is missing.
type origin struct {
	port  int
	nginx *child
	srv   *http.Server
}

// startLoopbackOrigin serves data on a free port of the host's 127.0.0.1
// and returns its address.
func (b *bench) startLoopbackOrigin(name string) (*origin, string, error) {
	port, err := freePort()
	if err != nil {
		return nil, "", err
	}
	org, err := b.startOrigin(name, "", port)
	if err != nil {
		return nil, "", fmt.Errorf("origin: %w", err)
	}
	return org, "127.0.0.1:" + strconv.Itoa(port), nil
}

// startOrigin serves data on port: on 127.0.0.1 of the host, or on every
// address of namespace ns (so that the WAN's direct baseline reaches it).
func (b *bench) startOrigin(name, ns string, port int) (*origin, error) {
	listen := "127.0.0.1:" + strconv.Itoa(port)
	if ns != "" {
		listen = "0.0.0.0:" + strconv.Itoa(port)
	}
	o := &origin{port: port}
	if b.tools.nginx {
		dir, err := mkdir(b.dir, name)
		if err != nil {
			return nil, err
		}
		o.nginx, err = startNginx(name, dir, nginxConf(dir, originServer(listen, b.data)), ns)
		if err != nil {
			return nil, err
		}
	} else {
		var ln net.Listener
		listenIn := func() (err error) { ln, err = net.Listen("tcp", listen); return err }
		var err error
		if ns != "" {
			err = wanemu.InNamespace(ns, listenIn)
		} else {
			err = listenIn()
		}
		if err != nil {
			return nil, err
		}
		o.srv = &http.Server{Handler: http.FileServer(http.Dir(b.data)), ReadHeaderTimeout: 10 * time.Second}
		go o.srv.Serve(ln)
	}
	return o, nil
}

func (o *origin) stop() {
	if o == nil {
		return
	}
	if o.nginx != nil {
		o.nginx.stop()
	}
	if o.srv != nil {
		o.srv.Close()
	}
}

// echoServer is the websocket origin of scenario 6: it echoes every message.
type echoServer struct {
	srv  *http.Server
	addr string
}

func startEchoServer() (*echoServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") == "" {
			http.NotFound(w, r)
			return
		}
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		ctx := context.Background()
		for {
			typ, msg, err := c.Read(ctx)
			if err != nil {
				return
			}
			if err := c.Write(ctx, typ, msg); err != nil {
				return
			}
		}
	})
	s := &echoServer{srv: &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}, addr: ln.Addr().String()}
	go func() {
		if err := s.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintln(os.Stderr, "burrow-bench: echo server:", err)
		}
	}()
	return s, nil
}

func (s *echoServer) close() {
	if s != nil {
		s.srv.Close()
	}
}
