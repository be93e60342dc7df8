package main

// The state store shared by greylisting (and later the report counters):
// an embedded bbolt file by default, or Redis (DESIGN.md §5).

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/redis/go-redis/v9"

	"sekisho/greylist"
)

// StoreConfig chooses the state store: an embedded file or Redis. When
// redis is set it is used and path is ignored (path has a default, so a
// config that only adds redis must not have to clear it).
type StoreConfig struct {
	// Path is the bbolt file, relative to the working directory unless
	// absolute; its directory is created if missing. Default var/state.db.
	Path  string       `yaml:"path"`
	Redis *RedisConfig `yaml:"redis"`
}

// RedisConfig is go-redis' UniversalOptions, in part. One address is a
// standalone server; master_name makes the addresses Sentinels; several
// addresses (or cluster: true) are a Cluster.
type RedisConfig struct {
	Addrs      []string `yaml:"addrs"`
	MasterName string   `yaml:"master_name"`
	// Cluster treats a single address as a Cluster seed node.
	Cluster  bool   `yaml:"cluster"`
	Username string `yaml:"username"`
	// PasswordFile holds the password (AUTH), without a trailing newline
	// or with one; "" for none.
	PasswordFile string `yaml:"password_file"`
	// SentinelPasswordFile holds the Sentinels' own password, if they
	// have one (requirepass on the Sentinel).
	SentinelPasswordFile string `yaml:"sentinel_password_file"`
	DB                   int    `yaml:"db"`
}

func (c *RedisConfig) mode() string {
	switch {
	case c.MasterName != "":
		return "sentinel"
	case c.Cluster || len(c.Addrs) > 1:
		return "cluster"
	}
	return "standalone"
}

// validate checks the store settings; errors name the key.
func (c *StoreConfig) validate() error {
	r := c.Redis
	if r == nil {
		if c.Path == "" {
			return invalid("path must name the embedded store's file (or set store.redis)", "store", "path")
		}
		return nil
	}
	if len(r.Addrs) == 0 {
		return invalid("addrs must list at least one host:port", "store", "redis", "addrs")
	}
	for _, a := range r.Addrs {
		if host, port, err := net.SplitHostPort(a); err != nil || host == "" || port == "" {
			return invalid(fmt.Sprintf("%q is not host:port", a), "store", "redis", "addrs")
		}
	}
	switch {
	case r.MasterName != "" && r.Cluster:
		return invalid("cluster and master_name exclude each other (Sentinel or Cluster)", "store", "redis", "cluster")
	case r.DB < 0:
		return invalid("db must be 0 or more", "store", "redis", "db")
	case r.DB != 0 && r.mode() == "cluster":
		return invalid("db must be 0 with a Cluster (several addrs): a Cluster has only database 0", "store", "redis", "db")
	case r.SentinelPasswordFile != "" && r.MasterName == "":
		return invalid("sentinel_password_file needs master_name (Sentinel)", "store", "redis", "sentinel_password_file")
	}
	return nil
}

// storeStartupPing bounds the reachability check of Redis at start-up.
const storeStartupPing = 2 * time.Second

// openStore opens the configured store. The embedded file is opened (and
// locked) now; Redis connects lazily, so a Redis that is down at start-up
// is only logged — greylisting then follows on_store_error until it
// answers. It routes go-redis' own log lines (process-wide) to log at Debug.
//
// readOnly is for `sekisho explain`, whose check only peeks: the embedded
// file is then neither created nor swept, a missing file is an empty store,
// and a file locked by the running sekisho is a store that cannot answer
// (bbolt's lock is exclusive: the running gateway's state cannot be read).
func openStore(c *StoreConfig, log *slog.Logger, readOnly bool) (greylist.Store, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	if c.Redis == nil && readOnly {
		return peekBolt(c.Path, log), nil
	}
	if c.Redis == nil {
		s, err := greylist.OpenBolt(c.Path, greylist.BoltOptions{Logger: log})
		if err != nil {
			return nil, err
		}
		abs, _ := filepath.Abs(c.Path)
		log.Info("state store", "kind", "embedded", "path", abs)
		return s, nil
	}

	r := c.Redis
	password, err := readSecret(r.PasswordFile)
	if err != nil {
		return nil, fmt.Errorf("store.redis.password_file: %w", err)
	}
	sentinelPassword, err := readSecret(r.SentinelPasswordFile)
	if err != nil {
		return nil, fmt.Errorf("store.redis.sentinel_password_file: %w", err)
	}
	redis.SetLogger(greylist.RedisLogger{Logger: log})
	s := greylist.NewRedisStore(&redis.UniversalOptions{
		Addrs:            r.Addrs,
		MasterName:       r.MasterName,
		IsClusterMode:    r.Cluster,
		Username:         r.Username,
		Password:         password,
		SentinelPassword: sentinelPassword,
		DB:               r.DB,
	})
	log.Info("state store", "kind", "redis", "mode", r.mode(), "addrs", r.Addrs, "master_name", r.MasterName, "db", r.DB)
	ctx, cancel := context.WithTimeout(context.Background(), storeStartupPing)
	defer cancel()
	if err := s.Client().Ping(ctx).Err(); err != nil {
		log.Warn("state store not reachable at start; greylisting follows on_store_error until it answers", "kind", "redis", "err", err)
	}
	return s, nil
}

// peekBolt opens the embedded store for peeking only (see openStore).
func peekBolt(path string, log *slog.Logger) greylist.Store {
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return emptyStore{}
	}
	s, err := greylist.OpenBolt(path, greylist.BoltOptions{Logger: log, SweepInterval: -1, LockTimeout: peekLockTimeout})
	if err != nil {
		return unavailableStore{fmt.Errorf("%w; the embedded store cannot be read while sekisho serve runs on it (Redis can)", err)}
	}
	return s
}

// peekLockTimeout is how long explain waits for the embedded file's lock.
const peekLockTimeout = 200 * time.Millisecond

// emptyStore is an embedded store whose file does not exist yet: every
// triplet is new.
type emptyStore struct{}

func (emptyStore) Check(ctx context.Context, t greylist.Triplet, p greylist.Policy) (greylist.Decision, error) {
	return greylist.Decision{}, errors.New("greylist: the empty store is read-only")
}

func (emptyStore) Peek(ctx context.Context, t greylist.Triplet, p greylist.Policy) (greylist.Decision, error) {
	return greylist.Decision{Wait: p.Delay, New: true}, nil
}

func (emptyStore) Close() error { return nil }

// unavailableStore answers every call with the error it was opened with.
type unavailableStore struct{ err error }

func (s unavailableStore) Check(context.Context, greylist.Triplet, greylist.Policy) (greylist.Decision, error) {
	return greylist.Decision{}, s.err
}

func (s unavailableStore) Peek(context.Context, greylist.Triplet, greylist.Policy) (greylist.Decision, error) {
	return greylist.Decision{}, s.err
}

func (unavailableStore) Close() error { return nil }
