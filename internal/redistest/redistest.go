// Package redistest starts a real redis-server from Debian for tests, on a
// private Unix socket with AOF and appendfsync always, as microbox runs it.
package redistest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Server is a running redis-server.
type Server struct {
	t      testing.TB
	dir    string
	Socket string
	cmd    *exec.Cmd
}

// Start starts redis-server for the test and stops it at cleanup. Without
// redis-server it skips, or fails under MICROBOX_REQUIRE_VM=1 (CI installs
// it, so a skip there would hide a broken set-up).
func Start(t testing.TB) *Server {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("MICROBOX_REQUIRE_VM") == "1" {
			t.Fatal("redis-server not installed (apt-get install redis-server)")
		}
		t.Skip("redis-server not installed (apt-get install redis-server)")
	}
	dir := t.TempDir()
	s := &Server{t: t, dir: dir, Socket: filepath.Join(dir, "redis.sock")}
	s.start()
	t.Cleanup(s.stop)
	return s
}

func (s *Server) start() {
	s.t.Helper()
	s.cmd = exec.Command("redis-server",
		"--port", "0", "--unixsocket", s.Socket, "--unixsocketperm", "700",
		"--dir", s.dir, "--appendonly", "yes", "--appendfsync", "always", "--save", "",
		"--logfile", filepath.Join(s.dir, "redis.log"))
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("start redis-server: %v", err)
	}
	c := s.Client()
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for c.Ping(context.Background()).Err() != nil {
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
			s.t.Fatalf("redis-server did not answer: %s", b)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (s *Server) stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
	}
}

// Client returns a new client of the server.
func (s *Server) Client() *redis.Client {
	return redis.NewClient(&redis.Options{Network: "unix", Addr: s.Socket, MaxRetries: -1})
}

// Crash kills the server with SIGKILL, as a crash would.
func (s *Server) Crash() { s.stop() }

// Restart starts it again on the same data (its AOF).
func (s *Server) Restart() {
	s.t.Helper()
	s.start()
}

// String describes the server for logs.
func (s *Server) String() string { return fmt.Sprintf("redis at %s", s.Socket) }
