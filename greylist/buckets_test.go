package greylist

import (
	"testing"
	"time"

	"sekisho/internal/testredis"
)

// TestBucketsShared: two gateways' stores on one Redis spend one bucket:
// five failures over both spend a budget of five; a peek takes nothing;
// one window later one token is back; a reset fills it; the key expires
// once the bucket is full again. An hourly limit (BucketAllow) lets exactly
// its burst through, over both gateways.
func TestBucketsShared(t *testing.T) {
	srv := testredis.Start(t)
	gw1, gw2 := newRedisStore(t, srv.Addr()), newRedisStore(t, srv.Addr())
	const window = 10 * time.Minute
	take := func(s *RedisStore, op BucketOp) bool {
		t.Helper()
		ok, err := s.Bucket(ctx, "auth:dn:uid=alice", 5, window, op)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	for i := range 5 {
		s := gw1
		if i%2 == 1 {
			s = gw2
		}
		if !take(s, BucketPeek) {
			t.Fatalf("failure %d: the budget is spent already", i+1)
		}
		take(s, BucketTake)
	}
	if take(gw1, BucketPeek) || take(gw2, BucketPeek) {
		t.Fatal("five failures over two gateways did not spend a budget of five")
	}
	gw1.offset, gw2.offset = window, window
	if !take(gw2, BucketPeek) {
		t.Fatal("a window later no token is back")
	}
	take(gw2, BucketTake)
	if take(gw1, BucketPeek) {
		t.Fatal("the token that came back was taken on the other gateway, yet is still there")
	}
	take(gw1, BucketReset)
	if !take(gw2, BucketPeek) {
		t.Fatal("reset did not fill the bucket")
	}
	take(gw1, BucketTake)
	ttl, _ := srv.Do("PTTL", RedisBucketPrefix+"auth:dn:uid=alice")
	if ttl != ":600000" && ttl != ":599999" {
		t.Errorf("PTTL %q, want the window (one token to come back)", ttl)
	}

	allowed := 0
	for i := range 12 {
		s := []*RedisStore{gw1, gw2}[i%2]
		ok, err := s.Bucket(ctx, "auth:msgs:dn:uid=bob", 10, time.Hour/10, BucketAllow)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			allowed++
		}
	}
	if allowed != 10 {
		t.Errorf("an hourly limit of 10 let %d of 12 through over two gateways", allowed)
	}
}
