package config

// The state store's section (store:): an embedded bbolt file by default, or
// Redis (DESIGN.md §5). cmd/sekisho opens it.

import (
	"fmt"
	"net"
)

// StoreConfig chooses the state store: an embedded file or Redis. When
// redis is set it is used and path is ignored (path has a default, so a
// config that only adds redis must not have to clear it).
type StoreConfig struct {
	// Path is the bbolt file, relative to the working directory unless
	// absolute; its directory is created if missing. Default var/state.db.
	Path  string       `yaml:"path" type:"file"`
	Redis *RedisConfig `yaml:"redis"`
}

// RedisConfig is go-redis' UniversalOptions, in part. One address is a
// standalone server; master_name makes the addresses Sentinels; several
// addresses (or cluster: true) are a Cluster.
type RedisConfig struct {
	Addrs      []string `yaml:"addrs" type:"list of host:port"`
	MasterName string   `yaml:"master_name"`
	// Cluster treats a single address as a Cluster seed node.
	Cluster  bool   `yaml:"cluster"`
	Username string `yaml:"username"`
	// PasswordFile holds the password (AUTH), without a trailing newline
	// or with one; "" for none.
	PasswordFile string `yaml:"password_file" type:"file"`
	// SentinelPasswordFile holds the Sentinels' own password, if they
	// have one (requirepass on the Sentinel).
	SentinelPasswordFile string `yaml:"sentinel_password_file" type:"file"`
	DB                   int    `yaml:"db"`
}

func (c *RedisConfig) Mode() string {
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
	case r.DB != 0 && r.Mode() == "cluster":
		return invalid("db must be 0 with a Cluster (several addrs): a Cluster has only database 0", "store", "redis", "db")
	case r.SentinelPasswordFile != "" && r.MasterName == "":
		return invalid("sentinel_password_file needs master_name (Sentinel)", "store", "redis", "sentinel_password_file")
	}
	return nil
}
