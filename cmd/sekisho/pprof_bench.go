//go:build benchprofile

// This file is compiled only with -tags benchprofile, by `make bench`'s
// profiling run (bench/bench.sh -profile): it serves Go's profiles
// (net/http/pprof, /debug/pprof/...) on the address in the environment
// variable SEKISHO_PPROF_ADDR. The released binary has no profiling
// endpoint: the profiles show memory contents (addresses, keys) and cost
// CPU to take, so they are for a developer on a test machine, never on an
// address a client can reach.
package main

import (
	"log/slog"
	"net/http"
	_ "net/http/pprof" // registers /debug/pprof/ on http.DefaultServeMux
	"os"
)

func init() {
	addr := os.Getenv("SEKISHO_PPROF_ADDR")
	if addr == "" {
		return
	}
	slog.Warn("benchprofile build: Go's profiles served on /debug/pprof/", "addr", addr)
	go func() {
		err := http.ListenAndServe(addr, nil)
		slog.Error("benchprofile build: the profiling endpoint stopped", "addr", addr, "err", err)
	}()
}
