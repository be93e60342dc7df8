package config

import (
	"errors"
	"strings"
	"testing"
)

// TestStoreConfigValidate: the store's mistakes name the key.
func TestStoreConfigValidate(t *testing.T) {
	cases := []struct {
		store StoreConfig
		key   string // "" valid
	}{
		{StoreConfig{Path: "var/state.db"}, ""},
		{StoreConfig{}, "store.path"},
		{StoreConfig{Path: "x", Redis: &RedisConfig{Addrs: []string{"r1:6379"}}}, ""}, // redis wins
		{StoreConfig{Redis: &RedisConfig{}}, "store.redis.addrs"},
		{StoreConfig{Redis: &RedisConfig{Addrs: []string{"r1"}}}, "store.redis.addrs"},
		{StoreConfig{Redis: &RedisConfig{Addrs: []string{"r1:6379", "r2:6379"}, DB: 1}}, "store.redis.db"},
		{StoreConfig{Redis: &RedisConfig{Addrs: []string{"r1:6379"}, Cluster: true, DB: 1}}, "store.redis.db"},
		{StoreConfig{Redis: &RedisConfig{Addrs: []string{"s1:26379", "s2:26379"}, MasterName: "m", DB: 1}}, ""},
		{StoreConfig{Redis: &RedisConfig{Addrs: []string{"s1:26379"}, MasterName: "m", Cluster: true}}, "store.redis.cluster"},
		{StoreConfig{Redis: &RedisConfig{Addrs: []string{"r1:6379"}, DB: -1}}, "store.redis.db"},
		{StoreConfig{Redis: &RedisConfig{Addrs: []string{"r1:6379"}, SentinelPasswordFile: "f"}}, "store.redis.sentinel_password_file"},
	}
	for _, c := range cases {
		err := c.store.validate()
		var ve *validationError
		switch {
		case c.key == "" && err != nil:
			t.Errorf("%+v: %v", c.store, err)
		case c.key != "" && (!errors.As(err, &ve) || strings.Join(ve.path, ".") != c.key):
			t.Errorf("%+v: error %v, want one about %s", c.store, err, c.key)
		}
	}
	modes := map[string]*RedisConfig{
		"standalone": {Addrs: []string{"r1:6379"}},
		"cluster":    {Addrs: []string{"r1:6379", "r2:6379"}},
		"sentinel":   {Addrs: []string{"s1:26379", "s2:26379"}, MasterName: "m"},
	}
	for want, r := range modes {
		if r.Mode() != want {
			t.Errorf("%+v: mode %s, want %s", r, r.Mode(), want)
		}
	}
	if (&RedisConfig{Addrs: []string{"r1:6379"}, Cluster: true}).Mode() != "cluster" {
		t.Error("cluster: true with one address is not a cluster")
	}
}
