package redisstore_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/burrow-tunnel/burrow/internal/redisstore"
	"github.com/burrow-tunnel/burrow/internal/redistest"
	"github.com/burrow-tunnel/burrow/internal/testutil"
)

func TestMain(m *testing.M) {
	if os.Getenv(holderEnv) != "" {
		os.Exit(runHolder())
	}
	goleak.VerifyTestMain(m)
}

// newStore opens a store on addr that logs into the test's output (and into
// logs, when not nil) and closes when the test ends.
func newStore(t *testing.T, addr, prefix string, ttl time.Duration, logs io.Writer) *redisstore.Store {
	t.Helper()
	w := t.Output()
	if logs != nil {
		w = io.MultiWriter(w, logs)
	}
	s, err := redisstore.New(redisstore.Options{
		Address: addr, KeyPrefix: prefix, LockTTL: ttl,
		Log: slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return s
}

// TestStorage: the behaviour certmagic expects of a Storage, file-system
// semantics over flat keys.
func TestStorage(t *testing.T) {
	r := redistest.Start(t)
	s := newStore(t, r.Addr, "burrow", 0, nil)
	other := newStore(t, r.Addr, "elsewhere", 0, nil)
	ctx := context.Background()

	files := map[string]string{
		"certificates/ca/a.example/a.example.crt": "cert a",
		"certificates/ca/a.example/a.example.key": "key a",
		"certificates/ca/b.example/b.example.crt": "cert b",
		"acme/ca/users/owner/owner.json":          "account",
		"last_clean.json":                         "{}",
		"certificatesX/not-below-certificates":    "x",
	}
	before := time.Now()
	for k, v := range files {
		if err := s.Store(ctx, k, []byte(v)); err != nil {
			t.Fatalf("store %s: %v", k, err)
		}
	}
	for k, v := range files {
		got, err := s.Load(ctx, k)
		if err != nil || string(got) != v {
			t.Errorf("load %s = %q, %v; want %q", k, got, err, v)
		}
	}
	if err := s.Store(ctx, "last_clean.json", []byte(`{"again":1}`)); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Load(ctx, "last_clean.json"); string(got) != `{"again":1}` {
		t.Errorf("overwritten value = %q", got)
	}
	if _, err := s.Load(ctx, "certificates/ca/c.example/c.example.crt"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("load of a missing key: %v, want fs.ErrNotExist", err)
	}
	if _, err := s.Load(ctx, "certificates/ca"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("load of a directory: %v, want fs.ErrNotExist", err)
	}

	for key, want := range map[string]bool{
		"certificates/ca/a.example/a.example.crt": true,
		"certificates/ca/a.example":               true,
		"certificates":                            true,
		"certificates/c":                          false, // a prefix of a name is not a directory
		"certificates/ca/a.example/a.example":     false,
		"nothing":                                 false,
	} {
		if got := s.Exists(ctx, key); got != want {
			t.Errorf("exists %s = %v, want %v", key, got, want)
		}
	}

	list := func(dir string, recursive bool) []string {
		t.Helper()
		keys, err := s.List(ctx, dir, recursive)
		if err != nil {
			t.Fatalf("list %s (recursive %v): %v", dir, recursive, err)
		}
		return keys
	}
	if got, want := list("certificates", false), []string{"certificates/ca"}; !slices.Equal(got, want) {
		t.Errorf("list certificates = %q, want %q", got, want)
	}
	if got, want := list("certificates/ca", false), []string{"certificates/ca/a.example", "certificates/ca/b.example"}; !slices.Equal(got, want) {
		t.Errorf("list certificates/ca = %q, want %q", got, want)
	}
	if got, want := list("certificates/ca/a.example/", false), []string{"certificates/ca/a.example/a.example.crt", "certificates/ca/a.example/a.example.key"}; !slices.Equal(got, want) {
		t.Errorf("list certificates/ca/a.example/ = %q, want %q", got, want)
	}
	if got, want := list("certificates", true), []string{
		"certificates/ca",
		"certificates/ca/a.example", "certificates/ca/a.example/a.example.crt", "certificates/ca/a.example/a.example.key",
		"certificates/ca/b.example", "certificates/ca/b.example/b.example.crt",
	}; !slices.Equal(got, want) {
		t.Errorf("list certificates recursively = %q, want %q", got, want)
	}
	if got, want := list("", false), []string{"acme", "certificates", "certificatesX", "last_clean.json"}; !slices.Equal(got, want) {
		t.Errorf("list of the root = %q, want %q", got, want)
	}
	if _, err := s.List(ctx, "ocsp", false); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("list of a missing directory: %v, want fs.ErrNotExist", err)
	}

	info, err := s.Stat(ctx, "certificates/ca/a.example/a.example.key")
	if err != nil {
		t.Fatal(err)
	}
	if !info.IsTerminal || info.Size != int64(len("key a")) || info.Key != "certificates/ca/a.example/a.example.key" ||
		info.Modified.Before(before.Add(-time.Second)) || info.Modified.After(time.Now().Add(time.Second)) {
		t.Errorf("stat of a file = %+v (stored after %v)", info, before)
	}
	if info, err := s.Stat(ctx, "certificates/ca"); err != nil || info.IsTerminal || info.Key != "certificates/ca" {
		t.Errorf("stat of a directory = %+v, %v", info, err)
	}
	if _, err := s.Stat(ctx, "certificates/nothing"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stat of a missing key: %v, want fs.ErrNotExist", err)
	}

	// Another prefix is another store.
	if other.Exists(ctx, "certificates") {
		t.Error("a store with another key prefix sees this one's keys")
	}
	if err := other.Store(ctx, "certificates/ca/a.example/a.example.crt", []byte("other")); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Load(ctx, "certificates/ca/a.example/a.example.crt"); string(got) != "cert a" {
		t.Errorf("a store with another prefix overwrote this one's key: %q", got)
	}

	// Deleting a directory deletes what is below it, and only that.
	if err := s.Delete(ctx, "certificates/ca/a.example"); err != nil {
		t.Fatal(err)
	}
	if s.Exists(ctx, "certificates/ca/a.example") || s.Exists(ctx, "certificates/ca/a.example/a.example.key") {
		t.Error("a deleted directory still exists")
	}
	if got, want := list("certificates", true), []string{"certificates/ca", "certificates/ca/b.example", "certificates/ca/b.example/b.example.crt"}; !slices.Equal(got, want) {
		t.Errorf("after deleting a directory, list = %q, want %q", got, want)
	}
	if err := s.Delete(ctx, "certificates"); err != nil {
		t.Fatal(err)
	}
	if !s.Exists(ctx, "certificatesX/not-below-certificates") {
		t.Error("deleting certificates deleted certificatesX")
	}
	if err := s.Delete(ctx, "last_clean.json"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "last_clean.json"); err != nil {
		t.Errorf("deleting a missing key: %v, want nil", err)
	}
	if got, want := list("", true), []string{"acme", "acme/ca", "acme/ca/users", "acme/ca/users/owner", "acme/ca/users/owner/owner.json", "certificatesX", "certificatesX/not-below-certificates"}; !slices.Equal(got, want) {
		t.Errorf("what is left = %q, want %q", got, want)
	}
	if !other.Exists(ctx, "certificates/ca/a.example/a.example.crt") {
		t.Error("deleting in one prefix deleted another prefix's key")
	}
}

// TestLockMutualExclusion: two stores, as two relays would have, never hold
// one lock at once; a waiter gets it when the holder releases it.
func TestLockMutualExclusion(t *testing.T) {
	r := redistest.Start(t)
	a := newStore(t, r.Addr, "burrow", 0, nil)
	b := newStore(t, r.Addr, "burrow", 0, nil)
	ctx := context.Background()

	if err := a.Lock(ctx, "issue_cert_a.example"); err != nil {
		t.Fatal(err)
	}
	if ok, err := b.TryLock(ctx, "issue_cert_a.example"); ok || err != nil {
		t.Fatalf("second store's TryLock on a held lock = %v, %v; want false", ok, err)
	}
	if ok, err := b.TryLock(ctx, "issue_cert_b.example"); !ok || err != nil {
		t.Fatalf("TryLock of another name = %v, %v; want true", ok, err)
	}
	if err := b.Unlock(ctx, "issue_cert_b.example"); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithCancel(ctx)
	waited := make(chan error, 1)
	go func() { waited <- b.Lock(short, "issue_cert_a.example") }()
	cancel()
	if err := <-waited; !errors.Is(err, context.Canceled) {
		t.Fatalf("Lock whose context ends while the lock is held: %v, want context.Canceled", err)
	}
	got := make(chan error, 1)
	go func() { got <- b.Lock(ctx, "issue_cert_a.example") }()
	if err := a.Unlock(ctx, "issue_cert_a.example"); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatalf("the waiter's Lock after the release: %v", err)
	}
	if err := b.Unlock(ctx, "issue_cert_a.example"); err != nil {
		t.Fatal(err)
	}

	// Many workers on both stores: never two inside at once.
	var inside, most, entered atomic.Int32
	var wg sync.WaitGroup
	for i := range 8 {
		s := []*redisstore.Store{a, b}[i%2]
		wg.Go(func() {
			for range 5 {
				if err := s.Lock(ctx, "shared"); err != nil {
					t.Error(err)
					return
				}
				n := inside.Add(1)
				for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
				}
				entered.Add(1)
				time.Sleep(time.Millisecond)
				inside.Add(-1)
				if err := s.Unlock(ctx, "shared"); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if most.Load() != 1 || entered.Load() != 40 {
		t.Errorf("%d workers inside at once at most, %d entries; want 1 and 40", most.Load(), entered.Load())
	}
}

// TestLockRefreshedWhileHeld: a held lock outlives its TTL many times over.
func TestLockRefreshedWhileHeld(t *testing.T) {
	r := redistest.Start(t)
	const ttl = 600 * time.Millisecond
	a := newStore(t, r.Addr, "burrow", ttl, nil)
	b := newStore(t, r.Addr, "burrow", ttl, nil)
	ctx := context.Background()
	if err := a.Lock(ctx, "renew"); err != nil {
		t.Fatal(err)
	}
	// Without its refresher the lock would be gone after one TTL.
	wait, cancel := context.WithTimeout(ctx, 6*ttl)
	defer cancel()
	if err := b.Lock(wait, "renew"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lock of a lock held and refreshed elsewhere: %v, want it to wait until its context ends", err)
	}
	if err := a.Unlock(ctx, "renew"); err != nil {
		t.Fatalf("unlock after %v: %v", 6*ttl, err)
	}
}

// TestLockExpiresWhenHolderDies: a relay killed while it holds a lock (no
// refresh, no unlock) blocks the others for one TTL, not for ever.
func TestLockExpiresWhenHolderDies(t *testing.T) {
	r := redistest.Start(t)
	b := newStore(t, r.Addr, "burrow", 0, nil)
	ctx := context.Background()
	h := startHolder(t, r.Addr, "issue_cert_a.example", time.Second)
	if ok, err := b.TryLock(ctx, "issue_cert_a.example"); ok || err != nil {
		t.Fatalf("TryLock while another process holds the lock = %v, %v; want false", ok, err)
	}
	h.kill()
	wait, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := b.Lock(wait, "issue_cert_a.example"); err != nil {
		t.Fatalf("Lock after the holder died: %v", err)
	}
	if err := b.Unlock(ctx, "issue_cert_a.example"); err != nil {
		t.Fatal(err)
	}
}

// TestUnlockByNonOwnerRefused: a store cannot release a lock it does not
// hold, and a holder whose lock expired while it stalled cannot release the
// lock's next holder's.
func TestUnlockByNonOwnerRefused(t *testing.T) {
	r := redistest.Start(t)
	a := newStore(t, r.Addr, "burrow", 0, nil)
	b := newStore(t, r.Addr, "burrow", 0, nil)
	c := newStore(t, r.Addr, "burrow", 0, nil)
	ctx := context.Background()

	if err := a.Lock(ctx, "mine"); err != nil {
		t.Fatal(err)
	}
	if err := b.Unlock(ctx, "mine"); err == nil || !strings.Contains(err.Error(), "does not hold") {
		t.Fatalf("unlock by a store that does not hold the lock: %v, want refused", err)
	}
	if ok, _ := c.TryLock(ctx, "mine"); ok {
		t.Fatal("the refused unlock released the lock")
	}
	if err := a.Unlock(ctx, "mine"); err != nil {
		t.Fatal(err)
	}

	// A holder process stops (SIGSTOP): no refresh, its lock expires, b takes it.
	h := startHolder(t, r.Addr, "stalled", time.Second)
	h.signal(syscall.SIGSTOP)
	wait, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := b.Lock(wait, "stalled"); err != nil {
		t.Fatalf("Lock after the holder stalled: %v", err)
	}
	h.signal(syscall.SIGCONT)
	if got := h.unlock(); !strings.Contains(got, "had expired") {
		t.Fatalf("the stalled holder's unlock: %q, want it refused", got)
	}
	if ok, _ := c.TryLock(ctx, "stalled"); ok {
		t.Fatal("the stalled holder's unlock released the new holder's lock")
	}
	if err := b.Unlock(ctx, "stalled"); err != nil {
		t.Fatalf("the new holder's unlock: %v", err)
	}
}

// TestUnreachable: with Redis gone every call fails at once with
// ErrUnavailable and the store logs it once; when Redis is back, once more.
func TestUnreachable(t *testing.T) {
	r := redistest.Start(t)
	logs := &testutil.SyncBuffer{}
	s := newStore(t, r.Addr, "burrow", 0, logs)
	ctx := context.Background()
	if err := s.Store(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	r.Stop()
	for range 3 {
		if _, err := s.Load(ctx, "k"); !errors.Is(err, redisstore.ErrUnavailable) {
			t.Fatalf("load with Redis stopped: %v, want ErrUnavailable", err)
		}
	}
	if err := s.Lock(ctx, "x"); !errors.Is(err, redisstore.ErrUnavailable) {
		t.Fatalf("lock with Redis stopped: %v, want ErrUnavailable", err)
	}
	if err := s.Store(ctx, "k", []byte("v")); !errors.Is(err, redisstore.ErrUnavailable) {
		t.Fatalf("store with Redis stopped: %v, want ErrUnavailable", err)
	}
	if s.Exists(ctx, "k") {
		t.Error("exists with Redis stopped = true")
	}
	if n := strings.Count(logs.String(), "certificate store unreachable"); n != 1 {
		t.Errorf("%d lines about the outage, want 1:\n%s", n, logs)
	}
	r.Start()
	if _, err := s.Load(ctx, "k"); !errors.Is(err, fs.ErrNotExist) { // a restarted Redis without persistence is empty
		t.Fatalf("load with Redis back: %v, want fs.ErrNotExist", err)
	}
	if err := s.Store(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(logs.String(), "certificate store reachable again"); n != 1 {
		t.Errorf("%d lines about the recovery, want 1:\n%s", n, logs)
	}
}

// TestPassword: a store with Redis's password works; one with a wrong
// password fails with ErrUnavailable and logs once, saying what to check.
func TestPassword(t *testing.T) {
	r := redistest.Start(t, "--requirepass", "s3cret")
	ctx := context.Background()
	good, err := redisstore.New(redisstore.Options{Address: r.Addr, Password: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	defer good.Close()
	if err := good.Store(ctx, "k", []byte("v")); err != nil {
		t.Fatalf("store with the password: %v", err)
	}
	logs := &testutil.SyncBuffer{}
	bad, err := redisstore.New(redisstore.Options{Address: r.Addr, Password: "wrong",
		Log: slog.New(slog.NewTextHandler(io.MultiWriter(logs, t.Output()), nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	for range 3 {
		if _, err := bad.Load(ctx, "k"); !errors.Is(err, redisstore.ErrUnavailable) {
			t.Fatalf("load with a wrong password: %v, want ErrUnavailable", err)
		}
	}
	if n := strings.Count(logs.String(), "password_file"); n != 1 {
		t.Errorf("%d lines naming password_file, want 1:\n%s", n, logs)
	}
}

// TestWatch: Watch says when Redis is reachable: at its first ping, and
// again after an outage.
func TestWatch(t *testing.T) {
	r := redistest.Start(t)
	logs := &testutil.SyncBuffer{}
	s := newStore(t, r.Addr, "burrow", 0, logs)
	ctx, cancel := context.WithCancel(context.Background())
	reachable := make(chan struct{}, 10)
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Watch(ctx, 20*time.Millisecond, func() { reachable <- struct{}{} })
	}()
	defer func() {
		cancel()
		<-done
	}()
	wait := func(what string) {
		t.Helper()
		select {
		case <-reachable:
		case <-time.After(20 * time.Second):
			t.Fatalf("Watch did not call reachable %s", what)
		}
	}
	wait("at its first ping")
	r.Stop()
	testutil.WaitFor(t, 10*time.Second, "Watch to notice the outage", func() bool {
		return strings.Contains(logs.String(), "certificate store unreachable")
	})
	if len(reachable) != 0 {
		t.Fatal("reachable ran again while Redis was down")
	}
	r.Start()
	wait("when Redis was back")
	if n := strings.Count(logs.String(), "certificate store unreachable"); n != 1 {
		t.Errorf("%d lines about the outage, want 1:\n%s", n, logs)
	}
}

// A holder is another process that takes one lock and holds it, as a relay would.
const holderEnv = "REDISSTORE_TEST_HOLDER"

type holder struct {
	t     *testing.T
	cmd   *exec.Cmd
	in    io.WriteCloser
	out   *bufio.Reader
	stopd bool
}

// startHolder runs this test binary as a holder of the lock name, with the
// given TTL, and waits until it holds the lock.
func startHolder(t *testing.T, addr, name string, ttl time.Duration) *holder {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), holderEnv+"="+strings.Join([]string{addr, name, ttl.String()}, ","))
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = t.Output()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &holder{t: t, cmd: cmd, in: in, out: bufio.NewReader(out)}
	t.Cleanup(h.kill)
	if line, err := h.out.ReadString('\n'); line != "locked\n" {
		t.Fatalf("holder: %q, %v", line, err)
	}
	return h
}

func (h *holder) signal(sig syscall.Signal) {
	if err := h.cmd.Process.Signal(sig); err != nil {
		h.t.Fatal(err)
	}
}

// unlock asks the holder to release its lock and returns what Unlock answered.
func (h *holder) unlock() string {
	if _, err := io.WriteString(h.in, "unlock\n"); err != nil {
		h.t.Fatal(err)
	}
	line, err := h.out.ReadString('\n')
	if err != nil {
		h.t.Fatalf("holder: %v", err)
	}
	return strings.TrimSpace(line)
}

// kill ends the holder with SIGKILL: no unlock, no last refresh.
func (h *holder) kill() {
	if h.stopd {
		return
	}
	h.stopd = true
	_ = h.cmd.Process.Kill()
	_ = h.cmd.Wait()
}

// runHolder is the holder process: lock, say so, unlock when told, exit at the end of its input.
func runHolder() int {
	parts := strings.Split(os.Getenv(holderEnv), ",")
	ttl, _ := time.ParseDuration(parts[2])
	s, err := redisstore.New(redisstore.Options{Address: parts[0], LockTTL: ttl,
		Log: slog.New(slog.NewTextHandler(os.Stderr, nil)).With("process", "holder")})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer s.Close()
	ctx := context.Background()
	if err := s.Lock(ctx, parts[1]); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("locked")
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		if in.Text() == "unlock" {
			err := s.Unlock(ctx, parts[1])
			fmt.Println("unlock:", err)
		}
	}
	return 0
}
