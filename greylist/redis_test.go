package greylist

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"sekisho/internal/testredis"
)

// TestRedisSharedBetweenGateways: two stores on one Redis are two gateways;
// the retry may reach the other one and must pass there.
func TestRedisSharedBetweenGateways(t *testing.T) {
	srv := testredis.Start(t)
	gw1, gw2 := newRedisStore(t, srv.Addr()), newRedisStore(t, srv.Addr())
	tr := triplet("192.0.2.10", "bob@example.org", "alice@campus.example")

	if d := mustCheck(t, gw1, tr, testPolicy); !d.New || d.Pass {
		t.Fatalf("gateway 1, first contact: %+v", d)
	}
	if d := mustCheck(t, gw2, tr, testPolicy); d.New || d.Pass {
		t.Fatalf("gateway 2, early retry: %+v, want the entry gateway 1 made", d)
	}
	// Both use Redis' clock; the offset stands for the minutes passing.
	gw1.offset, gw2.offset = 6*time.Minute, 6*time.Minute
	wantPass(t, mustCheck(t, gw2, tr, testPolicy), false)
	wantPass(t, mustCheck(t, gw1, tr, testPolicy), false)
}

// TestRedisRealClock runs one round on Redis' real clock with a one-second
// delay: no offset, the wait is for Redis' TIME to pass the delay.
func TestRedisRealClock(t *testing.T) {
	srv := testredis.Start(t)
	s := newRedisStore(t, srv.Addr())
	p := Policy{Delay: time.Second, RetryWindow: time.Minute, Expire: time.Hour}
	tr := triplet("192.0.2.10", "bob@example.org", "alice@campus.example")

	d := mustCheck(t, s, tr, p)
	if !d.New || d.Pass || d.Wait != time.Second {
		t.Fatalf("first contact: %+v", d)
	}
	tkey := redisKeys(tr)[0]
	first, err := s.Client().HGet(ctx, tkey, "f").Int64()
	if err != nil {
		t.Fatal(err)
	}
	// The retry window is Redis' TTL on the entry.
	if ttl := s.Client().PTTL(ctx, tkey).Val(); ttl <= 0 || ttl > time.Minute {
		t.Fatalf("TTL of a first attempt = %v, want within the retry window (1m)", ttl)
	}
	if d := mustCheck(t, s, tr, p); d.Pass || d.Wait <= 0 || d.Wait > time.Second {
		t.Fatalf("immediate retry: %+v", d)
	}
	// Wait until Redis' own clock has passed the delay (polling the server
	// is the only signal its clock gives).
	for {
		now, err := s.Client().Time(ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		if now.UnixMilli() >= first+1000 {
			break
		}
		time.Sleep(time.Duration(first+1000-now.UnixMilli()) * time.Millisecond)
	}
	wantPass(t, mustCheck(t, s, tr, p), false)
	// A passed entry lives for Expire.
	if ttl := s.Client().PTTL(ctx, tkey).Val(); ttl <= time.Minute || ttl > time.Hour {
		t.Fatalf("TTL of a passed entry = %v, want within expire (1h) and past the retry window", ttl)
	}
}

// TestRedisDownThenBack: a stopped or killed Redis gives an error (never a
// decision) within the caller's deadline, and the same store works again
// once Redis is back.
func TestRedisDownThenBack(t *testing.T) {
	srv := testredis.Start(t)
	s := newRedisStore(t, srv.Addr())
	tr := triplet("192.0.2.10", "bob@example.org", "alice@campus.example")
	mustCheck(t, s, tr, testPolicy)

	const deadline = 2 * time.Second
	checkFails := func(how string) {
		t.Helper()
		c, cancel := context.WithTimeout(ctx, deadline)
		defer cancel()
		start := time.Now()
		d, err := s.Check(c, tr, testPolicy)
		if err == nil {
			t.Fatalf("Redis %s: Check gave %+v and no error", how, d)
		}
		if d != (Decision{}) {
			t.Fatalf("Redis %s: a decision came with the error: %+v", how, d)
		}
		t.Logf("Redis %s: error after %v: %v", how, time.Since(start), err)
		if el := time.Since(start); el > deadline+time.Second {
			t.Fatalf("Redis %s: the error took %v, deadline %v", how, el, deadline)
		}
		if _, err := s.Peek(c, tr, testPolicy); err == nil {
			t.Fatalf("Redis %s: Peek gave no error", how)
		}
	}
	checkWorks := func(how string) {
		t.Helper()
		// No persistence: the restarted Redis is empty, so this is a first
		// contact again.
		d, err := s.Check(ctx, tr, testPolicy)
		if err != nil {
			t.Fatalf("Redis %s: Check on the same store: %v", how, err)
		}
		if !d.New {
			t.Fatalf("Redis %s: %+v, want a new entry on the empty server", how, d)
		}
	}

	srv.Stop()
	checkFails("stopped")
	srv.Restart()
	checkWorks("restarted after stop")

	srv.Kill()
	checkFails("killed")
	srv.Restart()
	checkWorks("restarted after kill")
}

// TestRedisFrozen: a Redis that accepts but never answers (SIGSTOP) gives an
// error once the caller's deadline passes, not a hang.
func TestRedisFrozen(t *testing.T) {
	srv := testredis.Start(t)
	s := newRedisStore(t, srv.Addr())
	tr := triplet("192.0.2.10", "bob@example.org", "alice@campus.example")
	mustCheck(t, s, tr, testPolicy) // a pooled connection exists

	srv.Freeze()
	const deadline = 300 * time.Millisecond
	c, cancel := context.WithTimeout(ctx, deadline)
	defer cancel()
	start := time.Now()
	if d, err := s.Check(c, tr, testPolicy); err == nil {
		t.Fatalf("frozen Redis: %+v, no error", d)
	}
	if el := time.Since(start); el > deadline+time.Second {
		t.Fatalf("frozen Redis: error after %v, deadline %v", el, deadline)
	}
	srv.Thaw()
	if d := mustCheck(t, s, tr, testPolicy); d.New || d.Pass {
		t.Fatalf("after thaw: %+v, want the existing entry (still deferred)", d)
	}
}

// TestRedisCluster: against a real (single-node) Redis Cluster, which
// refuses a script whose keys hash to different slots, a full round works:
// the triplet and network keys share the {network} hash tag.
func TestRedisCluster(t *testing.T) {
	srv := testredis.StartCluster(t)
	s := NewRedisStore(&redis.UniversalOptions{Addrs: []string{srv.Addr()}, IsClusterMode: true})
	defer s.Close()
	if _, ok := s.Client().(*redis.ClusterClient); !ok {
		t.Fatalf("client is %T, want a cluster client", s.Client())
	}
	p := testPolicy
	p.AutoWhitelist = 1
	tr := triplet("2001:db8::1", "bob@example.org", "alice@campus.example")
	if d := mustCheck(t, s, tr, p); !d.New {
		t.Fatalf("first contact: %+v", d)
	}
	s.offset = 6 * time.Minute
	wantPass(t, mustCheck(t, s, tr, p), false)
	wantPass(t, mustCheck(t, s, triplet("2001:db8::2", "x@example.org", "y@campus.example"), p), true)

	// the keys really are in one slot
	keys := redisKeys(tr)
	s1, err1 := s.Client().ClusterKeySlot(ctx, keys[0]).Result()
	s2, err2 := s.Client().ClusterKeySlot(ctx, keys[1]).Result()
	if err1 != nil || err2 != nil || s1 != s2 {
		t.Fatalf("slots %d (%v), %d (%v)", s1, err1, s2, err2)
	}
}

// TestRedisKeys pins the key layout: the prefix, the network as hash tag, and
// a triplet key that a sender containing braces cannot move to another slot.
func TestRedisKeys(t *testing.T) {
	k := redisKeys(triplet("192.0.2.10", "{x}@example.org", "alice@campus.example"))
	if k[0] != RedisKeyPrefix+"{192.0.2.0/24}:t:{x}@example.org\x00alice@campus.example" {
		t.Errorf("triplet key %q", k[0])
	}
	if k[1] != RedisKeyPrefix+"{192.0.2.0/24}:n" {
		t.Errorf("network key %q", k[1])
	}
	for _, key := range k {
		open := strings.IndexByte(key, '{')
		end := strings.IndexByte(key[open:], '}')
		if tag := key[open+1 : open+end]; tag != "192.0.2.0/24" {
			t.Errorf("hash tag of %q is %q", key, tag)
		}
	}
}

// TestRedisStoredFields: the stored hash matches the documented layout, so
// an admin (or the report code) can read it with redis-cli.
func TestRedisStoredFields(t *testing.T) {
	srv := testredis.Start(t)
	s := newRedisStore(t, srv.Addr())
	tr := triplet("192.0.2.10", "bob@example.org", "alice@campus.example")
	mustCheck(t, s, tr, testPolicy)
	now, _ := s.Client().Time(ctx).Result()
	fields, err := s.Client().HGetAll(ctx, redisKeys(tr)[0]).Result()
	if err != nil {
		t.Fatal(err)
	}
	first, _ := strconv.ParseInt(fields["f"], 10, 64)
	until, _ := strconv.ParseInt(fields["u"], 10, 64)
	if d := now.UnixMilli() - first; d < 0 || d > 5000 {
		t.Errorf("f = %q, Redis time %d", fields["f"], now.UnixMilli())
	}
	if until-first != testPolicy.RetryWindow.Milliseconds() || fields["p"] != "0" || fields["n"] != "0" {
		t.Errorf("fields %v", fields)
	}
}

func TestRedisLogger(t *testing.T) {
	var buf strings.Builder
	l := RedisLogger{slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	// the interface redis.SetLogger takes (not called here: it is global)
	var _ interface {
		Printf(context.Context, string, ...any)
	} = l
	l.Printf(ctx, "dial %s failed", "127.0.0.1:1")
	if !strings.Contains(buf.String(), "level=DEBUG") || !strings.Contains(buf.String(), "go-redis: dial 127.0.0.1:1 failed") {
		t.Fatalf("logged %q", buf.String())
	}
}

// TestRedisSentinel: with MasterName the store finds the master through a
// real Sentinel, and the master's outage is an error like any other.
func TestRedisSentinel(t *testing.T) {
	master := testredis.Start(t)
	sentinel := testredis.StartSentinel(t, master, "sekisho")
	s := NewRedisStore(&redis.UniversalOptions{Addrs: []string{sentinel.Addr()}, MasterName: "sekisho"})
	defer s.Close()
	tr := triplet("192.0.2.10", "bob@example.org", "alice@campus.example")
	if d := mustCheck(t, s, tr, testPolicy); !d.New {
		t.Fatalf("first contact: %+v", d)
	}
	// the entry is on the master
	if reply, err := master.Do("EXISTS", redisKeys(tr)[0]); err != nil || reply != ":1" {
		t.Fatalf("EXISTS on the master: %q, %v", reply, err)
	}
	s.offset = 6 * time.Minute
	wantPass(t, mustCheck(t, s, tr, testPolicy), false)

	master.Stop()
	c, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if d, err := s.Check(c, tr, testPolicy); err == nil {
		t.Fatalf("master down: %+v, no error", d)
	}
	master.Restart()
	if d := mustCheck(t, s, tr, testPolicy); !d.New {
		t.Fatalf("after the master's restart: %+v, want a new entry", d)
	}
}
