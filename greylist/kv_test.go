package greylist

import (
	"bytes"
	"errors"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"sekisho/internal/testenv"
	"sekisho/internal/testredis"
)

// TestKV: values come back as stored, a missing key is ok == false without
// error, a new value replaces the old, and a non-positive ttl is refused —
// on both stores.
func TestKV(t *testing.T) {
	forEachStore(t, func(t *testing.T, h harness) {
		s := h.Store
		if v, ok, err := s.GetValue(ctx, "mta-sts:absent.test"); err != nil || ok || v != nil {
			t.Fatalf("missing key: %q, %v, %v", v, ok, err)
		}
		if err := s.PutValue(ctx, "mta-sts:a.test", []byte("one"), time.Hour); err != nil {
			t.Fatal(err)
		}
		if v, ok, err := s.GetValue(ctx, "mta-sts:a.test"); err != nil || !ok || string(v) != "one" {
			t.Fatalf("GetValue = %q, %v, %v; want one", v, ok, err)
		}
		if err := s.PutValue(ctx, "mta-sts:a.test", []byte("two\x00\xff"), time.Hour); err != nil {
			t.Fatal(err)
		}
		if v, ok, err := s.GetValue(ctx, "mta-sts:a.test"); err != nil || !ok || !bytes.Equal(v, []byte("two\x00\xff")) {
			t.Fatalf("GetValue after replace = %q, %v, %v", v, ok, err)
		}
		if err := s.PutValue(ctx, "mta-sts:a.test", []byte("x"), 0); err == nil {
			t.Fatal("ttl 0 accepted")
		}
		if err := s.DeleteValue(ctx, "mta-sts:a.test"); err != nil {
			t.Fatal(err)
		}
		if v, ok, err := s.GetValue(ctx, "mta-sts:a.test"); err != nil || ok {
			t.Fatalf("GetValue after delete = %q, %v, %v", v, ok, err)
		}
		if err := s.DeleteValue(ctx, "mta-sts:absent.test"); err != nil {
			t.Fatalf("deleting an absent key: %v", err)
		}
	})
}

// TestKVExpiresBolt: on the embedded store the entry is gone after its ttl
// (read-time check) and the sweeper deletes it.
func TestKVExpiresBolt(t *testing.T) {
	clock := testenv.NewClock()
	s, err := OpenBolt(filepath.Join(t.TempDir(), "state.db"), BoltOptions{Now: clock.Now, SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.PutValue(ctx, "k", []byte("v"), time.Minute); err != nil {
		t.Fatal(err)
	}
	clock.Advance(59 * time.Second)
	if _, ok, _ := s.GetValue(ctx, "k"); !ok {
		t.Fatal("gone before its ttl")
	}
	clock.Advance(time.Second)
	if v, ok, err := s.GetValue(ctx, "k"); ok || err != nil {
		t.Fatalf("after its ttl: %q, %v, %v", v, ok, err)
	}
	if n, err := s.sweep(); err != nil || n != 1 {
		t.Fatalf("sweep = %d, %v; want the expired entry deleted", n, err)
	}
	s.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketKV).Get([]byte("k")) != nil {
			t.Error("expired entry still in the file after the sweep")
		}
		return nil
	})
}

// TestKVRedisTTL: on Redis the ttl is the key's own (PX), so Redis forgets
// it; several gateways see one value.
func TestKVRedisTTL(t *testing.T) {
	srv := testredis.Start(t)
	gw1, gw2 := newRedisStore(t, srv.Addr()), newRedisStore(t, srv.Addr())
	if err := gw1.PutValue(ctx, "mta-sts:a.test", []byte("policy"), 90*time.Second); err != nil {
		t.Fatal(err)
	}
	if v, ok, err := gw2.GetValue(ctx, "mta-sts:a.test"); err != nil || !ok || string(v) != "policy" {
		t.Fatalf("the other gateway got %q, %v, %v", v, ok, err)
	}
	ttl := gw1.Client().PTTL(ctx, RedisKVPrefix+"mta-sts:a.test").Val()
	if ttl <= 80*time.Second || ttl > 90*time.Second {
		t.Fatalf("PTTL = %v, want about 90s", ttl)
	}
}

// TestKVUnavailable: a closed or stopped store gives an error, never a
// value.
func TestKVUnavailable(t *testing.T) {
	forEachStore(t, func(t *testing.T, h harness) {
		h.Close()
		if v, ok, err := h.GetValue(ctx, "k"); err == nil || ok || v != nil {
			t.Fatalf("GetValue on a closed store: %q, %v, %v", v, ok, err)
		}
		if err := h.PutValue(ctx, "k", []byte("v"), time.Minute); !errors.Is(err, ErrClosed) {
			t.Fatalf("PutValue on a closed store: %v, want ErrClosed", err)
		}
	})
}
