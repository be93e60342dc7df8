package testredis

import (
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestStartStopRestartKill(t *testing.T) {
	s := Start(t)
	if r, err := s.Do("SET", "k", "v"); err != nil || r != "+OK" {
		t.Fatalf("SET: %q, %v", r, err)
	}
	if r, err := s.Do("GET", "k"); err != nil || r != "$1\nv" {
		t.Fatalf("GET: %q, %v", r, err)
	}

	s.Stop()
	if c, err := net.DialTimeout("tcp", s.Addr(), time.Second); err == nil {
		c.Close()
		t.Fatal("stopped server still accepts connections")
	}

	addr := s.Addr()
	s.Restart()
	if s.Addr() != addr {
		t.Fatalf("address changed on restart: %s → %s", addr, s.Addr())
	}
	// No persistence: the restarted server is empty.
	if r, err := s.Do("GET", "k"); err != nil || r != "$-1" {
		t.Fatalf("GET after restart: %q, %v (want nil: no persistence)", r, err)
	}

	s.Kill()
	if _, err := s.Do("PING"); err == nil {
		t.Fatal("killed server still answers")
	}
	s.Kill() // idempotent
	s.Restart()
	if r, err := s.Do("PING"); err != nil || r != "+PONG" {
		t.Fatalf("PING after kill+restart: %q, %v", r, err)
	}
}

func TestCluster(t *testing.T) {
	s := StartCluster(t)
	info, err := s.Do("CLUSTER", "INFO")
	if err != nil || !strings.Contains(info, "cluster_state:ok") {
		t.Fatalf("CLUSTER INFO: %q, %v", info, err)
	}
	// Keys in different slots in one command are refused, as in a real cluster.
	r, err := s.Do("MSET", "a", "1", "b", "2")
	if err != nil || !strings.HasPrefix(r, "-CROSSSLOT") {
		t.Fatalf("MSET across slots: %q, %v (want CROSSSLOT)", r, err)
	}
	s.Restart()
	if info, err := s.Do("CLUSTER", "INFO"); err != nil || !strings.Contains(info, "cluster_state:ok") {
		t.Fatalf("CLUSTER INFO after restart: %q, %v", info, err)
	}
}

func TestFreezeThaw(t *testing.T) {
	s := Start(t)
	c, err := net.DialTimeout("tcp", s.Addr(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s.Freeze()
	c.SetDeadline(time.Now().Add(200 * time.Millisecond))
	c.Write(encodeCommand([]string{"PING"}))
	buf := make([]byte, 16)
	if n, err := c.Read(buf); err == nil {
		t.Fatalf("frozen server answered %q", buf[:n])
	}
	s.Thaw()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	n, err := c.Read(buf)
	if err != nil || !strings.HasPrefix(string(buf[:n]), "+PONG") {
		t.Fatalf("after thaw: %q, %v", buf[:n], err)
	}
	s.Freeze()
	s.Stop() // stopping a frozen server works
}

func TestSentinel(t *testing.T) {
	master := Start(t)
	sentinel := StartSentinel(t, master, "mymaster")
	_, port, _ := net.SplitHostPort(master.Addr())
	reply, err := sentinel.Do("SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster")
	if want := "*2\n$9\n127.0.0.1\n$" + strconv.Itoa(len(port)) + "\n" + port; err != nil || reply != want {
		t.Fatalf("GET-MASTER-ADDR-BY-NAME: %q, %v; want %q", reply, err, want)
	}
}

// TestSentinelsFailOver: a master, its replica and three Sentinels with
// quorum 2; the master is killed and the Sentinels promote the replica,
// which has the data written before the kill.
func TestSentinelsFailOver(t *testing.T) {
	master := Start(t)
	replica := StartReplica(t, master)
	if role, err := replica.Info("role"); err != nil || role != "slave" {
		t.Fatalf("replica's role: %q, %v", role, err)
	}
	sentinels := StartSentinels(t, master, "mymaster", 3, SentinelOptions{
		Quorum: 2, DownAfter: time.Second, FailoverTimeout: 3 * time.Second, Replicas: 1})
	if reply, err := master.Do("SET", "k", "before the kill"); err != nil || reply != "+OK" {
		t.Fatalf("SET: %q, %v", reply, err)
	}
	WaitReplicated(t, master, replica, 5*time.Second)

	master.Kill()
	killed := time.Now()
	for _, s := range sentinels {
		for {
			addr, err := s.MasterAddrByName("mymaster")
			if err == nil && addr == replica.Addr() {
				break
			}
			if time.Since(killed) > 30*time.Second {
				t.Fatalf("sentinel %s still says %q, %v", s.Addr(), addr, err)
			}
			time.Sleep(50 * time.Millisecond) // no other signal than asking
		}
	}
	t.Logf("all three sentinels name the replica %v after the kill", time.Since(killed).Round(time.Millisecond))
	if role, err := replica.Info("role"); err != nil || role != "master" {
		t.Fatalf("promoted replica's role: %q, %v", role, err)
	}
	if reply, err := replica.Do("GET", "k"); err != nil || reply != "$15\nbefore the kill" {
		t.Fatalf("GET on the new master: %q, %v", reply, err)
	}
}
