package main

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"sekisho/config"
	"sekisho/filters"
	"sekisho/greylist"
	"sekisho/internal/testredis"
	"sekisho/lookup"
)

func testDeps(t *testing.T) *deps {
	t.Helper()
	r, err := lookup.NewResolver(lookup.DNSConfig{Resolvers: []string{"127.0.0.1:9"}})
	if err != nil {
		t.Fatal(err)
	}
	return &deps{log: slog.New(slog.NewTextHandler(io.Discard, nil)), resolver: r}
}

func outsideTx(rcpt string) *filters.Transaction {
	return &filters.Transaction{Client: netip.MustParseAddr("192.0.2.1"), From: "bob@example.org", Rcpt: rcpt, Conn: map[string]any{}}
}

// TestGreylistChecksEmbedded: the builder opens the bbolt file (creating its
// directory), the check greylists, and the closer releases the file so that
// the next process can open it.
func TestGreylistChecksEmbedded(t *testing.T) {
	cfg := config.Defaults()
	cfg.Store.Path = filepath.Join(t.TempDir(), "a", "b", "state.db")
	d := testDeps(t)
	checks, err := greylistChecks(&cfg, d)
	if err != nil || len(checks) != 1 || checks[0].Name() != "greylist" {
		t.Fatalf("checks %v, err %v", checks, err)
	}
	v, err := checks[0].Check(context.Background(), outsideTx("alice@campus.test"))
	if err != nil || v.Action != filters.Defer || v.Reply.Code != 451 {
		t.Fatalf("first attempt: %+v, %v", v, err)
	}
	// The file is locked while the store is open.
	if _, err := greylistChecks(&cfg, testDeps(t)); err == nil || !strings.Contains(err.Error(), "locked by another process") {
		t.Fatalf("a second store on a locked file: %v", err)
	}
	d.close()
	// Exempt networks are not greylisted.
	cfg.Checks.Greylist.Exempt = []config.Prefix{{Prefix: netip.MustParsePrefix("192.0.2.0/28")}}
	d = testDeps(t)
	if checks, err = greylistChecks(&cfg, d); err != nil {
		t.Fatal(err)
	}
	if v, err := checks[0].Check(context.Background(), outsideTx("carol@campus.test")); err != nil || v.Action != filters.Continue || !strings.Contains(v.Reason, "exempt") {
		t.Fatalf("exempt client: %+v, %v", v, err)
	}
	d.close()
	s, err := greylist.OpenBolt(cfg.Store.Path, greylist.BoltOptions{SweepInterval: -1})
	if err != nil {
		t.Fatalf("store still locked after close: %v", err)
	}
	s.Close()

	cfg.Checks.Greylist.Off = true
	cfg.Store.Path = filepath.Join(t.TempDir(), "off", "state.db")
	if checks, err := greylistChecks(&cfg, testDeps(t)); err != nil || len(checks) != 0 {
		t.Fatalf("off: %v %v", checks, err)
	}
	if _, err := os.Stat(filepath.Dir(cfg.Store.Path)); !os.IsNotExist(err) {
		t.Errorf("greylisting off, but the store was created: %v", err)
	}
}

// TestGreylistChecksRedis: on a real redis-server with a password read
// from password_file; a Redis that is down at start-up does not stop
// sekisho from starting (the check follows on_store_error).
func TestGreylistChecksRedis(t *testing.T) {
	rs := testredis.Start(t)
	if reply, err := rs.Do("CONFIG", "SET", "requirepass", "s3cret"); err != nil || reply != "+OK" {
		t.Fatalf("requirepass: %q %v", reply, err)
	}
	secret := filepath.Join(t.TempDir(), "redis.secret")
	os.WriteFile(secret, []byte("s3cret\n"), 0o600)

	cfg := config.Defaults()
	cfg.Store.Redis = &config.RedisConfig{Addrs: []string{rs.Addr()}, PasswordFile: secret, DB: 3}
	d := testDeps(t)
	defer d.close()
	checks, err := greylistChecks(&cfg, d)
	if err != nil {
		t.Fatal(err)
	}
	g := checks[0].(*filters.Greylist)
	v, err := g.Check(context.Background(), outsideTx("alice@campus.test"))
	if err != nil || v.Action != filters.Defer || v.Reply.Code != 451 || !g.StoreHealthy() {
		t.Fatalf("first attempt: %+v, %v, healthy %v", v, err, g.StoreHealthy())
	}

	// The wrong password: every check is a store error (accept: continue).
	os.WriteFile(secret, []byte("wrong"), 0o600)
	d2 := testDeps(t)
	defer d2.close()
	checks, err = greylistChecks(&cfg, d2)
	if err != nil {
		t.Fatal(err)
	}
	g = checks[0].(*filters.Greylist)
	v, err = g.Check(context.Background(), outsideTx("alice@campus.test"))
	if err != nil || v.Action != filters.Continue || g.StoreHealthy() || g.StoreErrors() != 1 {
		t.Fatalf("wrong password: %+v, %v, healthy %v", v, err, g.StoreHealthy())
	}

	// Redis down at start: sekisho starts anyway.
	rs.Stop()
	cfg.Store.Redis.PasswordFile = ""
	d3 := testDeps(t)
	defer d3.close()
	if _, err := greylistChecks(&cfg, d3); err != nil {
		t.Fatalf("Redis down at start-up: %v", err)
	}

	cfg.Store.Redis.PasswordFile = "/nonexistent/secret"
	if _, err := greylistChecks(&cfg, testDeps(t)); err == nil || !strings.Contains(err.Error(), "password_file") {
		t.Fatalf("missing password file: %v", err)
	}
}

// TestOpenStoreRedisModes: the config's shape picks go-redis' client kind
// (one address: standalone; several or cluster: true: Cluster; master_name:
// Sentinel). Nothing listens on the addresses: start-up goes on anyway.
func TestOpenStoreRedisModes(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cases := []struct {
		redis   config.RedisConfig
		cluster bool
	}{
		{config.RedisConfig{Addrs: []string{"127.0.0.1:9"}}, false},
		{config.RedisConfig{Addrs: []string{"127.0.0.1:9", "127.0.0.1:7"}}, true},
		{config.RedisConfig{Addrs: []string{"127.0.0.1:9"}, Cluster: true}, true},
		{config.RedisConfig{Addrs: []string{"127.0.0.1:9"}, MasterName: "mymaster"}, false},
	}
	for _, c := range cases {
		s, err := openStore(&config.StoreConfig{Redis: &c.redis}, log, false)
		if err != nil {
			t.Fatalf("%+v: %v", c.redis, err)
		}
		_, isCluster := s.(*greylist.RedisStore).Client().(*redis.ClusterClient)
		if isCluster != c.cluster {
			t.Errorf("%+v (%s): cluster client %v, want %v", c.redis, c.redis.Mode(), isCluster, c.cluster)
		}
		s.Close()
	}
}

// TestGreylistChecksDryRun: under `sekisho explain` the check peeks: it
// creates no file and no entry, reads the state a previous run left, and
// reports a file locked by a running sekisho as a store that cannot
// answer.
func TestGreylistChecksDryRun(t *testing.T) {
	cfg := config.Defaults()
	cfg.Store.Path = filepath.Join(t.TempDir(), "var", "state.db")
	peek := func() filters.Check {
		t.Helper()
		d := testDeps(t)
		d.dryRun = true
		t.Cleanup(d.close)
		checks, err := greylistChecks(&cfg, d)
		if err != nil || len(checks) != 1 {
			t.Fatalf("checks %v, err %v", checks, err)
		}
		return checks[0]
	}

	// No file yet: every triplet would be new, and no file is made.
	v, err := peek().Check(context.Background(), outsideTx("alice@campus.test"))
	if err != nil || v.Action != filters.Defer || !strings.Contains(v.Reason, "new triplet") {
		t.Fatalf("no store yet: %+v, %v", v, err)
	}
	if _, err := os.Stat(filepath.Dir(cfg.Store.Path)); !os.IsNotExist(err) {
		t.Fatalf("explain created the store: %v", err)
	}

	// A first attempt recorded by serve is seen, and peeking adds nothing.
	d := testDeps(t)
	checks, err := greylistChecks(&cfg, d)
	if err != nil {
		t.Fatal(err)
	}
	checks[0].Check(context.Background(), outsideTx("alice@campus.test"))

	// ... but not while serve holds the file.
	v, err = peek().Check(context.Background(), outsideTx("alice@campus.test"))
	if err != nil || !strings.Contains(v.Reason, "cannot be read while sekisho serve runs") {
		t.Fatalf("locked store: %+v, %v", v, err)
	}
	d.close()

	dry := peek()
	for range 2 {
		v, err = dry.Check(context.Background(), outsideTx("alice@campus.test"))
		if err != nil || v.Action != filters.Defer || !strings.Contains(v.Reason, "known triplet") {
			t.Fatalf("recorded triplet: %+v, %v", v, err)
		}
		v, err = dry.Check(context.Background(), outsideTx("bob@campus.test"))
		if err != nil || v.Action != filters.Defer || !strings.Contains(v.Reason, "new triplet") {
			t.Fatalf("peeked triplet: %+v, %v (peeking must not record it)", v, err)
		}
	}
}
