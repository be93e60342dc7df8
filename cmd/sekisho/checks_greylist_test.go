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

// TestGreylistConfigErrorsNameFileAndLine: each greylisting mistake names
// the config file's line of the key, and a broken whitelist file its own
// file:line.
func TestGreylistConfigErrorsNameFileAndLine(t *testing.T) {
	wl := filepath.Join(t.TempDir(), "wl.txt")
	os.WriteFile(wl, []byte("192.0.2.1\nnot an entry\n"), 0o644)
	cases := []struct{ yaml, want string }{
		{"hostname: mx\nchecks:\n  greylist:\n    delay: 0s\n", "f.yaml:4: delay must be positive"},
		{"hostname: mx\nchecks:\n  greylist:\n    delay: 5m\n    retry_window: 4m\n", "f.yaml:5: retry_window (4m0s) must be longer than delay (5m0s)"},
		{"hostname: mx\nchecks:\n  greylist:\n    expire: -1h\n", "f.yaml:4: expire must be positive"},
		{"hostname: mx\nchecks:\n  greylist:\n    auto_whitelist: -1\n", "f.yaml:4: auto_whitelist must be 0"},
		{"hostname: mx\nchecks:\n  greylist:\n    ipv4_prefix: 33\n", "f.yaml:4: ipv4_prefix must be within 1..32"},
		{"hostname: mx\nchecks:\n  greylist:\n    ipv6_prefix: 129\n", "f.yaml:4: ipv6_prefix must be within 1..128"},
		{"hostname: mx\nchecks:\n  greylist:\n    store_timeout: -1s\n", "f.yaml:4: store_timeout must not be negative"},
		{"hostname: mx\nchecks:\n  greylist:\n    on_store_error: queue\n", "f.yaml:4: on_store_error must be accept or tempfail"},
		{"hostname: mx\nchecks:\n  greylist:\n    whitelist: " + wl + "\n", "f.yaml:4: whitelist refused: " + wl + ":2: \"not an entry\""},
		{"hostname: mx\nchecks:\n  greylist:\n    whitelist: /nonexistent/wl.txt\n", "f.yaml:4: whitelist refused: open /nonexistent/wl.txt"},
		{"hostname: mx\nchecks:\n  greylist:\n    whitelist_file: x\n", `f.yaml:4: unknown key "whitelist_file" in checks.greylist`},
	}
	for _, c := range cases {
		_, err := config.Parse("f.yaml", []byte(c.yaml))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("config %q:\nerror %v\nwant it to contain %q", c.yaml, err, c.want)
		}
	}
	// A whitelist is not read when greylisting is off.
	if _, err := config.Parse("f.yaml", []byte("hostname: mx\nchecks:\n  greylist: {off: true, whitelist: /nonexistent}\n"+localSite)); err != nil {
		t.Errorf("greylisting off: %v", err)
	}
	// The shipped whitelist is valid.
	if _, err := config.Parse("f.yaml", []byte("hostname: mx\nchecks:\n  greylist: {whitelist: ../../deploy/greylist-whitelist.txt}\n"+localSite)); err != nil {
		t.Errorf("shipped whitelist: %v", err)
	}
}

func TestGreylistConfigSettings(t *testing.T) {
	cfg, err := config.Parse("f.yaml", []byte(`
hostname: mx
checks:
  greylist: {delay: 2s, ipv4_prefix: 28}
store:
  redis: {addrs: ["127.0.0.1:6379"], master_name: mymaster, db: 2}
`+localSite))
	if err != nil {
		t.Fatal(err)
	}
	g := cfg.Checks.Greylist
	// Keys not written keep their defaults.
	if p := g.Policy(); p != (greylist.Policy{Delay: 2e9, RetryWindow: greylist.DefaultPolicy().RetryWindow,
		Expire: greylist.DefaultPolicy().Expire, AutoWhitelist: 5}) {
		t.Errorf("policy %+v", p)
	}
	if n := g.Networks(); n != (greylist.NetworkPrefix{IPv4: 28, IPv6: 64}) {
		t.Errorf("networks %+v", n)
	}
	if cfg.Store.Redis == nil || cfg.Store.Redis.Mode() != "sentinel" || cfg.Store.Redis.DB != 2 {
		t.Errorf("store %+v", cfg.Store.Redis)
	}
}

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
