package main

// The state store shared by greylisting (and later the report counters):
// an embedded bbolt file by default, or Redis (DESIGN.md §5).

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/redis/go-redis/v9"

	"sekisho/config"
	"sekisho/greylist"
)

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
func openStore(c *config.StoreConfig, log *slog.Logger, readOnly bool) (greylist.Store, error) {
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
	password, err := config.ReadSecret(r.PasswordFile)
	if err != nil {
		return nil, fmt.Errorf("store.redis.password_file: %w", err)
	}
	sentinelPassword, err := config.ReadSecret(r.SentinelPasswordFile)
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
	log.Info("state store", "kind", "redis", "mode", r.Mode(), "addrs", r.Addrs, "master_name", r.MasterName, "db", r.DB)
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
