package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
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
	"github.com/burrow-tunnel/burrow/protocol"
	"github.com/miekg/dns"
)

// backWithin bounds how long an agent takes to be back on a relay that
// restarted (the brief's goal for several relays).
const backWithin = 5 * time.Second

// fleetRelay is one relay process of several.
type fleetRelay struct {
	name   string
	tunnel string // the tunnel's address
	public string // the public HTTP address
	config string
	log    *testutil.SyncBuffer
	proc   *proc
	client *http.Client
}

// fleet is an origin, several relays sharing one tunnel identity, and one
// agent with a session to each.
type fleet struct {
	*env
	relays            []*fleetRelay
	sum               string // the agent's token hash
	certFile, keyFile string // the relays' shared tunnel identity
	fingerprint       string
	agentProc         *proc
	agentFleetLog     *testutil.SyncBuffer
	agentConfigPath   string
	agentAdminAddr    string
}

// newFleet writes the configs of relays listening on tunnelIPs (tunnel, all
// on one port number when samePort is set, as behind one DNS name) and
// publicIPs (HTTP); the agent is started by the caller with startAgent.
func newFleet(t *testing.T, tr string, tunnelIPs, publicIPs []string, samePort bool) *fleet {
	e := &env{t: t, dir: t.TempDir(), transport: tr}
	e.startOrigin()
	f := &fleet{env: e}
	e.token, f.sum = newToken(t)
	port := 0
	for i := range tunnelIPs {
		if i == 0 || !samePort {
			port = freePortOn(t, tunnelIPs[i], true)
		}
		r := &fleetRelay{
			name:   fmt.Sprintf("relay%d", i),
			tunnel: net.JoinHostPort(tunnelIPs[i], strconv.Itoa(port)),
			public: net.JoinHostPort(publicIPs[i], strconv.Itoa(freePortOn(t, publicIPs[i], false))),
			log:    &testutil.SyncBuffer{},
		}
		r.client = newClient(r.public)
		r.config = filepath.Join(e.dir, r.name+".yaml")
		f.relays = append(f.relays, r)
		f.writeRelay(r)
		if i == 0 {
			// The first relay's identity is every relay's: one pin for all.
			f.fingerprint = strings.TrimSpace(string(runBurrow(t, "relay", "fingerprint", "--config", r.config)))
			f.certFile = filepath.Join(e.dir, r.name+"-state", "tunnel.crt")
			f.keyFile = filepath.Join(e.dir, r.name+"-state", "tunnel.key")
			f.writeRelay(r)
		}
	}
	t.Cleanup(func() {
		for _, r := range f.relays {
			if r.proc != nil {
				_ = r.proc.stop(syscall.SIGKILL)
			}
		}
		if f.agentProc != nil {
			_ = f.agentProc.stop(syscall.SIGKILL)
		}
		if t.Failed() {
			for _, r := range f.relays {
				fmt.Fprintf(t.Output(), "--- %s (%s)\n%s\n", r.name, tr, r.log)
			}
			if f.agentFleetLog != nil {
				fmt.Fprintf(t.Output(), "--- agent (%s)\n%s\n", tr, f.agentFleetLog)
			}
		}
	})
	return f
}

func (f *fleet) writeRelay(r *fleetRelay) {
	identity := ""
	if f.certFile != "" {
		identity = fmt.Sprintf("  cert_file: %q\n  key_file: %q\n", f.certFile, f.keyFile)
	}
	writeFile(f.t, r.config, fmt.Sprintf(`tunnel:
  listen: %q
%spublic:
  http: %q
state_dir: %q
admin:
  listen: ""
shutdown_grace: 2s
agents:
  - name: nas
    token_sha256: %q
    hosts: [%s]
log:
  level: debug
`, r.tunnel, identity, r.public, filepath.Join(f.dir, r.name+"-state"), f.sum, publicHost))
}

func (f *fleet) startRelay(r *fleetRelay) {
	r.proc = f.start(r.name, r.log, "relay", "--config", r.config)
}

// startAgent runs the agent with relay: set to relays (YAML) and its route
// to service (the origin's address when ""), in netns when set.
func (f *fleet) startAgent(relays, extra, service, netns string) {
	if service == "" {
		service = f.originAddr
	}
	f.agentConfigPath = filepath.Join(f.dir, "agent.yaml")
	f.agentAdminAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(f.t, false)))
	writeFile(f.t, f.agentConfigPath, fmt.Sprintf(`relay: %s
relay_fingerprint: %q
token: %q
transport: %s
admin:
  listen: %q
shutdown_grace: 2s
%slog:
  level: debug
routes:
  - host: %s
    service: http://%s
    allow_unauthenticated: true
`, relays, f.fingerprint, f.token, f.transport, f.agentAdminAddr, extra, publicHost, service))
	f.agentFleetLog = &testutil.SyncBuffer{}
	args := []string{"agent", "--config", f.agentConfigPath}
	if netns == "" {
		f.agentProc = f.start("agent", f.agentFleetLog, args...)
		return
	}
	cmd := execInNetns(netns, burrowBin, args...)
	p, err := startCmd("agent", f.agentFleetLog, cmd)
	if err != nil {
		f.t.Fatal(err)
	}
	f.agentProc = p
}

// get fetches path through relay r, within 20 s; rng, when set, is a Range.
func (r *fleetRelay) get(path string, rng ...string) (int, int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+publicHost+path, nil)
	if len(rng) > 0 {
		req.Header.Set("Range", rng[0])
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, n, err
}

// waitServed polls r until it serves the site, and returns how long that took.
func (r *fleetRelay) waitServed(t *testing.T, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		if st, _, err := r.get("/healthz"); err == nil && st == http.StatusOK {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("%s does not serve the site %v on", r.name, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// One agent keeps a session to each of three relays: the site is served
// through each. A relay killed outright cuts its own visitors at once, with
// an error rather than a hang, while new downloads through the others all
// succeed; restarted, it has the agent back within backWithin.
func TestSeveralRelays(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			ips := []string{"127.0.0.11", "127.0.0.12", "127.0.0.13"}
			f := newFleet(t, tr, ips, ips, false)
			var list []string
			for _, r := range f.relays {
				f.startRelay(r)
				list = append(list, strconv.Quote(r.tunnel))
			}
			f.startAgent("["+strings.Join(list, ", ")+"]", "", "", "")
			for _, r := range f.relays {
				r.waitServed(t, readyTimeout)
			}
			killed, others := f.relays[0], f.relays[1:]

			// A download through the relay about to die.
			ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+publicHost+"/files/large.bin", nil)
			resp, err := killed.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if _, err := io.CopyN(io.Discard, resp.Body, 1<<20); err != nil {
				t.Fatal(err)
			}
			if err := killed.proc.stop(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			killedAt := time.Now()
			_, err = io.Copy(io.Discard, resp.Body)
			if err == nil {
				t.Error("the download through the killed relay ended cleanly, want a connection error")
			}
			if d := time.Since(killedAt); d > 5*time.Second {
				t.Errorf("the killed relay's visitor waited %v for its error", d)
			}

			// New downloads through the others: every one succeeds at once.
			const downloadSize = 8 << 20
			var wg sync.WaitGroup
			var mu sync.Mutex
			var failures []string
			for i := range 12 {
				r := others[i%len(others)]
				wg.Go(func() {
					st, n, err := r.get("/files/large.bin", fmt.Sprintf("bytes=%d-%d", i<<20, i<<20+downloadSize-1))
					if err != nil || st != http.StatusPartialContent || n != downloadSize {
						mu.Lock()
						failures = append(failures, fmt.Sprintf("%s: %d, %d bytes, %v", r.name, st, n, err))
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			if len(failures) > 0 {
				t.Errorf("%d of 12 downloads through the remaining relays failed: %s", len(failures), strings.Join(failures, "; "))
			}

			// The agent is still ready, and once its tunnel notices (QUIC: the
			// heartbeat), its /readyz says which relay it lost.
			var ready struct {
				Ready  bool              `json:"ready"`
				Checks map[string]string `json:"checks"`
			}
			noticed := func() bool {
				getJSON(t, "http://"+f.agentAdminAddr+"/readyz", &ready)
				lost, ok := ready.Checks["relay "+killed.tunnel+" #0"]
				return ok && !strings.HasPrefix(lost, "connected")
			}
			testutil.WaitFor(t, 3*protocol.HeartbeatMisses*protocol.HeartbeatPeriod, "the agent's /readyz to list the killed relay as lost", noticed)
			if !ready.Ready || len(ready.Checks) != 3 {
				t.Errorf("agent /readyz with one relay of three down: %+v", ready)
			}

			f.startRelay(killed)
			restarted := time.Now()
			killed.waitServed(t, backWithin)
			t.Logf("%s: the agent was back on the restarted relay %v after its start", tr, time.Since(restarted).Round(time.Millisecond))
		})
	}
}

// execInNetns runs name in network namespace ns; `ip netns exec` also
// puts /etc/netns/NS/resolv.conf in place of /etc/resolv.conf.
func execInNetns(ns, name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", ns, name}, args...)...)
}

// errNoNetns is why a namespace test cannot run.
var errNoNetns = errors.New("network namespaces need root and iproute2")

// dnsNetns makes a network namespace whose only way out is a veth pair
// (host side hostIP/24, namespace side nsIP/24), with extra host-side
// addresses, and whose resolv.conf names nameserver. It is removed when the
// test ends.
func dnsNetns(t *testing.T, name, hostIP, nsIP, nameserver string, extra ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal(errNoNetns)
	}
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	hostIf, nsIf := name+"h", name+"n"
	_ = exec.Command("ip", "netns", "del", name).Run()
	_ = exec.Command("ip", "link", "del", hostIf).Run()
	run("netns", "add", name)
	t.Cleanup(func() {
		_ = exec.Command("ip", "link", "del", hostIf).Run()
		_ = exec.Command("ip", "netns", "del", name).Run()
		_ = os.RemoveAll(filepath.Join("/etc/netns", name))
	})
	run("link", "add", hostIf, "type", "veth", "peer", "name", nsIf)
	run("link", "set", nsIf, "netns", name)
	run("addr", "add", hostIP+"/24", "dev", hostIf)
	for _, ip := range extra {
		run("addr", "add", ip+"/24", "dev", hostIf)
	}
	run("link", "set", hostIf, "up")
	run("-n", name, "addr", "add", nsIP+"/24", "dev", nsIf)
	run("-n", name, "link", "set", nsIf, "up")
	run("-n", name, "link", "set", "lo", "up")
	dir := filepath.Join("/etc/netns", name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "resolv.conf"), "nameserver "+nameserver+"\noptions timeout:1 attempts:1\n")
	if err := os.Chmod(filepath.Join(dir, "resolv.conf"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// testDNS answers A queries for its names from a set the test changes.
type testDNS struct {
	mu      sync.Mutex
	records map[string][]string // name (with the final dot) → IPv4 addresses
}

func (d *testDNS) set(name string, ips ...string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.records[dns.Fqdn(name)] = ips
}

func (d *testDNS) ServeDNS(w dns.ResponseWriter, q *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(q)
	d.mu.Lock()
	for _, qu := range q.Question {
		if qu.Qtype != dns.TypeA {
			continue
		}
		for _, ip := range d.records[qu.Name] {
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: qu.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 1}, A: net.ParseIP(ip)})
		}
	}
	if len(d.records[q.Question[0].Name]) == 0 {
		m.Rcode = dns.RcodeNameError
	}
	d.mu.Unlock()
	_ = w.WriteMsg(m)
}

// serveDNS runs d on addr (UDP and TCP) until the test ends.
func serveDNS(t *testing.T, addr string, d *testDNS) {
	t.Helper()
	for _, network := range []string{"udp", "tcp"} {
		srv := &dns.Server{Addr: addr, Net: network, Handler: d}
		started := make(chan error, 1)
		srv.NotifyStartedFunc = func() { started <- nil }
		go func() {
			if err := srv.ListenAndServe(); err != nil {
				started <- err
			}
		}()
		if err := <-started; err != nil {
			t.Fatalf("dns %s %s: %v", network, addr, err)
		}
		t.Cleanup(func() { _ = srv.Shutdown() })
	}
}

// An agent given one relay name keeps a session to each of its addresses,
// and a relay added to the name gets its sessions without a restart. The
// agent runs in a network namespace whose resolver is the test's.
func TestRelayNameGainsAddress(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			const ns, hostIP, nsIP = "brwdns", "10.231.0.1", "10.231.0.2"
			tunnelIPs := []string{"10.231.0.11", "10.231.0.12"}
			dnsNetns(t, ns, hostIP, nsIP, hostIP, tunnelIPs...)
			d := &testDNS{records: map[string][]string{}}
			d.set("relays.burrow.test", tunnelIPs[0])
			serveDNS(t, net.JoinHostPort(hostIP, "53"), d)

			f := newFleet(t, tr, tunnelIPs, []string{"127.0.0.21", "127.0.0.22"}, true)
			// The agent in the namespace reaches the service on the host's side of the veth.
			ln, err := net.Listen("tcp", net.JoinHostPort(hostIP, "0"))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			served := make(chan error, 1)
			go func() { served <- origin.Serve(ctx, ln, f.origin) }()
			t.Cleanup(func() { cancel(); <-served })
			for _, r := range f.relays {
				f.startRelay(r)
			}
			_, port, _ := net.SplitHostPort(f.relays[0].tunnel)
			f.startAgent(strconv.Quote("relays.burrow.test:"+port), "relay_refresh: 1s\n", ln.Addr().String(), ns)
			f.relays[0].waitServed(t, readyTimeout)
			if st, _, err := f.relays[1].get("/healthz"); err != nil || st != http.StatusServiceUnavailable {
				t.Fatalf("%s, not in DNS yet, answers %d (%v), want 503", f.relays[1].name, st, err)
			}
			d.set("relays.burrow.test", tunnelIPs...)
			added := time.Now()
			f.relays[1].waitServed(t, readyTimeout)
			t.Logf("%s: the agent had a session to the relay added to DNS %v later", tr, time.Since(added).Round(time.Millisecond))
			if n := strings.Count(f.agentFleetLog.String(), "=== agent"); n != 1 {
				t.Errorf("the agent started %d times", n)
			}
			if st, _, err := f.relays[0].get("/healthz"); err != nil || st != http.StatusOK {
				t.Errorf("%s answers %d (%v) after the other relay joined", f.relays[0].name, st, err)
			}
		})
	}
}
