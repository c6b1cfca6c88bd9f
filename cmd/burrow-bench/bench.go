package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// bench is one benchmark run: its temp dir, tools, and report.
type bench struct {
	opts  options
	plan  plan
	bin   string // absolute path of the burrow binary
	dir   string // temp dir: data, configs, logs
	data  string // the origin's document root
	tools tools
	token token
	rep   *report
	// restore undoes changes to the host (a sysctl), in cleanup.
	restore []func()
}

func newBench(o options, p plan) (*bench, error) {
	bin, err := filepath.Abs(o.bin)
	if err != nil {
		return nil, err
	}
	if st, err := os.Stat(bin); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
		return nil, fmt.Errorf("%s is not an executable: build it with `make build` (or pass -bin)", o.bin)
	}
	n, nofileErr := raiseNofile()
	dir, err := os.MkdirTemp("", "burrow-bench-")
	if err != nil {
		return nil, err
	}
	// nginx workers read the data and write their temp files here.
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	b := &bench{opts: o, plan: p, bin: bin, dir: dir, tools: checkTools()}
	m := describeMachine(context.Background(), bin)
	m.nofile = n
	if nofileErr != nil {
		m.nofileErr = fmt.Sprintf("setrlimit to %d refused: %v", nofile, nofileErr)
		b.logf("RLIMIT_NOFILE stays %d: %s", n, m.nofileErr)
	}
	b.rep = newReport(o, p, m, b.tools)
	for _, note := range b.tools.notes {
		b.logf("%s", note)
	}
	return b, nil
}

func (b *bench) cleanup() {
	for _, f := range b.restore {
		f()
	}
	if b.opts.keep {
		b.logf("kept %s", b.dir)
		return
	}
	os.RemoveAll(b.dir)
}

func (b *bench) logf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "%s burrow-bench: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, a...))
}

// fail records a failed measurement; Burrow's failures set the exit status.
func (b *bench) fail(t *target, scenario int, err error) {
	msg := fmt.Sprintf("scenario %d, %s: %v", scenario, t.name, err)
	if t.logs != nil {
		if l := t.logs(); l != "" {
			msg += "\n" + l
		}
	}
	b.logf("FAIL %s", msg)
	if t.burrow {
		b.rep.burrowFailures = append(b.rep.burrowFailures, msg)
	} else {
		b.rep.otherFailures = append(b.rep.otherFailures, msg)
	}
}

func (b *bench) runAll(ctx context.Context) {
	var err error
	if b.token, err = newToken(ctx, b.bin); err != nil {
		b.rep.burrowFailures = append(b.rep.burrowFailures, err.Error())
		return
	}
	b.data, err = mkdir(b.dir, "data")
	if err == nil {
		start := time.Now()
		err = makeData(b.data, b.plan.bigSize, b.plan.wanSize)
		b.logf("wrote the origin's files (%s) in %s", sizeName(b.plan.bigSize), time.Since(start).Round(time.Millisecond))
	}
	if err != nil {
		b.rep.otherFailures = append(b.rep.otherFailures, "origin data: "+err.Error())
		return
	}
	loopback := false
	for _, s := range []int{1, 2, 3, 4, 5, 6, 9} {
		loopback = loopback || b.plan.scenarios[s]
	}
	if loopback {
		b.loopback(ctx)
	}
	if b.plan.scenarios[7] && ctx.Err() == nil {
		if b.tools.netns {
			b.wan(ctx)
		} else {
			b.rep.wanNotes = append(b.rep.wanNotes, "Skipped: network namespaces or TUN unavailable (see Notes).")
		}
	}
	if b.plan.scenarios[8] && ctx.Err() == nil {
		if b.tools.netns {
			b.uplink(ctx)
		} else {
			b.rep.scenarioNote(8, "skipped: network namespaces or TUN unavailable")
		}
	}
	if b.plan.scenarios[10] && ctx.Err() == nil {
		b.relays(ctx)
	}
}

// loopback sets up the four paths on this host's loopback and runs
// scenarios 1-6 and 9.
func (b *bench) loopback(ctx context.Context) {
	echo, err := startEchoServer()
	if err != nil {
		b.rep.otherFailures = append(b.rep.otherFailures, "websocket echo server: "+err.Error())
		return
	}
	defer echo.close()
	org, originAddr, err := b.startLoopbackOrigin("origin")
	if err != nil {
		b.rep.otherFailures = append(b.rep.otherFailures, err.Error())
		return
	}
	defer org.stop()
	alive := func(c *child) func() error {
		return func() error {
			if c != nil && c.exited() {
				return fmt.Errorf("%s exited (%v): %s", c.name, c.err, c.logTail())
			}
			return nil
		}
	}
	direct := &target{key: "direct", name: "direct", addr: originAddr, host: filesHost, alive: alive(org.nginx)}
	if err := waitReady(ctx, direct, 10*time.Second); err != nil {
		b.rep.otherFailures = append(b.rep.otherFailures, "origin: "+err.Error())
		return
	}
	targets := []*target{direct}

	if b.tools.nginx {
		if t, stop, err := b.startProxy(ctx, originAddr, echo.addr); err != nil {
			b.rep.otherFailures = append(b.rep.otherFailures, "nginx proxy: "+err.Error())
		} else {
			defer stop()
			targets = append(targets, t)
		}
	}
	for _, tr := range []string{"quic", "tcp"} {
		t, stop, err := b.startLoopbackBurrow(ctx, tr, originAddr, echo.addr)
		if err != nil {
			b.rep.burrowFailures = append(b.rep.burrowFailures, fmt.Sprintf("start Burrow %s: %v", transportName(tr), err))
			continue
		}
		defer stop()
		targets = append(targets, t)
	}
	for _, t := range targets {
		b.rep.columns = append(b.rep.columns, column{key: t.key, name: t.name})
	}
	b.logf("paths ready: %d", len(targets))

	scenarios := []func(context.Context, []*target){
		1: b.scenarioSingle, 2: b.scenarioParallel, 3: b.scenarioWrk,
		4: b.scenarioInteractive, 5: b.scenarioTTFB, 6: b.scenarioScale,
		9: b.scenarioSoak,
	}
	for _, s := range []int{1, 2, 3, 4, 5, 6, 9} {
		if b.plan.scenarios[s] && ctx.Err() == nil {
			b.logf("scenario %d: %s", s, scenarioNames[s])
			l0 := readLoad()
			scenarios[s](ctx, targets)
			b.noteLoad(s, "", l0)
		}
	}
}

// noteLoad records how long scenario s took and how busy other processes
// kept the machine meanwhile (a noisy neighbour skews every figure).
func (b *bench) noteLoad(s int, part string, since machineLoad) {
	now := readLoad()
	share := othersShare(since, now, b.rep.machine.cpus)
	if part != "" {
		part += ": "
	}
	b.rep.scenarioNote(s, "%stook %s; other processes used %.0f%% of the machine's CPU meanwhile",
		part, now.at.Sub(since.at).Round(time.Second), share*100)
	b.logf("scenario %d done in %s (others used %.0f%% of the CPUs)", s, now.at.Sub(since.at).Round(time.Second), share*100)
}

// startProxy runs the nginx reverse proxy in front of the origin and the echo server.
func (b *bench) startProxy(ctx context.Context, originAddr, echoAddr string) (*target, func(), error) {
	port, err := freePort()
	if err != nil {
		return nil, nil, err
	}
	dir, err := mkdir(b.dir, "nginx-proxy")
	if err != nil {
		return nil, nil, err
	}
	listen := "127.0.0.1:" + strconv.Itoa(port)
	conf := nginxConf(dir, proxyServers(listen, originAddr, echoAddr))
	var proxy *child
	start := func() (err error) {
		proxy, err = startNginx("nginx proxy", dir, conf, "")
		return err
	}
	if err := start(); err != nil {
		return nil, nil, err
	}
	t := &target{key: "nginx", name: "nginx proxy", addr: listen, host: filesHost}
	t.pids = func() []int { return []int{proxy.pid()} }
	t.alive = func() error {
		if proxy.exited() {
			return fmt.Errorf("nginx proxy exited (%v): %s", proxy.err, proxy.logTail())
		}
		return nil
	}
	t.restart = func() error {
		proxy.stop()
		if err := start(); err != nil {
			return err
		}
		return waitReady(ctx, t, 10*time.Second)
	}
	if err := waitReady(ctx, t, 10*time.Second); err != nil {
		proxy.stop()
		return nil, nil, err
	}
	return t, func() { proxy.stop() }, nil
}

// startLoopbackBurrow runs a relay and an agent on loopback with transport tr.
func (b *bench) startLoopbackBurrow(ctx context.Context, tr, originAddr, echoAddr string) (*target, func(), error) {
	tport, err := freePort()
	if err != nil {
		return nil, nil, err
	}
	pport, err := freePort()
	if err != nil {
		return nil, nil, err
	}
	tunnel := "127.0.0.1:" + strconv.Itoa(tport)
	public := "127.0.0.1:" + strconv.Itoa(pport)
	pair, err := b.startBurrow(ctx, pairSpec{
		name: "burrow-" + tr, transport: tr,
		tunnelListen: tunnel, relayAddr: tunnel, publicHTTP: public,
		services: [][2]string{{filesHost, "http://" + originAddr}, {wsHost, "http://" + echoAddr}},
	})
	if err != nil {
		return nil, nil, err
	}
	t := &target{key: tr, name: "Burrow " + transportName(tr), addr: public, host: filesHost, burrow: true,
		pids: pair.pids, alive: pair.alive, logs: pair.events, admin: pair.adminAddr}
	t.restart = func() error {
		if err := pair.restart(); err != nil {
			return err
		}
		return waitReady(ctx, t, 20*time.Second)
	}
	if err := waitReady(ctx, t, 20*time.Second); err != nil {
		pair.stop()
		return nil, nil, err
	}
	return t, pair.stop, nil
}

// eachRun runs fn for every run and every target, runs outermost, so that
// drift over time spreads over all paths alike.
func (b *bench) eachRun(ctx context.Context, scenario int, targets []*target, fn func(context.Context, *target) error) {
	for run := 1; run <= b.plan.runs; run++ {
		for _, t := range targets {
			if ctx.Err() != nil {
				return
			}
			if err := t.check(); err != nil {
				b.fail(t, scenario, err)
				continue
			}
			start := time.Now()
			err := fn(ctx, t)
			if err != nil && !errors.Is(err, context.Canceled) {
				b.fail(t, scenario, fmt.Errorf("run %d: %w", run, err))
				continue
			}
			b.logf("  scenario %d run %d/%d %-18s %s", scenario, run, b.plan.runs, t.name, time.Since(start).Round(time.Millisecond))
		}
	}
}
