package filters

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"sekisho/greylist"
	"sekisho/internal/testredis"
	"sekisho/internal/testslapd"
	"sekisho/lookup"
)

// BenchmarkAccountMemory is the cost of remembering accounts (serve stale,
// issue 19) on the RCPT path, as a ratio to the account check without a
// memory, in the same run (docs/performance.md): one RCPT of a user who
// exists, against a real slapd with the positive cache off, so that every
// recipient is one search:
//
//	directory            no memory: the baseline
//	bolt                 the memory on the embedded store, in its steady
//	                     state (the gateway wrote the account lately: no write)
//	bolt-write           a write at every recipient (each one new to this
//	                     gateway, or its refresh due): one bbolt commit
//	redis-write          the same on Redis
//	served-stale-bolt    the directory down (answered at once), the
//	                     recipient read from the memory and accepted
//
// Each sub-benchmark reports x_directory, its time per recipient over the
// baseline's.
func BenchmarkAccountMemory(b *testing.B) {
	slapd := testslapd.Start(b)
	dir, err := lookup.NewDirectory(lookup.LDAPConfig{
		URLs: []string{slapd.URL()}, BaseDN: slapd.BaseDN, BindDN: slapd.BindDN, BindPassword: slapd.BindPassword,
		AccountFilter: testslapd.AccountFilter, Canary: testslapd.Canary, Timeout: 5 * time.Second,
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { dir.Close() })
	bolt, err := greylist.OpenBolt(filepath.Join(b.TempDir(), "state.db"), greylist.BoltOptions{SweepInterval: -1})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { bolt.Close() })
	srv := testredis.Start(b)
	rs := greylist.NewRedisStore(&redis.UniversalOptions{Addrs: []string{srv.Addr()}})
	b.Cleanup(func() { rs.Close() })

	ctx := context.Background()
	tx := &Transaction{Rcpt: "alice@campus.test", Local: true}
	var baseline float64
	run := func(name string, d AccountDirectory, mem AccountMemory, write bool) {
		b.Run(name, func(b *testing.B) {
			opts := AccountOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
			if mem != nil {
				opts.Memory, opts.StaleTTL = mem, 7*24*time.Hour
			}
			check := NewAccountCheck(d, opts)
			if write {
				check.written = nil // no skip: a write at every recipient
			}
			if v, err := check.Check(ctx, tx); err != nil || v.Action != Continue {
				b.Fatalf("%+v %v", v, err)
			}
			for b.Loop() {
				check.Check(ctx, tx)
			}
			per := float64(b.Elapsed()) / float64(b.N)
			if name == "directory" {
				baseline = per
			} else if baseline > 0 {
				b.ReportMetric(per/baseline, "x_directory")
			}
		})
	}
	run("directory", dir, nil, false)
	run("bolt", dir, bolt, false)
	run("bolt-write", dir, bolt, true)
	run("redis-write", dir, rs, true)
	down := &fakeDirectory{res: lookup.AccountResult{Address: "alice@campus.test", Reason: "ldap: connection refused"}}
	run("served-stale-bolt", down, bolt, false)
}
