package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/burrow-tunnel/burrow/internal/origin"
	"github.com/burrow-tunnel/burrow/internal/testutil"
)

const (
	// publicHost is the one host the relay grants the agent.
	publicHost = "stash.example.com"
	// largeSize is the size of the origin's /files/large.bin.
	largeSize = 256 << 20
	// readyTimeout bounds the wait for a relay+agent pair to answer 200.
	readyTimeout = 10 * time.Second
	// stopTimeout bounds the wait for a signalled process to exit.
	stopTimeout = 10 * time.Second
)

// transports are the tunnel transports every transport-dependent test runs over.
var transports = []string{"quic", "tcp"}

// largeSHA256 is the origin's large file's hash, computed once.
var largeSHA256 = sync.OnceValue(func() [32]byte { return origin.LargeFileSHA256(largeSize) })

// env is one origin, relay process and agent process on loopback.
type env struct {
	t         *testing.T
	dir       string
	transport string

	origin     *origin.Server
	originAddr string

	// relayExtra is appended to relay.yaml (a limits section, say).
	relayExtra string

	tunnelPort, httpPort int
	// httpsPort is the relay's public HTTPS port (TCP, and UDP for HTTP/3),
	// 0 when it serves plain HTTP only; roots trust its certificate.
	httpsPort int
	roots     *x509.CertPool
	certFile  string
	keyFile   string
	// The admin listeners of the relay and the agent.
	relayAdmin, agentAdmin string
	closedPort             int // nothing listens here: the /down route's service
	// portsPicked, if set, runs each time the ports have been chosen.
	portsPicked func(*env)

	token       string
	relayConfig string
	agentConfig string

	relayLog, agentLog *testutil.SyncBuffer
	relay, agent       *proc

	// client sends every request to the relay's public port with Host publicHost.
	client *http.Client
}

// newEnv starts an origin, a relay and an agent with the given transport, and
// waits until a request through the relay answers 200.
func newEnv(t *testing.T, transport string) *env {
	t.Helper()
	return newEnvWith(t, transport, "")
}

// newEnvWith is newEnv with relayExtra appended to relay.yaml.
func newEnvWith(t *testing.T, transport, relayExtra string) *env {
	t.Helper()
	return startEnv(t, transport, relayExtra, false)
}

// newEnvHTTPS is newEnvWith with the relay's public HTTPS listener on as
// well (HTTP/1.1 and HTTP/2 over TLS, HTTP/3), its certificate a
// self-signed one for publicHost that e.roots trusts.
func newEnvHTTPS(t *testing.T, transport, relayExtra string) *env {
	t.Helper()
	return startEnv(t, transport, relayExtra, true)
}

func startEnv(t *testing.T, transport, relayExtra string, https bool) *env {
	t.Helper()
	e := unstartedEnv(t, transport, relayExtra)
	e.launch(https)
	return e
}

// unstartedEnv is an env whose launch starts it.
func unstartedEnv(t *testing.T, transport, relayExtra string) *env {
	return &env{
		t:          t,
		dir:        t.TempDir(),
		transport:  transport,
		relayExtra: relayExtra,
		relayLog:   &testutil.SyncBuffer{},
		agentLog:   &testutil.SyncBuffer{},
	}
}

// launch starts the origin, the relay and the agent, and waits until a
// request goes through.
func (e *env) launch(https bool) {
	t, transport := e.t, e.transport
	t.Helper()
	e.startOrigin()
	if https {
		var cert tls.Certificate
		cert, e.roots = testutil.SelfSigned(publicHost)
		e.certFile, e.keyFile = testutil.WritePEM(t, cert)
	}

	// Cleanups run last-registered first: the client's idle connections, then
	// the processes, then the origin (registered in startOrigin).
	t.Cleanup(func() {
		e.stopAll()
		if t.Failed() {
			fmt.Fprintf(t.Output(), "--- relay stderr (%s)\n%s\n--- agent stderr (%s)\n%s\n", transport, e.relayLog, transport, e.agentLog)
		}
	})
	t.Cleanup(func() { e.client.CloseIdleConnections() })

	for attempt := 1; ; attempt++ {
		e.pickPorts(https)
		e.writeConfigs()
		e.client = newClient(e.publicAddr())
		e.restartRelay()
		e.restartAgent()
		d, err := e.waitReadyWhile(readyTimeout, e.relay, e.agent)
		if err == nil {
			break
		}
		// A port is free when picked, and another test's process may bind
		// it before this relay or agent does: pick others.
		if taken := strings.Contains(e.relayLog.String()+e.agentLog.String(), "address already in use"); taken && attempt < 3 {
			t.Logf("a port was taken between its choice and its use; starting again with others")
			e.stopAll()
			e.client.CloseIdleConnections()
			e.relayLog, e.agentLog = &testutil.SyncBuffer{}, &testutil.SyncBuffer{}
			continue
		}
		t.Fatalf("relay+agent (%s) not ready after %v: %v", transport, d.Round(time.Millisecond), err)
	}
}

// pickPorts chooses the relay's and the agent's ports.
func (e *env) pickPorts(https bool) {
	t := e.t
	e.tunnelPort = freePort(t, true)
	e.httpPort = freePort(t, false)
	if https {
		e.httpsPort = freePort(t, true)
	}
	e.closedPort = freePort(t, false)
	e.relayAdmin = net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t, false)))
	e.agentAdmin = net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t, false)))
	if e.portsPicked != nil {
		e.portsPicked(e)
	}
}

func (e *env) publicAddr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(e.httpPort)) }

// httpsAddr is the relay's public HTTPS address (see newEnvHTTPS).
func (e *env) httpsAddr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(e.httpsPort)) }

// url is the public URL of path, as a browser would name it (the client's
// transport dials the relay whatever the host).
func (e *env) url(path string) string { return "http://" + publicHost + path }

// startOrigin serves the Stash-like origin in this process on 127.0.0.1:0.
func (e *env) startOrigin() {
	t := e.t
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.origin = origin.New(origin.Options{LargeFileSize: largeSize, LargeFilePath: largeFilePath})
	e.originAddr = ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- origin.Serve(ctx, ln, e.origin) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("origin: %v", err)
			}
		case <-time.After(stopTimeout):
			t.Errorf("origin did not stop within %v", stopTimeout)
		}
	})
}

// writeConfigs writes relay.yaml and agent.yaml, with a token from `burrow
// token new --json` and the pin from `burrow relay fingerprint`.
func (e *env) writeConfigs() {
	t := e.t
	var tok struct {
		Token       string `json:"token"`
		TokenSHA256 string `json:"token_sha256"`
	}
	if err := json.Unmarshal(runBurrow(t, "token", "new", "--json"), &tok); err != nil || tok.Token == "" || len(tok.TokenSHA256) != 64 {
		t.Fatalf("burrow token new --json: %+v, %v", tok, err)
	}
	e.token = tok.Token

	https := ""
	if e.httpsPort != 0 {
		https = fmt.Sprintf("  https: \"127.0.0.1:%d\"\n  redirect_http: false\ntls:\n  cert_file: %q\n  key_file: %q\n", e.httpsPort, e.certFile, e.keyFile)
	}
	e.relayConfig = filepath.Join(e.dir, "relay.yaml")
	writeFile(t, e.relayConfig, fmt.Sprintf(`tunnel:
  listen: "127.0.0.1:%d"
public:
  http: "127.0.0.1:%d"
%sstate_dir: %q
admin:
  listen: %q
  pprof: true
agents:
  - name: nas
    token_sha256: %q
    hosts: [%s]
log:
  level: debug
%s`, e.tunnelPort, e.httpPort, https, filepath.Join(e.dir, "relay-state"), e.relayAdmin, tok.TokenSHA256, publicHost, e.relayExtra))

	fp := strings.TrimSpace(string(runBurrow(t, "relay", "fingerprint", "--config", e.relayConfig)))
	if !strings.HasPrefix(fp, "sha256:") {
		t.Fatalf("burrow relay fingerprint: %q", fp)
	}

	svc := "http://" + e.originAddr
	e.agentConfig = filepath.Join(e.dir, "agent.yaml")
	writeFile(t, e.agentConfig, fmt.Sprintf(`relay: "127.0.0.1:%d"
relay_fingerprint: %q
token: %q
admin:
  listen: %[8]q
shutdown_grace: 3s
transport: %[4]s
log:
  level: debug
routes:
  - host: %[5]s
    service: %[6]s
    allow_unauthenticated: true
  - host: %[5]s
    prefix: /stash
    service: %[6]s
    allow_unauthenticated: true
  - host: %[5]s
    prefix: /down
    service: "http://127.0.0.1:%[7]d"
    allow_unauthenticated: true
`, e.tunnelPort, fp, e.token, e.transport, publicHost, svc, e.closedPort, e.agentAdmin))
}

// waitReady polls /healthz through the relay until it answers 200 and
// returns how long that took. A new attempt starts every 50 ms without
// waiting for the previous one, so an attempt that hangs on a dead session
// does not inflate the figure.
func (e *env) waitReady(timeout time.Duration) (time.Duration, error) {
	return e.waitReadyWhile(timeout, nil, nil)
}

// waitReadyWhile is waitReady that gives up as soon as relay or agent (if
// not nil) has exited: a process that exited at its start will not serve.
func (e *env) waitReadyWhile(timeout time.Duration, relay, agent *proc) (time.Duration, error) {
	const every, attemptTimeout = 50 * time.Millisecond, time.Second
	start := time.Now()
	type result struct {
		at  time.Time
		err error
	}
	results := make(chan result, int(timeout/every)+2) // never blocks a sender
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	launch := func() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			actx, acancel := context.WithTimeout(ctx, attemptTimeout)
			defer acancel()
			status, _, err := e.get(actx, "/healthz", nil)
			if err == nil && status != http.StatusOK {
				err = fmt.Errorf("status %d", status)
			}
			results <- result{time.Now(), err}
		}()
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	launch()
	var last error
	relayExit, agentExit := exited(relay), exited(agent)
	for {
		select {
		case <-relayExit:
			return time.Since(start), fmt.Errorf("the relay exited: %v", relay.err)
		case <-agentExit:
			return time.Since(start), fmt.Errorf("the agent exited: %v", agent.err)
		case r := <-results:
			if r.err == nil {
				return r.at.Sub(start), nil
			}
			last = r.err
		case <-tick.C:
			launch()
		case <-ctx.Done():
			return time.Since(start), fmt.Errorf("%w (last attempt: %v)", ctx.Err(), last)
		}
	}
}

// get fetches path through the relay and returns status and body.
func (e *env) get(ctx context.Context, path string, hdr http.Header) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.url(path), nil)
	if err != nil {
		return 0, nil, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	res, err := e.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	return res.StatusCode, body, err
}

// mustGet is get with a 10 s bound that fails the test on a transport error.
func (e *env) mustGet(path string, hdr http.Header) (int, []byte) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	status, body, err := e.get(ctx, path, hdr)
	if err != nil {
		e.t.Fatalf("GET %s: %v", path, err)
	}
	return status, body
}

// start runs the binary with args, its stderr (and stdout) into log.
func (e *env) start(name string, log *testutil.SyncBuffer, args ...string) *proc {
	e.t.Helper()
	p, err := startProc(name, log, args...)
	if err != nil {
		e.t.Fatal(err)
	}
	return p
}

func (e *env) restartRelay() {
	e.relay = e.start("relay", e.relayLog, "relay", "--config", e.relayConfig)
}
func (e *env) restartAgent() {
	e.agent = e.start("agent", e.agentLog, "agent", "--config", e.agentConfig)
}

// stopAll kills whatever still runs.
func (e *env) stopAll() {
	for _, p := range []*proc{e.agent, e.relay} {
		if p != nil {
			if err := p.stop(syscall.SIGKILL); err != nil {
				e.t.Error(err)
			}
		}
	}
}

// getJSON decodes the JSON answer of a GET to url into v.
func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("%s: %v", url, err)
	}
}

// proc is one running burrow process.
type proc struct {
	name   string
	cmd    *exec.Cmd
	cancel context.CancelFunc
	done   chan struct{} // closed when Wait returned
	err    error         // Wait's error; read after done
}

func startProc(name string, log *testutil.SyncBuffer, args ...string) (*proc, error) {
	return startCmd(name, log, exec.Command(burrowBin, args...))
}

// startCmd starts cmd (a burrow command, perhaps wrapped in `ip netns exec`)
// as a proc, with cmd.Env added to the test's environment; cancelling the
// proc kills it.
func startCmd(name string, log *testutil.SyncBuffer, cmd *exec.Cmd) (*proc, error) {
	ctx, cancel := context.WithCancel(context.Background())
	context.AfterFunc(ctx, func() {
		if cmd.Process != nil {
			_ = cmd.Process.Kill()
		}
	})
	cmd.Env = append(cleanEnv(), cmd.Env...) // the test's own variables last, so they win
	cmd.Stdout = log
	cmd.Stderr = log
	cmd.WaitDelay = 5 * time.Second
	fmt.Fprintf(log, "=== %s %s started at %s\n", name, strings.Join(cmd.Args[1:], " "), time.Now().Format(time.StampMilli))
	if err := cmd.Start(); err != nil {
		cancel()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, cancel: cancel, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		cancel()
		close(p.done)
	}()
	return p, nil
}

// exited is closed when p has exited; never when p is nil.
func exited(p *proc) <-chan struct{} {
	if p == nil {
		return nil
	}
	return p.done
}

// stop sends sig (unless the process has exited) and waits for the exit.
func (p *proc) stop(sig os.Signal) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
		return nil
	case <-time.After(stopTimeout):
		p.cancel() // kills
		<-p.done
		return fmt.Errorf("%s did not exit within %v of %v", p.name, stopTimeout, sig)
	}
}

// cleanEnv is the test's environment without BURROW_* variables, which would
// override the config files.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "BURROW_") {
			env = append(env, kv)
		}
	}
	return env
}

// burrowCommand is the binary with args, bounded by ctx, in a clean
// environment, its stderr kept in the buffer it returns.
func burrowCommand(ctx context.Context, args ...string) (*exec.Cmd, *bytes.Buffer) {
	cmd := exec.CommandContext(ctx, burrowBin, args...)
	cmd.Env = cleanEnv()
	stderr := new(bytes.Buffer)
	cmd.Stderr = stderr
	return cmd, stderr
}

// runBurrow runs a short burrow command and returns its stdout.
func runBurrow(t *testing.T, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd, stderr := burrowCommand(ctx, args...)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("burrow %s: %v\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return out
}

// runBurrowFails runs the binary with args, which must exit non-zero within
// 20 s, and returns what it wrote to stderr.
func runBurrowFails(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd, stderr := burrowCommand(ctx, args...)
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() == 0 {
		t.Fatalf("burrow %s exited with %v (want a non-zero exit); stderr:\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return stderr.String()
}

// newClient returns a client that sends every request to addr (the relay's
// public port), whatever the URL's host, and follows no redirects.
func newClient(addr string) *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second}
	return &http.Client{
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return d.DialContext(ctx, network, addr)
			},
			DisableCompression:  true,
			MaxIdleConnsPerHost: 16,
			IdleConnTimeout:     30 * time.Second,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// freePort returns a loopback port that is free for TCP (and UDP when udp is set).
func freePort(t *testing.T, udp bool) int {
	t.Helper()
	return freePortOn(t, "127.0.0.1", udp)
}

// freePortOn returns a port of ip that is free for TCP (and UDP when udp is
// set). It picks below Linux's ephemeral range (32768 and up by default):
// a port the kernel handed out for ":0" goes back to the pool the moment it
// is closed, and the many client connections of tests running beside this
// one could take it before the relay or agent binds it.
func freePortOn(t *testing.T, ip string, udp bool) int {
	t.Helper()
	for range 200 {
		port := 20000 + rand.IntN(12000)
		ln, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
		if err != nil {
			continue
		}
		if !udp {
			ln.Close()
			return port
		}
		pc, err := net.ListenPacket("udp", net.JoinHostPort(ip, strconv.Itoa(port)))
		ln.Close()
		if err == nil {
			pc.Close()
			return port
		}
	}
	t.Fatalf("no free port of %s in 20000-31999", ip)
	return 0
}

func writeFile(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestLaunchPicksOtherPortsWhenOneIsTaken: a port that another process binds
// between its choice and the relay's start (tests of other packages run
// beside these) costs a second start, not a failed test.
func TestLaunchPicksOtherPortsWhenOneIsTaken(t *testing.T) {
	e := unstartedEnv(t, "tcp", "")
	picks := 0
	e.portsPicked = func(e *env) {
		picks++
		if picks == 1 {
			ln, err := net.Listen("tcp", e.relayAdmin)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
		}
	}
	start := time.Now()
	e.launch(false)
	if picks != 2 {
		t.Errorf("ports picked %d times, want 2", picks)
	}
	if status, _ := e.mustGet("/healthz", nil); status != http.StatusOK {
		t.Errorf("/healthz: %d", status)
	}
	t.Logf("ready %v after the first start", time.Since(start).Round(time.Millisecond))
}
