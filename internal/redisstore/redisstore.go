// Package redisstore is a certmagic.Storage in Redis, so that several Burrow
// relays share one set of certificates: the certificates and their keys, the
// ACME account, the HTTP-01 and TLS-ALPN-01 challenge tokens (any relay can
// answer a challenge another relay started) and the locks that make one
// relay, not all of them, ask the CA for a name.
//
// It talks to Redis (6.2 or later) through github.com/redis/go-redis/v9,
// the Redis project's own Go client and the best-kept one.
//
// # Keys
//
// Everything lives under one prefix (KeyPrefix, "burrow" by default), so
// that one Redis can serve other things, or several Burrow deployments:
//
//	burrow:file:<key>  a hash: value, modified (Unix nanoseconds)
//	burrow:index       a sorted set of every file's key, for List and Exists
//	burrow:lock:<name> a lock: a random owner token, with an expiry
//
// # Locks
//
// A lock is SET NX PX with a random token and an expiry of LockTTL. While it
// is held, a goroutine owned by the lock extends the expiry every LockTTL/3;
// Unlock stops it and deletes the key only if it still holds this holder's
// token (a Lua script, so the check and the delete are one step). A relay
// that dies holding a lock therefore blocks the others for at most LockTTL.
// Lock polls, with a growing wait, until the lock is free or its context
// ends. These are expiring locks without fencing tokens, which certmagic
// accepts: a holder that stalls for longer than LockTTL may overlap with the
// next one, and certmagic then finds the certificate already obtained.
//
// # Outages
//
// When Redis cannot be reached, or refuses the password, every call fails
// with an error wrapping ErrUnavailable. The relay keeps serving the certificates it holds in
// memory; obtaining and renewing wait until Redis is back. The store logs one
// line when Redis becomes unreachable and one when it answers again, not one
// per failed call; Watch pings Redis so that both are noticed at once.
package redisstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	mrand "math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// ErrUnavailable marks the errors of calls that could not reach Redis, or
// whose credentials Redis refused.
var ErrUnavailable = errors.New("redis is unavailable")

// Defaults for the zero values of Options.
const (
	DefaultKeyPrefix = "burrow"
	DefaultLockTTL   = 30 * time.Second
)

// The wait between two tries of a taken lock grows from lockPollMin to lockPollMax.
const (
	lockPollMin = 100 * time.Millisecond
	lockPollMax = 2 * time.Second
)

// Options configure a Store.
type Options struct {
	// Address is Redis's host:port.
	Address string
	// Password is Redis's password (requirepass), if any.
	Password string
	// KeyPrefix starts every key the store writes; DefaultKeyPrefix if empty.
	KeyPrefix string
	// LockTTL is how long a lock outlives a holder that stopped refreshing
	// it; DefaultLockTTL if zero.
	LockTTL time.Duration
	// Log receives the reachability changes and lost locks.
	Log *slog.Logger
}

// Store keeps certmagic's files and locks in Redis. It is safe for
// concurrent use; Close stops its lock refreshers and closes its connections.
type Store struct {
	client *redis.Client
	addr   string
	prefix string
	ttl    time.Duration
	log    *slog.Logger

	mu     sync.Mutex
	locks  map[string]*heldLock // guarded by mu: the locks this store holds, by name
	closed bool                 // guarded by mu

	stateMu sync.Mutex
	down    bool // guarded by stateMu: Redis was unavailable at the last call
}

var (
	_ certmagic.Storage   = (*Store)(nil)
	_ certmagic.TryLocker = (*Store)(nil)
)

// go-redis has one logger for the process, which writes a line to stderr for
// every failed dial. The store reports Redis's reachability itself, once per
// change, so those lines are dropped.
var quietGoRedis sync.Once

type discard struct{}

func (discard) Printf(context.Context, string, ...any) {}

// heldLock is one lock this store holds, and the goroutine that keeps it alive.
type heldLock struct {
	token string
	stop  context.CancelFunc
	done  chan struct{} // closed when the refresher has returned
}

// New returns a Store for o. It does not dial: the first call does, and an
// unreachable Redis is reported then.
func New(o Options) (*Store, error) {
	if o.Address == "" {
		return nil, errors.New("redis store: no address")
	}
	if o.KeyPrefix == "" {
		o.KeyPrefix = DefaultKeyPrefix
	}
	if o.LockTTL == 0 {
		o.LockTTL = DefaultLockTTL
	}
	if o.LockTTL < 30*time.Millisecond {
		return nil, fmt.Errorf("redis store: lock TTL %v is too short to be refreshed", o.LockTTL)
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	quietGoRedis.Do(func() { redis.SetLogger(discard{}) })
	client := redis.NewClient(&redis.Options{
		Addr:         o.Address,
		Password:     o.Password,
		DialTimeout:  3 * time.Second,
		ReadTimeout:  3 * time.Second,
		WriteTimeout: 3 * time.Second,
		MaxRetries:   1,
		// One dial per try: with Redis down, a call fails in a moment and the
		// store says so once, rather than go-redis retrying each dial.
		DialerRetries:   1,
		DisableIdentity: true,
		// Push notifications of a managed Redis's maintenance: nothing Burrow needs.
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
	return &Store{
		client: client,
		addr:   o.Address,
		prefix: o.KeyPrefix,
		ttl:    o.LockTTL,
		log:    o.Log.With("redis", o.Address),
		locks:  map[string]*heldLock{},
	}, nil
}

// String names the store in certmagic's logs.
func (s *Store) String() string { return "redis://" + s.addr + "/" + s.prefix }

// Ping checks that Redis answers.
func (s *Store) Ping(ctx context.Context) error {
	return s.wrap("ping", "", s.client.Ping(ctx).Err())
}

// Watch pings Redis at once and then every interval until ctx ends, so that
// an outage is logged when it begins and its end when Redis is back, not
// only at the next call that needs Redis. reachable, if not nil, runs after
// the first ping that succeeds, and after each one that succeeds after a
// failed one: the time to start what Redis's absence held up.
func (s *Store) Watch(ctx context.Context, every time.Duration, reachable func()) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	up := false
	for {
		err := s.Ping(ctx) // its error reaches the log through observe, once per change
		if ctx.Err() != nil {
			return
		}
		if err == nil && !up && reachable != nil {
			reachable()
		}
		up = err == nil
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// Close stops refreshing the locks still held (they expire within LockTTL)
// and closes the connections.
func (s *Store) Close() error {
	s.mu.Lock()
	s.closed = true
	held := s.locks
	s.locks = map[string]*heldLock{}
	s.mu.Unlock()
	for _, l := range held {
		l.stop()
		<-l.done
	}
	return s.client.Close()
}

func (s *Store) fileKey(key string) string { return s.prefix + ":file:" + key }
func (s *Store) indexKey() string          { return s.prefix + ":index" }
func (s *Store) lockKey(name string) string {
	return s.prefix + ":lock:" + name
}

// clean turns a certmagic key into the form the index holds: no leading or trailing slash.
func clean(key string) string { return strings.Trim(key, "/") }

// under is the index range (for ZRANGE BYLEX) of the keys below dir.
// '0' follows '/' in ASCII, so [dir/, dir0) is exactly the keys that start with "dir/".
func under(dir string) (lo, hi string) {
	if dir == "" {
		return "-", "+"
	}
	return "[" + dir + "/", "(" + dir + "0"
}

// Store puts value at key.
func (s *Store) Store(ctx context.Context, key string, value []byte) error {
	key = clean(key)
	_, err := s.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, s.fileKey(key), "value", value, "modified", time.Now().UnixNano())
		p.ZAdd(ctx, s.indexKey(), redis.Z{Member: key})
		return nil
	})
	return s.wrap("store", key, err)
}

// Load returns the value at key, or an error wrapping fs.ErrNotExist.
func (s *Store) Load(ctx context.Context, key string) ([]byte, error) {
	key = clean(key)
	b, err := s.client.HGet(ctx, s.fileKey(key), "value").Bytes()
	if errors.Is(err, redis.Nil) {
		s.observe(nil)
		return nil, &fs.PathError{Op: "load", Path: key, Err: fs.ErrNotExist}
	}
	if err != nil {
		return nil, s.wrap("load", key, err)
	}
	s.observe(nil)
	return b, nil
}

// deleteScript deletes a file and every file below it, in one step.
// KEYS[1] is the index; ARGV: the file-key prefix, the key, and the index range below it.
var deleteScript = redis.NewScript(`
local n = redis.call('DEL', ARGV[1] .. ARGV[2])
redis.call('ZREM', KEYS[1], ARGV[2])
local below = redis.call('ZRANGE', KEYS[1], ARGV[3], ARGV[4], 'BYLEX')
for _, k in ipairs(below) do
  redis.call('DEL', ARGV[1] .. k)
end
redis.call('ZREMRANGEBYLEX', KEYS[1], ARGV[3], ARGV[4])
return n + #below
`)

// Delete deletes key and, if it is a directory, everything below it. A
// missing key is not an error.
func (s *Store) Delete(ctx context.Context, key string) error {
	key = clean(key)
	if key == "" {
		return errors.New("redis store: refusing to delete the whole store (empty key)")
	}
	lo, hi := under(key)
	err := deleteScript.Run(ctx, s.client, []string{s.indexKey()}, s.fileKey(""), key, lo, hi).Err()
	return s.wrap("delete", key, err)
}

// Exists reports whether key is a file or a directory.
func (s *Store) Exists(ctx context.Context, key string) bool {
	key = clean(key)
	file, below, err := s.probe(ctx, key)
	if s.wrap("exists", key, err) != nil {
		return false
	}
	return file || below
}

// probe reports whether key is a file, and whether keys exist below it.
func (s *Store) probe(ctx context.Context, key string) (file, below bool, err error) {
	lo, hi := under(key)
	var exists *redis.IntCmd
	var first *redis.StringSliceCmd
	_, err = s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		exists = p.Exists(ctx, s.fileKey(key))
		first = p.ZRangeArgs(ctx, redis.ZRangeArgs{Key: s.indexKey(), Start: lo, Stop: hi, ByLex: true, Count: 1})
		return nil
	})
	if err != nil {
		return false, false, err
	}
	return exists.Val() > 0, len(first.Val()) > 0, nil
}

// List returns the keys below dir: its direct children (files and
// directories), or with recursive every file and directory below it. A
// directory with nothing below it does not exist: the error wraps
// fs.ErrNotExist.
func (s *Store) List(ctx context.Context, dir string, recursive bool) ([]string, error) {
	dir = clean(dir)
	lo, hi := under(dir)
	files, err := s.client.ZRangeArgs(ctx, redis.ZRangeArgs{Key: s.indexKey(), Start: lo, Stop: hi, ByLex: true}).Result()
	if err != nil {
		return nil, s.wrap("list", dir, err)
	}
	s.observe(nil)
	if len(files) == 0 {
		return nil, &fs.PathError{Op: "list", Path: dir, Err: fs.ErrNotExist}
	}
	base := ""
	if dir != "" {
		base = dir + "/"
	}
	seen := map[string]bool{}
	var keys []string
	add := func(k string) {
		if !seen[k] {
			seen[k] = true
			keys = append(keys, k)
		}
	}
	for _, f := range files {
		rest := strings.TrimPrefix(f, base)
		if !recursive {
			first, _, _ := strings.Cut(rest, "/")
			add(base + first)
			continue
		}
		// The file and each directory between dir and it.
		for i := range len(rest) {
			if rest[i] == '/' {
				add(base + rest[:i])
			}
		}
		add(f)
	}
	slices.Sort(keys)
	return keys, nil
}

// Stat describes key: a file with its size and modified time, or a directory.
func (s *Store) Stat(ctx context.Context, key string) (certmagic.KeyInfo, error) {
	key = clean(key)
	var modified *redis.StringCmd
	var size *redis.IntCmd
	_, err := s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		modified = p.HGet(ctx, s.fileKey(key), "modified")
		size = p.HStrLen(ctx, s.fileKey(key), "value")
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return certmagic.KeyInfo{}, s.wrap("stat", key, err)
	}
	if ns, err := strconv.ParseInt(modified.Val(), 10, 64); err == nil {
		s.observe(nil)
		return certmagic.KeyInfo{Key: key, Modified: time.Unix(0, ns), Size: size.Val(), IsTerminal: true}, nil
	}
	_, below, err := s.probe(ctx, key)
	if err != nil {
		return certmagic.KeyInfo{}, s.wrap("stat", key, err)
	}
	s.observe(nil)
	if !below {
		return certmagic.KeyInfo{}, &fs.PathError{Op: "stat", Path: key, Err: fs.ErrNotExist}
	}
	return certmagic.KeyInfo{Key: key, IsTerminal: false}, nil
}

// Lock takes the named lock, waiting while another holder has it, until ctx
// ends. It returns at once, with an error wrapping ErrUnavailable, when
// Redis cannot be reached.
func (s *Store) Lock(ctx context.Context, name string) error {
	wait := lockPollMin
	for {
		ok, err := s.TryLock(ctx, name)
		if err != nil || ok {
			return err
		}
		// Jitter keeps relays that wait for the same lock from polling in step.
		t := time.NewTimer(wait/2 + mrand.N(wait/2+1))
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("redis store: waiting for lock %q: %w", name, ctx.Err())
		case <-t.C:
		}
		wait = min(2*wait, lockPollMax)
	}
}

// TryLock takes the named lock if it is free, and reports whether it did.
func (s *Store) TryLock(ctx context.Context, name string) (bool, error) {
	token, err := newToken()
	if err != nil {
		return false, err
	}
	err = s.client.Do(ctx, "SET", s.lockKey(name), token, "NX", "PX", s.ttl.Milliseconds()).Err()
	if errors.Is(err, redis.Nil) {
		s.observe(nil)
		return false, nil // held by someone else
	}
	if err != nil {
		return false, s.wrap("lock", name, err)
	}
	s.observe(nil)
	refreshCtx, stop := context.WithCancel(context.Background())
	l := &heldLock{token: token, stop: stop, done: make(chan struct{})}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		stop()
		_ = unlockScript.Run(context.WithoutCancel(ctx), s.client, []string{s.lockKey(name)}, token).Err()
		return false, fmt.Errorf("redis store: lock %q: the store is closed", name)
	}
	// An entry left for this name is a lock that expired while held here
	// (Redis was unreachable for longer than LockTTL): its refresher goes.
	stale := s.locks[name]
	s.locks[name] = l
	s.mu.Unlock()
	if stale != nil {
		stale.stop()
		<-stale.done
	}
	go s.refresh(refreshCtx, name, l)
	return true, nil
}

// refreshScript extends a lock's expiry if it still holds the token.
var refreshScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
`)

// unlockScript deletes a lock if it still holds the token.
var unlockScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`)

// refresh extends the lock every LockTTL/3 until ctx ends (Unlock or Close)
// or the lock turns out to be lost.
func (s *Store) refresh(ctx context.Context, name string, l *heldLock) {
	defer close(l.done)
	tick := time.NewTicker(s.ttl / 3)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		n, err := refreshScript.Run(ctx, s.client, []string{s.lockKey(name)}, l.token, s.ttl.Milliseconds()).Int()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			_ = s.wrap("refresh lock", name, err) // logged once if Redis is gone; the next tick tries again
			continue
		}
		s.observe(nil)
		if n == 0 {
			s.log.Warn("certificate store: a lock expired before it was released, so another relay may take it; Redis was unreachable or this relay stalled for longer than the lock's lifetime",
				"lock", name, "lock_ttl", s.ttl)
			return
		}
	}
}

// Unlock releases a lock taken by Lock or TryLock on this store. It is an
// error to release a lock this store does not hold, or one that expired and
// may now be someone else's: it is left as it is.
func (s *Store) Unlock(ctx context.Context, name string) error {
	s.mu.Lock()
	l := s.locks[name]
	delete(s.locks, name)
	s.mu.Unlock()
	if l == nil {
		return fmt.Errorf("redis store: unlock %q: this store does not hold that lock", name)
	}
	l.stop()
	<-l.done
	n, err := unlockScript.Run(ctx, s.client, []string{s.lockKey(name)}, l.token).Int()
	if err != nil {
		return fmt.Errorf("%w; the lock expires on its own within %v", s.wrap("unlock", name, err), s.ttl)
	}
	s.observe(nil)
	if n == 0 {
		return fmt.Errorf("redis store: unlock %q: the lock had expired (it lives %v without a refresh) and may be another holder's now; left as it is", name, s.ttl)
	}
	return nil
}

func newToken() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("redis store: lock token: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// wrap turns a Redis error into the store's error for op on key, and notes
// whether Redis was reachable. A nil error stays nil.
func (s *Store) wrap(op, key string, err error) error {
	s.observe(err)
	switch {
	case err == nil:
		return nil
	case unavailable(err):
		return fmt.Errorf("redis store %s: %s %q: %w: %w", s.addr, op, key, ErrUnavailable, err)
	default:
		return fmt.Errorf("redis store %s: %s %q: %w", s.addr, op, key, err)
	}
}

// unavailable tells a failure to reach Redis, or to log in to it, from
// another answer of Redis (an error reply, a missing key), from the caller
// giving up and from a closed store.
func unavailable(err error) bool {
	if err == nil || errors.Is(err, redis.Nil) || errors.Is(err, context.Canceled) || errors.Is(err, redis.ErrClosed) {
		return false
	}
	var reply redis.Error
	return !errors.As(err, &reply) || refused(err)
}

// refused reports whether Redis refused the store's credentials.
func refused(err error) bool {
	var reply redis.Error
	if !errors.As(err, &reply) {
		return false
	}
	m := reply.Error()
	for _, p := range []string{"NOAUTH", "WRONGPASS", "NOPERM", "ERR AUTH"} {
		if strings.HasPrefix(m, p) {
			return true
		}
	}
	return false
}

// observe logs a change of Redis's availability: one line when it goes, one
// when it is back.
func (s *Store) observe(err error) {
	down := unavailable(err)
	if err != nil && !down {
		return // Redis answered, though with an error: no news about its availability
	}
	s.stateMu.Lock()
	changed := down != s.down
	s.down = down
	s.stateMu.Unlock()
	const held = "serving the certificates held in memory; obtaining and renewing certificates wait until Redis is back"
	switch {
	case !changed:
	case down && refused(err):
		s.log.Error("certificate store refuses the password: check tls.storage.redis.password_file against Redis's requirepass; "+held,
			"err", err)
	case down:
		s.log.Warn("certificate store unreachable: "+held, "err", err)
	default:
		s.log.Info("certificate store reachable again: obtaining and renewing certificates resume")
	}
}
