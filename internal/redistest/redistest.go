// Package redistest starts a real redis-server for tests (internal/
// redisserver, as microbox runs it) and stops it at the test's end.
package redistest

import (
	"context"
	"errors"
	"os"
	"testing"

	"github.com/redis/go-redis/v9"

	"microbox/internal/redisserver"
)

// Server is a redis-server a test can crash and restart on the same data.
type Server struct {
	t      testing.TB
	dir    string
	Socket string
	srv    *redisserver.Server
}

// Start starts redis-server for the test and stops it at cleanup. Without
// redis-server it skips, or fails under MICROBOX_REQUIRE_VM=1 (CI installs
// it, so a skip there would hide a broken set-up).
func Start(t testing.TB) *Server {
	t.Helper()
	s := &Server{t: t, dir: t.TempDir()}
	s.Restart()
	t.Cleanup(func() {
		if s.srv != nil {
			s.srv.Kill()
		}
	})
	return s
}

// Client returns a new client that does not retry, so tests see failures.
func (s *Server) Client() *redis.Client {
	return redis.NewClient(&redis.Options{Network: "unix", Addr: s.Socket, MaxRetries: -1})
}

// Crash kills the server with SIGKILL.
func (s *Server) Crash() {
	s.srv.Kill()
	s.srv = nil
}

// Restart starts it (again) on the same data, its AOF.
func (s *Server) Restart() {
	s.t.Helper()
	srv, err := redisserver.Start(context.Background(), s.dir)
	if errors.Is(err, redisserver.ErrNotInstalled) && os.Getenv("MICROBOX_REQUIRE_VM") != "1" {
		s.t.Skip(err)
	}
	if err != nil {
		s.t.Fatal(err)
	}
	s.srv, s.Socket = srv, srv.Socket
}
