package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Scenario 10: two relays. One agent keeps sessions to two relays on this
// host, each its own process with its own tunnel and public port, both with
// the same grant and one pinned tunnel identity (the second relay loads the
// first one's certificate through tunnel.cert_file and tunnel.key_file, so
// one relay_fingerprint fits both). The bench downloads the big file
// plan.parallel times at once through one relay, then spread over both
// relays' public ports, and through one relay with two sessions to tell
// what the second relay brings from what a second session does; then it
// reads the memory of fresh agents holding 1 to 8 idle sessions.

// relaySetup is how many relays the agent dials and how many sessions it
// keeps to each.
type relaySetup struct{ relays, conns int }

func (s relaySetup) sessions() int { return s.relays * s.conns }

func (s relaySetup) String() string { return fmt.Sprintf("%dx%d", s.relays, s.conns) }

// relaysBulkSetups are the agents the downloads of scenario 10 go through:
// one relay, two relays, and one relay with two sessions.
var relaysBulkSetups = []relaySetup{{1, 1}, {2, 1}, {1, 2}}

// relaysSetups are the agents whose memory scenario 10 reads: one relay and
// one session first, the baseline, then two relays with each of
// plan.relaysConns sessions.
func (p plan) relaysSetups() []relaySetup {
	out := []relaySetup{{1, 1}}
	for _, c := range p.relaysConns {
		out = append(out, relaySetup{2, c})
	}
	return out
}

// Metric ids of scenario 10, by setup or sessions; the column key is the
// transport.
func mS10MBps(s relaySetup) string    { return "s10.mbps." + s.String() }
func mS10CPU(s relaySetup) string     { return "s10.cpu." + s.String() }
func mS10RSS(sessions int) string     { return "s10.rss." + strconv.Itoa(sessions) }
func mS10PerSess(sessions int) string { return "s10.persession." + strconv.Itoa(sessions) }

// relayNames name the two relays in logs and the report.
var relayNames = [2]string{"A", "B"}

// relayRig is two relays and, at times, an agent.
type relayRig struct {
	b         *bench
	transport string
	dir       string
	origin    string    // the files route's service
	tunnels   [2]string // tunnel.listen of each relay
	publics   [2]string // public.http of each relay
	relayLogs [2]string
	relays    [2]*child
	fp        string // both relays' tunnel fingerprint
	agent     *child // nil between agents
	agentConf string
	agentLog  string
	seen      map[string]int // bytes of each log that events already read
}

// relays is scenario 10, for each transport.
func (b *bench) relays(ctx context.Context) {
	org, originAddr, err := b.startLoopbackOrigin("relays-origin")
	if err != nil {
		b.rep.otherFailures = append(b.rep.otherFailures, err.Error())
		return
	}
	defer org.stop()
	if err := waitReady(ctx, &target{name: "origin", addr: originAddr, host: filesHost}, 10*time.Second); err != nil {
		b.rep.otherFailures = append(b.rep.otherFailures, "origin: "+err.Error())
		return
	}
	b.logf("scenario 10: %s", scenarioNames[10])
	l0, load0 := readLoad(), loadAvg()
	for _, tr := range []string{"quic", "tcp"} {
		if ctx.Err() != nil {
			break
		}
		g, err := b.startRelays(ctx, tr, originAddr)
		if err != nil {
			b.rep.burrowFailures = append(b.rep.burrowFailures, fmt.Sprintf("scenario 10, start two relays for %s: %v", transportName(tr), err))
			continue
		}
		b.relaysRuns(ctx, g)
		g.stop()
	}
	b.noteLoad(10, "", l0)
	b.rep.scenarioNote(10, "load average (1, 5, 15 min) at its start %s, at its end %s", load0, loadAvg())
}

// relaysRuns measures one transport: each run the downloads through one
// relay and through two, then the agent's memory for every setup.
func (b *bench) relaysRuns(ctx context.Context, g *relayRig) {
	tr := g.transport
	ft := &target{key: tr, name: "two relays, " + transportName(tr), burrow: true, logs: g.events}
	for run := 1; run <= b.plan.runs; run++ {
		for _, s := range relaysBulkSetups {
			if ctx.Err() != nil {
				return
			}
			start := time.Now()
			if err := b.relaysBulk(ctx, g, s); err != nil && !errors.Is(err, context.Canceled) {
				b.fail(ft, 10, fmt.Errorf("run %d, downloads through %d relay(s) × %d connection(s): %w", run, s.relays, s.conns, err))
				continue
			}
			b.logf("  scenario 10 run %d/%d %s, %d relay(s) × %d connection(s): downloads in %s",
				run, b.plan.runs, transportName(tr), s.relays, s.conns, time.Since(start).Round(time.Millisecond))
		}
		rss := map[int]int64{} // by sessions
		for _, s := range b.plan.relaysSetups() {
			if ctx.Err() != nil {
				return
			}
			v, err := g.idleRSS(ctx, s, b.plan.relaysSettle)
			if err != nil {
				if !errors.Is(err, context.Canceled) {
					b.fail(ft, 10, fmt.Errorf("run %d, agent with %d relay(s) × %d connection(s): %w", run, s.relays, s.conns, err))
				}
				continue
			}
			rss[s.sessions()] = v
			b.rep.add(mS10RSS(s.sessions()), tr, float64(v)/mib)
			b.logf("  scenario 10 run %d/%d %s, %d session(s): agent RSS %.1f MiB", run, b.plan.runs, transportName(tr), s.sessions(), float64(v)/mib)
		}
		if base, ok := rss[1]; ok {
			for k, v := range rss {
				if k > 1 {
					b.rep.add(mS10PerSess(k), tr, float64(v-base)/kib/float64(k-1))
				}
			}
		}
	}
	g.stopAgent()
}

// relaysBulk runs an agent for setup s and downloads the big file
// plan.parallel times at once, spread evenly over the public ports of the
// relays it dials.
func (b *bench) relaysBulk(ctx context.Context, g *relayRig, s relaySetup) error {
	if err := g.startAgent(ctx, s); err != nil {
		return err
	}
	var ts []*target
	for i := range s.relays {
		t := g.target(i)
		if err := waitReady(ctx, t, 20*time.Second); err != nil {
			return err
		}
		ts = append(ts, t)
	}
	pids := g.pids()
	cpu0 := cpuSeconds(pids)
	moved, d, err := b.downloadBig(ctx, ts, b.plan.parallel)
	cpu1 := cpuSeconds(pids)
	if err != nil {
		return err
	}
	b.rep.add(mS10MBps(s), g.transport, mbps(moved, d))
	b.rep.add(mS10CPU(s), g.transport, (cpu1-cpu0)/(float64(moved)/gib))
	return nil
}

// startRelays writes two relays' configs, the second sharing the first
// one's tunnel identity, and starts both.
func (b *bench) startRelays(ctx context.Context, tr, originAddr string) (*relayRig, error) {
	dir, err := mkdir(b.dir, "relays-"+tr)
	if err != nil {
		return nil, err
	}
	g := &relayRig{
		b: b, transport: tr, dir: dir, origin: originAddr,
		agentConf: filepath.Join(dir, "agent.yaml"), agentLog: filepath.Join(dir, "agent.log"),
	}
	stateA := filepath.Join(dir, "relay-a-state")
	var confs [2]string
	for i := range 2 {
		tport, err := freePort()
		if err != nil {
			return nil, err
		}
		pport, err := freePort()
		if err != nil {
			return nil, err
		}
		g.tunnels[i] = "127.0.0.1:" + strconv.Itoa(tport)
		g.publics[i] = "127.0.0.1:" + strconv.Itoa(pport)
		name := "relay-" + strings.ToLower(relayNames[i])
		rc := relayConf{
			tunnelListen: g.tunnels[i], publicHTTP: g.publics[i],
			stateDir: filepath.Join(dir, name+"-state"), noHandshakeLimit: true,
		}
		if i > 0 {
			// As the README tells: the first relay's identity, copied.
			rc.tunnelCert, rc.tunnelKey = filepath.Join(stateA, "tunnel.crt"), filepath.Join(stateA, "tunnel.key")
		}
		confs[i] = filepath.Join(dir, name+".yaml")
		g.relayLogs[i] = filepath.Join(dir, name+".log")
		if err := os.WriteFile(confs[i], []byte(b.relayYAML(rc)), 0o600); err != nil {
			return nil, err
		}
		// The first call creates relay A's identity, which B then loads.
		fp, err := b.fingerprint(ctx, confs[i])
		if err != nil {
			return nil, err
		}
		if i == 0 {
			g.fp = fp
		} else if fp != g.fp {
			return nil, fmt.Errorf("relay B's tunnel fingerprint %s differs from relay A's %s", fp, g.fp)
		}
	}
	for i := range 2 {
		g.relays[i], err = startRelay("relay "+relayNames[i], g.relayLogs[i], b.bin, "relay", "--config", confs[i])
		if err != nil {
			g.stop()
			return nil, err
		}
	}
	return g, nil
}

// startAgent replaces the agent with a fresh one for setup s and returns
// once it has logged every session connected.
func (g *relayRig) startAgent(ctx context.Context, s relaySetup) error {
	g.stopAgent()
	// The earlier agents' logs are kept next to the new one.
	_ = os.Rename(g.agentLog, g.agentLog+"."+time.Now().Format("150405.000"))
	conf := g.b.agentYAML(agentConf{
		relays: g.tunnels[:s.relays], fingerprint: g.fp, transport: g.transport,
		connections: s.conns, services: [][2]string{{filesHost, "http://" + g.origin}},
	})
	if err := os.WriteFile(g.agentConf, []byte(conf), 0o600); err != nil {
		return err
	}
	var err error
	g.agent, err = startChild("agent", g.agentLog, g.b.bin, "agent", "--config", g.agentConf)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	for {
		if err := g.alive(); err != nil {
			return err
		}
		n := strings.Count(readFile(g.agentLog), "msg=connected ")
		if n >= s.sessions() {
			return nil
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("%d of %d sessions connected after 20 s: %s", n, s.sessions(), g.agent.logTail())
			}
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// idleRSS starts a fresh agent for setup s and returns its resident set
// once every session is connected and it has been idle for settle: the
// median of five readings 100 ms apart.
func (g *relayRig) idleRSS(ctx context.Context, s relaySetup, settle time.Duration) (int64, error) {
	if err := g.startAgent(ctx, s); err != nil {
		return 0, err
	}
	select {
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-time.After(settle):
	}
	var reads []int64
	for i := range 5 {
		if i > 0 {
			time.Sleep(100 * time.Millisecond)
		}
		reads = append(reads, rssBytes([]int{g.agent.pid()}))
	}
	if err := g.alive(); err != nil {
		return 0, err
	}
	slices.Sort(reads)
	return reads[len(reads)/2], nil
}

// target is the public side of relay i.
func (g *relayRig) target(i int) *target {
	return &target{
		key: g.transport, name: fmt.Sprintf("relay %s, Burrow %s", relayNames[i], transportName(g.transport)),
		addr: g.publics[i], host: filesHost, burrow: true, pids: g.pids, alive: g.alive, logs: g.events,
	}
}

// pids are both relays and the agent.
func (g *relayRig) pids() []int {
	out := []int{g.relays[0].pid(), g.relays[1].pid()}
	if g.agent != nil {
		out = append(out, g.agent.pid())
	}
	return out
}

// alive reports a relay or the agent that has exited.
func (g *relayRig) alive() error {
	for _, c := range []*child{g.relays[0], g.relays[1], g.agent} {
		if c != nil && c.exited() {
			return fmt.Errorf("%s exited (%v); log %s:\n%s", c.name, c.err, c.logPath, c.logTail())
		}
	}
	return nil
}

// events returns what the relays and the agent logged about sessions and
// problems since the last call.
func (g *relayRig) events() string {
	if g.seen == nil {
		g.seen = map[string]int{}
	}
	return logEvents(g.seen, [][2]string{
		{"relay A", g.relayLogs[0]}, {"relay B", g.relayLogs[1]}, {"agent", g.agentLog},
	})
}

func (g *relayRig) stopAgent() {
	g.agent.stop()
	g.agent = nil
}

func (g *relayRig) stop() {
	g.stopAgent()
	for _, c := range g.relays {
		c.stop()
	}
}
