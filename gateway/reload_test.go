package gateway

import (
	"testing"
	"time"

	"sekisho/relay"
)

// TestReloadRetiresAfterLastSession: a replaced generation is retired only
// once the last session that took it has released it, exactly once; new
// sessions take the new one; the connection limits follow the reload.
func TestReloadRetiresAfterLastSession(t *testing.T) {
	retired := make(chan string, 2)
	cfg := func(name string, maxConns int) Config {
		return Config{Hostname: name, Router: &relay.Router{}, Limits: Limits{MaxConnections: maxConns},
			Retire: func() { retired <- name }}
	}
	s, err := New(cfg("first", 10))
	if err != nil {
		t.Fatal(err)
	}
	session := s.acquire() // a session open across the reload
	if err := s.Reload(cfg("second", 3)); err != nil {
		t.Fatal(err)
	}
	if g := s.acquire(); g.cfg.Hostname != "second" {
		t.Errorf("a new session took %q, want the reloaded configuration", g.cfg.Hostname)
	} else {
		g.release()
	}
	if s.tracker.maxTotal != 3 {
		t.Errorf("max_connections after the reload: %d, want 3", s.tracker.maxTotal)
	}
	select {
	case name := <-retired:
		t.Fatalf("%q retired while a session still used it", name)
	case <-time.After(50 * time.Millisecond):
	}
	if session.cfg.Hostname != "first" {
		t.Fatalf("the open session's configuration changed to %q", session.cfg.Hostname)
	}
	session.release()
	select {
	case name := <-retired:
		if name != "first" {
			t.Errorf("retired %q, want first", name)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the replaced configuration was never retired")
	}
	if session.hold() {
		t.Error("a retired generation could be held again")
	}
	if _, err := New(Config{}); err == nil {
		t.Error("New took a configuration without hostname")
	}
	if err := s.Reload(Config{Hostname: "x"}); err == nil {
		t.Error("Reload took a configuration without router")
	}
	if g := s.acquire(); g.cfg.Hostname != "second" {
		t.Errorf("a refused reload changed the configuration in force to %q", g.cfg.Hostname)
	}
}
