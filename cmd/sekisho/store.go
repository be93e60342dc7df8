package main

// The state store shared by greylisting (and later the report counters):
// an embedded bbolt file by default, or Redis (DESIGN.md §5).

// StoreConfig chooses the state store: an embedded file or Redis.
type StoreConfig struct {
	Path  string       `yaml:"path"`
	Redis *RedisConfig `yaml:"redis"`
}

// RedisConfig is go-redis' UniversalOptions, in part.
type RedisConfig struct {
	Addrs        []string `yaml:"addrs"`
	MasterName   string   `yaml:"master_name"`
	Username     string   `yaml:"username"`
	PasswordFile string   `yaml:"password_file"`
	DB           int      `yaml:"db"`
}
